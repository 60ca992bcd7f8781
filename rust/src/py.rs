//! The Python bindings (module `fastgpt._core`): the only file that knows PyO3.
//! Heavy calls release the GIL; every error becomes a Python exception.

use crate::binfile::{BinWriter, Header};
use crate::bpe::encode::{Allowed, Encoder};
use crate::bpe::train::{Merger, WordCounter};
use crate::bpe::vocab;
use crate::error::Error;
use crate::{with_threads, Rank};
use pyo3::exceptions::{PyKeyError, PyOSError, PyUnicodeDecodeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBytes, PyList, PyString};
use rustc_hash::FxHashSet;

fn to_py(err: Error) -> PyErr {
    match err {
        Error::Pattern(_) | Error::Invalid(_) => PyValueError::new_err(err.to_string()),
        Error::UnknownToken(_) => PyKeyError::new_err(err.to_string()),
        Error::Io(_) => PyOSError::new_err(err.to_string()),
    }
}

/// `None` means no special token is allowed; `"all"` is passed as `all = true`.
fn allowed(all: bool, some: &Option<FxHashSet<String>>) -> Allowed<'_> {
    match (all, some) {
        (true, _) => Allowed::All,
        (false, Some(set)) if !set.is_empty() => Allowed::Some(set),
        _ => Allowed::None,
    }
}

/// Texts up to this size are encoded without releasing the GIL: it takes microseconds, and
/// releasing and retaking it would cost a good share of a chat-sized call.
const KEEP_GIL_BYTES: usize = 2048;

thread_local! {
    /// The ids of this thread's last call, whose buffer the next call reuses: a buffer
    /// allocated per call cost 5% of a 4 KB document's encode once other work had left
    /// the process's heap fragmented (glibc's malloc searched its free lists each time).
    static IDS: std::cell::Cell<Vec<Rank>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The most ids (1 MB) a thread's buffer keeps between calls; a larger one is freed.
const KEEP_IDS: usize = 1 << 18;

/// `f` on this thread's emptied ids buffer.
fn with_ids<R>(f: impl FnOnce(&mut Vec<Rank>) -> R) -> R {
    let mut ids = IDS.try_with(std::cell::Cell::take).unwrap_or_default();
    ids.clear();
    let result = f(&mut ids);
    if ids.capacity() <= KEEP_IDS {
        let _ = IDS.try_with(|slot| slot.set(ids));
    }
    result
}

#[pyclass(frozen, module = "fastgpt._core", name = "CoreBPE")]
struct PyEncoder {
    inner: Encoder,
    /// The Python int of every id below `n_vocab`, made at load in id order and kept (one
    /// reference each) until the encoder goes: a list of ids is built by taking references
    /// instead of allocating an int per token. Made in id order, the ints lie side by side
    /// in the interpreter's memory, and ids are ranks, so the common tokens' ints share a
    /// few hundred KB that stay in the CPU's caches; made lazily, as each id first turned
    /// up, they were scattered among the caller's objects (first sight 1-12% slower). About
    /// 40 bytes per id with the table (8 MB for o200k) and 2 ms of load.
    ints: Box<[Py<PyAny>]>,
}

impl PyEncoder {
    fn new(py: Python<'_>, inner: Encoder) -> PyResult<Self> {
        // SAFETY: the GIL is held (`py`), and each new reference is owned by the `Bound`.
        let ints = (0..inner.n_vocab())
            .map(|id| unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyLong_FromSize_t(id)).map(Bound::unbind) })
            .collect::<PyResult<_>>()?;
        Ok(PyEncoder { inner, ints })
    }

    /// A new reference to the Python int for `id` (an id this encoder produced).
    #[inline(always)]
    fn int(&self, id: Rank) -> *mut ffi::PyObject {
        let int = self.ints[id as usize].as_ptr();
        // SAFETY: the int lives as long as the encoder, and the caller holds the GIL.
        unsafe { incref(int) };
        int
    }

    fn to_list<'py>(&self, py: Python<'py>, ids: &[Rank]) -> PyResult<Bound<'py, PyList>> {
        unsafe {
            let list = Bound::from_owned_ptr_or_err(py, ffi::PyList_New(ids.len() as ffi::Py_ssize_t))?;
            let items = list_items(py, list.as_ptr());
            for (i, &id) in ids.iter().enumerate() {
                // The ints of the next ids are fetched ahead, in two steps (the table's slot,
                // then the int it points to), so that their cache misses overlap.
                if let Some(&ahead) = ids.get(i + 2 * PREFETCH_IDS) {
                    crate::memory::prefetch(self.ints.as_ptr().add(ahead as usize));
                }
                if let Some(&near) = ids.get(i + PREFETCH_IDS) {
                    crate::memory::prefetch(self.ints[near as usize].as_ptr());
                }
                // The list takes the reference.
                let int = self.int(id);
                match items {
                    Some(items) => *items.add(i) = int,
                    None => {
                        ffi::PyList_SetItem(list.as_ptr(), i as ffi::Py_ssize_t, int);
                    }
                }
            }
            Ok(list.cast_into_unchecked())
        }
    }
}

