//! Arrow string arrays read in place, through the Arrow C data interface: pyarrow hands an
//! array over as two PyCapsules (`__arrow_c_array__`, pyarrow 14 and later), one holding its
//! `ArrowSchema` and one its `ArrowArray`, and keeps the buffers alive as long as the
//! capsules are. So `PyTokenWriter::write_strings` encodes a Parquet file's text column
//! without a copy of its bytes, or a Python string per row.

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
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
pub(crate) struct ArrowStrings<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) bounds: Vec<usize>,
}

/// The pointer a capsule named `name` holds, or an error naming what was expected.
fn capsule_pointer<T>(capsule: &Bound<'_, PyAny>, name: &CStr) -> PyResult<*const T> {
    // SAFETY: any object may be asked; a wrong type or name gives null and an exception set.
    let pointer = unsafe { ffi::PyCapsule_GetPointer(capsule.as_ptr(), name.as_ptr()) };
    if pointer.is_null() {
        let _ = PyErr::take(capsule.py());
        return Err(PyValueError::new_err(format!(
            "expected a PyCapsule named {name:?} (an Arrow C data interface export)"
        )));
    }
    Ok(pointer.cast())
}

/// The strings of the array exported as `(schema, array)` capsules, borrowed from them: a
/// `string` or `large_string` array without nulls. Anything else is a ValueError (the caller
/// reads other layouts, such as string views, through Python).
pub(crate) fn strings<'a>(schema: &'a Bound<'_, PyAny>, array: &'a Bound<'_, PyAny>) -> PyResult<ArrowStrings<'a>> {
    let bad = |what: &str| PyValueError::new_err(format!("an Arrow string array export {what}"));
    // SAFETY: the capsules hold a live schema and array until they are freed, and `'a`
    // borrows them; the producer keeps the buffers valid while the array is not released.
    unsafe {
        let schema = &*capsule_pointer::<ArrowSchema>(schema, c"arrow_schema")?;
        let array = &*capsule_pointer::<ArrowArray>(array, c"arrow_array")?;
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
