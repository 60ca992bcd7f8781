//! Arrow string arrays read in place, through the Arrow C data interface: a producer
//! (pyarrow's `__arrow_c_array__`, which `py.rs` unwraps from its PyCapsules) hands over an
//! `ArrowSchema` and an `ArrowArray`, and keeps the buffers alive until they are released.
//! So a Parquet file's text column is encoded without a copy of its bytes, or a Python
//! string per row.

use crate::error::{Error, Result};
use std::ffi::{c_char, c_void, CStr};

/// The C data interface's `struct ArrowSchema` (only `format` is read).
#[repr(C)]
struct ArrowSchema {
    format: *const c_char,
    name: *const c_char,
    metadata: *const c_char,
    flags: i64,
    n_children: i64,
    children: *mut *mut ArrowSchema,
    dictionary: *mut ArrowSchema,
    release: Option<unsafe extern "C" fn(*mut ArrowSchema)>,
    private_data: *mut c_void,
}

/// The C data interface's `struct ArrowArray`.
#[repr(C)]
struct ArrowArray {
    length: i64,
    null_count: i64,
    offset: i64,
    n_buffers: i64,
    n_children: i64,
    buffers: *mut *const c_void,
    children: *mut *mut ArrowArray,
    dictionary: *mut ArrowArray,
    release: Option<unsafe extern "C" fn(*mut ArrowArray)>,
    private_data: *mut c_void,
}

/// The strings of one Arrow string array: `bounds[i]..bounds[i + 1]` of `data` is string `i`.
pub struct ArrowStrings<'a> {
    pub data: &'a [u8],
    pub bounds: Vec<usize>,
}

/// The strings of an exported `string` or `large_string` array without nulls, borrowed from
/// the export; anything else is an error (the caller reads other layouts, such as string
/// views, another way).
///
/// # Safety
/// `schema` and `array` point to a live `ArrowSchema` and `ArrowArray` whose buffers stay
/// valid for `'a`.
pub unsafe fn strings<'a>(schema: *const c_void, array: *const c_void) -> Result<ArrowStrings<'a>> {
    let bad = |what: &str| Error::Invalid(format!("an Arrow string array export {what}"));
    // SAFETY: as the caller promises; every pointer read below is checked first.
    unsafe {
        let schema = &*schema.cast::<ArrowSchema>();
        let array = &*array.cast::<ArrowArray>();
        if schema.release.is_none() || array.release.is_none() || schema.format.is_null() {
            return Err(bad("that was released"));
        }
        let wide = match CStr::from_ptr(schema.format).to_bytes() {
            b"u" => false,
            b"U" => true,
            format => {
                return Err(bad(&format!(
                    "of format {:?}, not string or large string",
                    String::from_utf8_lossy(format)
                )))
            }
        };
        if array.n_buffers != 3 || array.null_count != 0 || array.offset < 0 || array.length < 0 {
            return Err(bad("with nulls, or not of three buffers"));
        }
        let (first, len) = (array.offset as usize, array.length as usize);
        let buffers = std::slice::from_raw_parts(array.buffers, 3);
        if buffers[1].is_null() {
            return Err(bad("without offsets"));
        }
        // Read one by one, unaligned: the format asks producers to align buffers, not promises.
        let bounds: Vec<usize> = (first..=first + len)
            .map(|i| match wide {
                false => buffers[1].cast::<i32>().add(i).read_unaligned() as isize as usize,
                true => buffers[1].cast::<i64>().add(i).read_unaligned() as isize as usize,
            })
            .collect();
        // Offsets rise from 0 or more (a negative one wraps to a huge value, and fails here).
        if bounds.windows(2).any(|w| w[0] > w[1]) || bounds[len] > isize::MAX as usize {
            return Err(bad("whose offsets do not rise"));
        }
        let data = match buffers[2].is_null() {
            true if bounds[len] == 0 => &[][..],
            true => return Err(bad("without data")),
            // The data buffer holds at least the bytes up to the last offset.
            false => std::slice::from_raw_parts(buffers[2].cast::<u8>(), bounds[len]),
        };
        Ok(ArrowStrings { data, bounds })
    }
}