/// How many ids ahead `to_list` fetches the ints (their table slots twice as far): a
/// reference is taken in a few nanoseconds, a miss to memory takes about a hundred. At 8,
/// first sight of 4 KB documents was 4-10% slower (cl100k prose, o200k code and prose).
const PREFETCH_IDS: usize = 32;

/// A new reference to `object`, as the `Py_INCREF` of the limited API before 3.12 made one
/// (this module is built for the stable ABI from 3.10: `abi3-py310`, never free-threaded):
/// one add in place, where `Py_IncRef` is a call into the interpreter per token. CPython
/// 3.12 and later keep accepting it, immortal objects included, for such modules.
///
/// # Safety
/// `object` is a live object and the GIL is held.
#[inline(always)]
unsafe fn incref(object: *mut ffi::PyObject) {
    unsafe { *object.cast::<ffi::Py_ssize_t>() += 1 };
}

/// The item array of `list`, a new list, when this interpreter lays lists out as CPython
/// does (the variable-size object header, then the pointer to the items), which is checked
/// once on a real list; else `None`, and items are set through `PyList_SetItem`. Writing
/// the array directly saves a call per token (`PyList_SET_ITEM` is not in the limited API).
///
/// # Safety
/// `list` is a list object and the GIL is held.
unsafe fn list_items(_py: Python<'_>, list: *mut ffi::PyObject) -> Option<*mut *mut ffi::PyObject> {
    static OFFSET: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let offset = (*OFFSET.get_or_init(|| {
        let offset = std::mem::size_of::<ffi::PyVarObject>();
        // SAFETY: a list of one item made here; the word read at `offset` lies within any
        // list object (header plus item pointer).
        unsafe {
            let probe = ffi::PyList_New(1);
            if probe.is_null() {
                ffi::PyErr_Clear();
                return None;
            }
            let item = ffi::PyLong_FromLong(1_234_567);
            let found = !item.is_null()
                && ffi::PyList_SetItem(probe, 0, item) == 0
                && *(*probe.cast::<u8>().add(offset).cast::<*const *mut ffi::PyObject>()) == item;
            ffi::PyErr_Clear();
            ffi::Py_DecRef(probe);
            found.then_some(offset)
        }
    }))?;
    // SAFETY: as checked above, the word at `offset` of a list is its item array.
    Some(unsafe { *list.cast::<u8>().add(offset).cast::<*mut *mut ffi::PyObject>() })
}

#[pymethods]
impl PyEncoder {
    /// tiktoken's model from a rank file's raw contents.
    #[staticmethod]
    fn from_tiktoken(
        py: Python<'_>,
        data: &[u8],
        source: &str,
        pattern: &str,
        specials: Vec<(String, Rank)>,
    ) -> PyResult<Self> {
        let inner = py
            .detach(|| {
                vocab::parse_tiktoken(data, source).and_then(|tokens| Encoder::from_tokens(tokens, pattern, specials))
            })
            .map_err(to_py)?;
        PyEncoder::new(py, inner)
    }

    /// tiktoken's model from (token bytes, rank) pairs.
    #[staticmethod]
    fn from_ranks(
        py: Python<'_>,
        ranks: Vec<(Vec<u8>, Rank)>,
        pattern: &str,
        specials: Vec<(String, Rank)>,
    ) -> PyResult<Self> {
        let inner = py
            .detach(|| Encoder::from_ranks(ranks, pattern, specials))
            .map_err(to_py)?;
        PyEncoder::new(py, inner)
    }

    /// Hugging Face's model: vocabulary plus merges (pairs of ids) in priority order.
    #[staticmethod]
    fn from_merges(
        py: Python<'_>,
        vocab: Vec<(Vec<u8>, Rank)>,
        merges: Vec<(Rank, Rank)>,
        pattern: &str,
        specials: Vec<(String, Rank)>,
        direct_lookup: bool,
    ) -> PyResult<Self> {
        let inner = py
            .detach(|| Encoder::from_merges(vocab, merges, pattern, specials, direct_lookup))
            .map_err(to_py)?;
        PyEncoder::new(py, inner)
    }

    #[getter]
    fn n_vocab(&self) -> usize {
        self.inner.n_vocab()
    }

    #[getter]
    fn pattern(&self) -> &str {
        self.inner.splitter().pattern()
    }

    #[getter]
    fn pattern_name(&self) -> Option<&'static str> {
        self.inner.splitter().name()
    }

    fn special_tokens(&self) -> Vec<(String, Rank)> {
        self.inner
            .special_tokens()
            .iter()
            .map(|(s, &r)| (s.clone(), r))
            .collect()
    }

    fn encode_ordinary<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyList>> {
        with_ids(|ids| {
            if text.len() <= KEEP_GIL_BYTES {
                self.inner.encode_ordinary_to(text, ids)
            } else {
                py.detach(|| self.inner.encode_ordinary_to(text, ids))
            }
            self.to_list(py, ids)
        })
    }

    #[pyo3(signature = (text, allowed_special=None, allow_all=false))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        allowed_special: Option<FxHashSet<String>>,
        allow_all: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let allowed = allowed(allow_all, &allowed_special);
        with_ids(|ids| {
            if text.len() <= KEEP_GIL_BYTES {
                self.inner.encode_to(text, &allowed, ids)
            } else {
                py.detach(|| self.inner.encode_to(text, &allowed, ids))
            }
            self.to_list(py, ids)
        })
    }

    /// Token ids as little-endian uint32 bytes, for `numpy.frombuffer`.
    #[pyo3(signature = (text, allowed_special=None, allow_all=false))]
    fn encode_to_bytes<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        allowed_special: Option<FxHashSet<String>>,
        allow_all: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let allowed = allowed(allow_all, &allowed_special);
        with_ids(|ids| {
            py.detach(|| self.inner.encode_to(text, &allowed, ids));
            // Written straight into the bytes object (a plain copy on little-endian machines).
            PyBytes::new_with(py, 4 * ids.len(), |buffer| {
                for (bytes, id) in buffer.chunks_exact_mut(4).zip(ids.iter()) {
                    bytes.copy_from_slice(&id.to_le_bytes());
                }
                Ok(())
            })
        })
    }

    #[pyo3(signature = (texts, allowed_special=None, allow_all=false, num_threads=None))]
    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<PyBackedStr>,
        allowed_special: Option<FxHashSet<String>>,
        allow_all: bool,
        num_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let allowed = allowed(allow_all, &allowed_special);
        // The lists are built by the caller, under the GIL, while helpers still encode
        // the texts that follow: built after the encoding they were a seventh of a batch
        // that no thread could share.
        let mut lists: Vec<Option<Py<PyList>>> = (0..texts.len()).map(|_| None).collect();
        let mut failed = None;
        py.detach(|| {
            self.inner
                .encode_batch_each(&texts, &allowed, num_threads, |first, encoded| {
                    Python::attach(|py| {
                        for (slot, ids) in lists[first..].iter_mut().zip(&encoded) {
                            match self.to_list(py, ids) {
                                Ok(list) => *slot = Some(list.unbind()),
                                Err(e) => {
                                    failed.get_or_insert(e);
                                }
                            }
                        }
                    })
                })
        });
        if let Some(e) = failed {
            return Err(e);
        }
        PyList::new(py, lists.into_iter().map(|list| list.expect("every text was encoded")))
    }

    /// The first special token whose text occurs in `text`, if any.
    fn find_special(&self, text: &str) -> Option<String> {
        self.inner.find_special(text).map(str::to_string)
    }

    fn decode_bytes<'py>(&self, py: Python<'py>, ids: Vec<Rank>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = py.detach(|| self.inner.decode_bytes(&ids)).map_err(to_py)?;
        Ok(PyBytes::new(py, &bytes))
    }

    fn token_bytes<'py>(&self, py: Python<'py>, id: Rank) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, self.inner.token_bytes(id).map_err(to_py)?))
    }

    /// The regular tokens as (bytes, id), in id order.
    fn ranks<'py>(&self, py: Python<'py>) -> Vec<(Bound<'py, PyBytes>, Rank)> {
        self.inner
            .ranks()
            .into_iter()
            .map(|(b, r)| (PyBytes::new(py, b), r))
            .collect()
    }

    /// The regular tokens in tiktoken's rank-file format.
    fn to_tiktoken<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &vocab::write_tiktoken(&self.inner.ranks()))
    }

    fn merges(&self, py: Python<'_>) -> Vec<(Rank, Rank)> {
        py.detach(|| self.inner.merges())
    }

    fn is_rank_ordered(&self) -> bool {
        self.inner.is_rank_ordered()
    }
}

/// Streams documents, encoded on all cores, into `.bin` files (see `binfile.rs`).
#[pyclass(module = "fastgpt._core", name = "TokenWriter")]
struct PyTokenWriter {
    inner: Option<BinWriter>,
}

impl PyTokenWriter {
    fn writer(&mut self) -> PyResult<&mut BinWriter> {
        self.inner
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("the token writer is already finished"))
    }
}

/// Why `PyTokenWriter::write_lines` or `write_strings` failed, told apart after the GIL is
/// taken back: text that is not UTF-8 (the bytes, where the error is), or anything else.
enum LinesError {
    NotUtf8(Vec<u8>, std::str::Utf8Error),
    Write(crate::Error),
}

/// The pointer a PyCapsule named `name` holds, or an error naming what was expected.
fn capsule_pointer(capsule: &Bound<'_, PyAny>, name: &std::ffi::CStr) -> PyResult<*const std::ffi::c_void> {
    // SAFETY: any object may be asked; a wrong type or name gives null and an exception set.
    let pointer = unsafe { ffi::PyCapsule_GetPointer(capsule.as_ptr(), name.as_ptr()) };
    if pointer.is_null() {
        let _ = PyErr::take(capsule.py());
        return Err(PyValueError::new_err(format!(
            "expected a PyCapsule named {name:?} (an Arrow C data interface export)"
        )));
    }
    Ok(pointer.cast_const())
}

fn lines_error(py: Python<'_>, error: LinesError) -> PyErr {
    match error {
        LinesError::NotUtf8(bytes, e) => match PyUnicodeDecodeError::new_utf8(py, &bytes, e) {
            Ok(error) => PyErr::from_value(error.into_any()),
            Err(error) => error,
        },
        LinesError::Write(e) => to_py(e),
    }
}

#[pymethods]
impl PyTokenWriter {
    #[new]
    #[pyo3(signature = (path, vocab_size, eot_token=None, shard_tokens=None))]
    fn new(
        path: std::path::PathBuf,
        vocab_size: u64,
        eot_token: Option<Rank>,
        shard_tokens: Option<u64>,
    ) -> PyResult<Self> {
        let inner = BinWriter::create(&path, vocab_size, eot_token, shard_tokens).map_err(to_py)?;
        Ok(PyTokenWriter { inner: Some(inner) })
    }

    #[getter]
    fn num_tokens(&self) -> u64 {
        self.inner.as_ref().map_or(0, BinWriter::num_tokens)
    }

    /// Encodes `texts` (ordinary text: special tokens' strings are not special) on
    /// `num_threads` threads and appends them in order, each followed by the end-of-text
    /// id where `doc_ends` says a document ends. Returns the tokens written.
    #[pyo3(signature = (encoder, texts, doc_ends, num_threads=None))]
    fn write_texts(
        &mut self,
        py: Python<'_>,
        encoder: &Bound<'_, PyEncoder>,
        texts: Vec<PyBackedStr>,
        doc_ends: Vec<bool>,
        num_threads: Option<usize>,
    ) -> PyResult<u64> {
        if texts.len() != doc_ends.len() {
            return Err(PyValueError::new_err("texts and doc_ends differ in length"));
        }
        let encoder = &encoder.get().inner;
        let writer = self.writer()?;
        py.detach(|| {
            let ids = encoder.encode_documents(&texts, &doc_ends, writer.eot(), num_threads);
            writer.write(&ids).map(|()| ids.len() as u64)
        })
        .map_err(to_py)
    }

    /// Like `write_texts` with each non-empty line of `block` a document; returns
    /// (tokens written, documents). `block` is a str, or the bytes read from a file: those
    /// are checked to be UTF-8 here, with the GIL released, and a block that is not raises
    /// UnicodeDecodeError before anything is written. Bytes skip what a str costs first
    /// (decoding the file into the str's characters, then encoding them back to UTF-8, both
    /// on one thread holding the GIL): a text file to `.bin` measured 1.4x faster so.
    #[pyo3(signature = (encoder, block, num_threads=None))]
    fn write_lines(
        &mut self,
        py: Python<'_>,
        encoder: &Bound<'_, PyEncoder>,
        block: &Bound<'_, PyAny>,
        num_threads: Option<usize>,
    ) -> PyResult<(u64, usize)> {
        let encoder = &encoder.get().inner;
        let writer = self.writer()?;
        let (bytes, checked) = match block.cast::<PyBytes>() {
            Ok(bytes) => (bytes.as_bytes(), false),
            Err(_) => (block.cast::<PyString>()?.to_str()?.as_bytes(), true),
        };
        py.detach(|| {
            let block = match checked {
                // SAFETY: the UTF-8 of a str.
                true => unsafe { std::str::from_utf8_unchecked(bytes) },
                false => std::str::from_utf8(bytes).map_err(|e| LinesError::NotUtf8(bytes.to_vec(), e))?,
            };
            let (ids, docs) = encoder.encode_lines(block, writer.eot(), num_threads);
            writer.write(&ids).map_err(LinesError::Write)?;
            Ok((ids.len() as u64, docs))
        })
        .map_err(|e| lines_error(py, e))
    }

    /// Like `write_texts` with the non-empty strings of Arrow string arrays as the
    /// documents, each array given as the (schema, array) capsules of its C data interface
    /// export (`__arrow_c_array__`) and read in place (`arrow_c.rs`). Returns (tokens
    /// written, documents). Each string is checked to be UTF-8 (pyarrow's Parquet reader
    /// does not check), and one that is not raises UnicodeDecodeError before anything is
    /// written; an array that is not a string or large string one without nulls raises
    /// ValueError.
    #[pyo3(signature = (encoder, columns, num_threads=None))]
    fn write_strings(
        &mut self,
        py: Python<'_>,
        encoder: &Bound<'_, PyEncoder>,
        columns: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)>,
        num_threads: Option<usize>,
    ) -> PyResult<(u64, usize)> {
        let encoder = &encoder.get().inner;
        let writer = self.writer()?;
        let columns = columns
            .iter()
            .map(|(schema, array)| {
                let (schema, array) = (
                    capsule_pointer(schema, c"arrow_schema")?,
                    capsule_pointer(array, c"arrow_array")?,
                );
                // SAFETY: a capsule holds its live export until it is freed, and `columns`
                // (which holds the capsules) outlives every use of the strings.
                unsafe { crate::arrow_c::strings(schema, array) }.map_err(to_py)
            })
            .collect::<PyResult<Vec<_>>>()?;
        py.detach(|| {
            let mut docs: Vec<&str> = Vec::new();
            for column in &columns {
                for pair in column.bounds.windows(2).filter(|pair| pair[0] < pair[1]) {
                    let doc = &column.data[pair[0]..pair[1]];
                    docs.push(std::str::from_utf8(doc).map_err(|e| LinesError::NotUtf8(doc.to_vec(), e))?);
                }
            }
            let ids = encoder.encode_documents(&docs, &vec![true; docs.len()], writer.eot(), num_threads);
            writer.write(&ids).map_err(LinesError::Write)?;
            Ok((ids.len() as u64, docs.len()))
        })
        .map_err(|e| lines_error(py, e))
    }

    /// Completes the output; returns its pieces' temporary files in order, for the caller to
    /// name and rename (`fastgpt.data.pretokenize`).
    fn finish(&mut self, py: Python<'_>) -> PyResult<Vec<std::path::PathBuf>> {
        let writer = self
            .inner
            .take()
            .ok_or_else(|| PyValueError::new_err("the token writer is already finished"))?;
        py.detach(|| writer.finish()).map_err(to_py)
    }

    /// Drops the unfinished file (also what happens when the writer is garbage collected).
    fn abort(&mut self) {
        self.inner = None;
    }
}

// ---- .bin token files (binfile.rs): the one header reader/writer, used by fastgpt.data.tokens ----

/// The 1024-byte header of a fastgpt `.bin` file, and the bytes per token it implies.
#[pyfunction]
#[pyo3(signature = (num_tokens, vocab_size, eot_token=None))]
fn bin_header<'py>(
    py: Python<'py>,
    num_tokens: u64,
    vocab_size: u64,
    eot_token: Option<Rank>,
) -> PyResult<(Bound<'py, PyBytes>, u64)> {
    let header = Header::new(num_tokens, vocab_size, eot_token).map_err(to_py)?;
    Ok((PyBytes::new(py, &header.to_bytes()), header.width))
}

/// Checks the header bytes of the file `path` of `file_size` bytes; returns (magic,
/// version, bytes per token, tokens, fastgpt header version, vocabulary size, end-of-text id).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn parse_bin_header(
    header: &[u8],
    file_size: u64,
    path: &str,
) -> PyResult<(i32, i32, u64, u64, i32, Option<u64>, Option<Rank>)> {
    let h = Header::parse(header, file_size, path).map_err(to_py)?;
    let slot = |i: usize| i32::from_le_bytes(header[4 * i..4 * i + 4].try_into().unwrap());
    Ok((
        slot(0),
        slot(1),
        h.width,
        h.num_tokens,
        h.fastgpt_version,
        h.vocab_size,
        h.eot,
    ))
}

// ---- end of .bin token files ----

/// BPE training in two phases: `add_texts` counts batches of text (streamed by the caller),
/// then `start_merging` and repeated `merge` calls learn the merges, so Python can show
/// progress between calls. Every heavy call releases the GIL and runs on `threads` threads.
#[pyclass(module = "fastgpt._core", name = "BpeTrainer")]
struct PyTrainer {
    counter: Option<WordCounter>,
    merger: Option<Merger>,
    threads: Option<usize>,
}

impl PyTrainer {
    fn counter(&mut self) -> PyResult<&mut WordCounter> {
        self.counter
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("this trainer has started merging; it takes no more text"))
    }

    fn merger(&self) -> PyResult<&Merger> {
        self.merger
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("call start_merging first"))
    }
}

#[pymethods]
impl PyTrainer {
    #[new]
    #[pyo3(signature = (pattern, special_tokens=Vec::new(), max_words=0, threads=None))]
    fn new(pattern: &str, special_tokens: Vec<String>, max_words: usize, threads: Option<usize>) -> PyResult<Self> {
        let counter = WordCounter::new(pattern, &special_tokens, max_words).map_err(to_py)?;
        Ok(PyTrainer {
            counter: Some(counter),
            merger: None,
            threads,
        })
    }

    /// Splits and counts a batch of texts on all threads.
    fn add_texts(&mut self, py: Python<'_>, texts: Vec<String>) -> PyResult<()> {
        let threads = self.threads;
        let counter = self.counter()?;
        py.detach(|| with_threads(threads, || counter.add_texts(&texts)));
        Ok(())
    }

    /// Adds `count` occurrences of one word (counted elsewhere).
    fn add_word(&mut self, word: &[u8], count: u64) -> PyResult<()> {
        self.counter()?.add_word(word, count);
        Ok(())
    }

    /// Distinct words held now.
    #[getter]
    fn n_words(&self) -> usize {
        self.counter.as_ref().map_or(0, WordCounter::len)
    }

    /// Word occurrences counted (dropped ones included).
    #[getter]
    fn total_words(&self) -> u64 {
        self.counter.as_ref().map_or(0, WordCounter::total_words)
    }

    /// (distinct words dropped by the max_words cap, their occurrences).
    #[getter]
    fn dropped(&self) -> (u64, u64) {
        self.counter.as_ref().map_or((0, 0), WordCounter::dropped)
    }

    /// Ends counting and prepares merging towards `vocab_size` tokens, `n_specials` of them
    /// special. Returns (distinct words dropped by the cap, their occurrences, the most
    /// tokens left to learn).
    fn start_merging(&mut self, py: Python<'_>, vocab_size: usize, n_specials: usize) -> PyResult<(u64, u64, usize)> {
        crate::bpe::train::check_vocab_size(vocab_size, n_specials).map_err(to_py)?;
        let mut counter = self
            .counter
            .take()
            .ok_or_else(|| PyValueError::new_err("merging has already started"))?;
        let threads = self.threads;
        let (merger, (words, occurrences)) = py.detach(|| {
            with_threads(threads, || {
                counter.apply_cap();
                let dropped = counter.dropped();
                (counter.into_merger(vocab_size, n_specials), dropped)
            })
        });
        let merger = merger.map_err(to_py)?;
        let todo = merger.target_tokens() - merger.tokens().len();
        self.merger = Some(merger);
        Ok((words, occurrences, todo))
    }

    /// Learns up to `max_new_tokens` more tokens; returns how many were made (0: finished).
    fn merge(&mut self, py: Python<'_>, max_new_tokens: usize) -> PyResult<usize> {
        let merger = self
            .merger
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("call start_merging first"))?;
        Ok(py.detach(|| merger.step(max_new_tokens)))
    }

    #[getter]
    fn finished(&self) -> bool {
        self.merger.as_ref().is_some_and(Merger::is_finished)
    }

    /// The tokens learned so far as (bytes, id), in id order (ids are tiktoken ranks).
    fn ranks<'py>(&self, py: Python<'py>) -> PyResult<Vec<(Bound<'py, PyBytes>, Rank)>> {
        Ok(self
            .merger()?
            .tokens()
            .iter()
            .enumerate()
            .map(|(i, t)| (PyBytes::new(py, t), i as Rank))
            .collect())
    }

    /// The merges in the order learned, as (left id, right id, merged id).
    fn merges(&self) -> PyResult<Vec<(Rank, Rank, Rank)>> {
        Ok(self
            .merger()?
            .merges()
            .iter()
            .map(|m| (m.left, m.right, m.id))
            .collect())
    }
}

/// The names accepted for the standard split patterns.
#[pyfunction]
fn pattern_names() -> Vec<&'static str> {
    crate::split::pattern_names()
}

/// Splits `text` into pre-tokens with `pattern` (a name or a regex); for tests and tools.
#[pyfunction]
fn split(pattern: &str, text: &str) -> PyResult<Vec<String>> {
    let splitter = crate::split::Splitter::new(pattern).map_err(to_py)?;
    Ok(splitter.split(text).into_iter().map(String::from).collect())
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEncoder>()?;
    m.add_class::<PyTokenWriter>()?;
    m.add_class::<PyTrainer>()?;
    m.add_function(wrap_pyfunction!(pattern_names, m)?)?;
    m.add_function(wrap_pyfunction!(split, m)?)?;
    m.add_function(wrap_pyfunction!(bin_header, m)?)?;
    m.add_function(wrap_pyfunction!(parse_bin_header, m)?)?;
    m.add_function(wrap_pyfunction!(token_id, m)?)?;
    m.add_function(wrap_pyfunction!(encode_piece, m)?)?;
    Ok(())
}

// ---- tiktoken compatibility (python/fastgpt/tokenizer/core.py) --------------------------

/// The id of the token, regular or special, whose bytes are exactly `token`
/// (tiktoken's `encode_single_token`).
#[pyfunction]
fn token_id(encoder: &Bound<'_, PyEncoder>, token: &[u8]) -> Option<Rank> {
    let inner = &encoder.get().inner;
    inner.token_id(token).or_else(|| {
        std::str::from_utf8(token)
            .ok()
            .and_then(|text| inner.special_tokens().get(text).copied())
    })
}

/// BPE of raw bytes as one piece, without the split: tiktoken's rule (repeatedly merge the
/// adjacent pair whose joined bytes are the token of lowest rank). For the rare paths that
/// see bytes which are not text (`_encode_bytes`, `encode_with_unstable`); quadratic, as
/// tiktoken's own is, so callers pass pieces, not documents.
#[pyfunction]
fn encode_piece(py: Python<'_>, encoder: &Bound<'_, PyEncoder>, piece: &[u8]) -> PyResult<Vec<Rank>> {
    let inner = &encoder.get().inner;
    py.detach(|| {
        // parts[i] is the start of the i-th part; the last entry is the end.
        let mut parts: Vec<usize> = (0..=piece.len()).collect();
        let rank = |parts: &[usize], i: usize| -> Option<Rank> {
            parts.get(i + 2).and_then(|&end| inner.token_id(&piece[parts[i]..end]))
        };
        loop {
            let best = (0..parts.len().saturating_sub(2))
                .filter_map(|i| rank(&parts, i).map(|r| (r, i)))
                .min();
            match best {
                Some((_, i)) => {
                    parts.remove(i + 1);
                }
                None => break,
            }
        }
        parts
            .windows(2)
            .map(|w| {
                let bytes = &piece[w[0]..w[1]];
                inner
                    .token_id(bytes)
                    .ok_or_else(|| PyKeyError::new_err(format!("no token for the bytes {bytes:?}")))
            })
            .collect()
    })
}
