//! `.bin` token files: the one implementation of the format (Python's `fastgpt.data.tokens`
//! calls it through `py.rs`). The layout, llm.c's 1024-byte header of 256 little-endian int32
//! with fastgpt's fields in its unused slots, then the tokens as uint16 or uint32, is
//! described in README.md ("The `.bin` token file"); `Header` is its code.
//!
//! The writer streams tokens into temporary files next to the output, named as Python's
//! `fastgpt._util.atomic` names them (`.NAME.tmp-PID-RANDOM`, so its `remove_stale` cleans
//! what a killed run left), and hands them back from `finish` with their headers final. The
//! caller names and renames them (the naming scheme lives in `fastgpt._util.shards`), so
//! nothing looks complete before the whole output is; a dropped writer deletes them all.

use crate::error::{Error, Result};
use crate::Rank;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const HEADER_BYTES: usize = 1024;
pub const MAGIC_U16: i32 = 20240520;
pub const MAGIC_U32: i32 = 20240801;
const VERSION_U16: i32 = 1;
const VERSION_U32: i32 = 7;
const FASTGPT_VERSION: i32 = 1;
const MAX_VOCAB: u64 = 1 << 32;

/// What a header says, as written (`to_bytes`) or read (`parse`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub num_tokens: u64,
    /// At most 2^32: ids must fit uint32. `None` only when read from a plain llm.c file.
    pub vocab_size: Option<u64>,
    pub eot: Option<Rank>,
    /// Bytes per token: 2 (uint16) or 4 (uint32).
    pub width: u64,
    /// 1, or 0 for a plain llm.c file.
    pub fastgpt_version: i32,
}

/// Bytes per token for a vocabulary: uint16 when every id fits, else uint32.
pub fn token_width(vocab_size: u64) -> u64 {
    if vocab_size <= 1 << 16 {
        2
    } else {
        4
    }
}

/// The checks every writer makes before writing anything.
pub fn check_vocab(vocab_size: u64, eot: Option<Rank>) -> Result<()> {
    if vocab_size == 0 || vocab_size > MAX_VOCAB {
        return Err(Error::Invalid(format!(
            "vocabulary size {vocab_size} must be in 1..=2^32"
        )));
    }
    if let Some(e) = eot.filter(|&e| e as u64 >= vocab_size) {
        return Err(Error::Invalid(format!(
            "end-of-text id {e} is outside the vocabulary of {vocab_size}"
        )));
    }
    Ok(())
}

impl Header {
    /// The header of a fastgpt file of `num_tokens` tokens.
    pub fn new(num_tokens: u64, vocab_size: u64, eot: Option<Rank>) -> Result<Header> {
        check_vocab(vocab_size, eot)?;
        Ok(Header {
            num_tokens,
            vocab_size: Some(vocab_size),
            eot,
            width: token_width(vocab_size),
            fastgpt_version: FASTGPT_VERSION,
        })
    }

    pub fn to_bytes(&self) -> [u8; HEADER_BYTES] {
        let mut slots = [0i32; HEADER_BYTES / 4];
        (slots[0], slots[1]) = if self.width == 4 {
            (MAGIC_U32, VERSION_U32)
        } else {
            (MAGIC_U16, VERSION_U16)
        };
        slots[2] = i32::try_from(self.num_tokens).unwrap_or(0);
        slots[3] = self.fastgpt_version;
        if self.fastgpt_version == FASTGPT_VERSION {
            slots[4] = self.num_tokens as u32 as i32;
            slots[5] = (self.num_tokens >> 32) as u32 as i32;
            // 2^32 wraps to 0, which `parse` reads back as 2^32 (no vocabulary is empty).
            slots[6] = self.vocab_size.unwrap_or(0) as u32 as i32;
            slots[7] = self.eot.map_or(-1, |e| e as i32);
        }
        let mut out = [0u8; HEADER_BYTES];
        for (chunk, slot) in out.chunks_exact_mut(4).zip(slots) {
            chunk.copy_from_slice(&slot.to_le_bytes());
        }
        out
    }

    /// Reads a header (fastgpt's or a plain llm.c one) and checks it against the file size;
    /// every error names `path` and what is wrong.
    pub fn parse(bytes: &[u8], file_size: u64, path: &str) -> Result<Header> {
        let bad = |what: String| Error::Invalid(format!("{path}: {what}"));
        if bytes.len() < HEADER_BYTES || file_size < HEADER_BYTES as u64 {
            return Err(bad(format!(
                "truncated .bin file: {file_size} bytes, shorter than the {HEADER_BYTES}-byte header"
            )));
        }
        let slot = |i: usize| i32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
        let (magic, version) = (slot(0), slot(1));
        let (width, want_version, dtype) = match magic {
            MAGIC_U16 => (2, VERSION_U16, "uint16"),
            MAGIC_U32 => (4, VERSION_U32, "uint32"),
            _ => {
                return Err(bad(format!(
                    "not a .bin token file: magic {magic}, expected {MAGIC_U16} (uint16) or {MAGIC_U32} (uint32) \
                     (for a headerless nanoGPT uint16 file pass headerless=True)"
                )))
            }
        };
        if version != want_version {
            return Err(bad(format!(
                "unknown version {version} for magic {magic} (expected {want_version})"
            )));
        }
        let header = match slot(3) {
            0 => {
                let count = slot(2);
                if count < 0 {
                    return Err(bad(format!("corrupt header: negative token count {count}")));
                }
                Header {
                    num_tokens: count as u64,
                    vocab_size: None,
                    eot: None,
                    width,
                    fastgpt_version: 0,
                }
            }
            FASTGPT_VERSION => {
                let num_tokens = slot(4) as u32 as u64 | (slot(5) as u32 as u64) << 32;
                let int32 = i32::try_from(num_tokens).unwrap_or(0);
                if slot(2) != int32 {
                    return Err(bad(format!(
                        "corrupt header: int32 count {} disagrees with 64-bit count {num_tokens}",
                        slot(2)
                    )));
                }
                let vocab_size = match slot(6) as u32 {
                    0 => MAX_VOCAB,
                    v => v as u64,
                };
                if vocab_size > 1 << (8 * width) {
                    return Err(bad(format!(
                        "corrupt header: vocabulary size {vocab_size} does not fit {dtype}"
                    )));
                }
                let eot = u32::try_from(slot(7)).ok();
                if let Some(e) = eot.filter(|&e| e as u64 >= vocab_size) {
                    return Err(bad(format!(
                        "corrupt header: end-of-text id {e} is outside the vocabulary of {vocab_size}"
                    )));
                }
                Header {
                    num_tokens,
                    vocab_size: Some(vocab_size),
                    eot,
                    width,
                    fastgpt_version: FASTGPT_VERSION,
                }
            }
            other => {
                return Err(bad(format!(
                    "unknown fastgpt header version {other} (this reader knows 1)"
                )))
            }
        };
        let expected = header
            .num_tokens
            .checked_mul(width)
            .and_then(|n| n.checked_add(HEADER_BYTES as u64));
        if expected != Some(file_size) {
            let expected = expected.map_or_else(|| "more than 2^64".into(), |e| e.to_string());
            let hint = if expected.parse::<u64>().map_or(true, |e| file_size < e) {
                " (truncated?)"
            } else {
                ""
            };
            return Err(bad(format!(
                "size mismatch: header says {} {dtype} tokens ({expected} bytes), file has {file_size} bytes{hint}",
                header.num_tokens
            )));
        }
        Ok(header)
    }
}

/// A fresh temporary name beside `path`, in `fastgpt._util.atomic`'s scheme.
pub fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "tokens.bin".into(), |n| n.to_string_lossy().into_owned());
    // RandomState is seeded randomly per process and differs on every call: no rand crate needed.
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut random = std::collections::hash_map::RandomState::new().build_hasher();
    random.write_u64(COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let random = random.finish() as u32;
    path.with_file_name(format!(".{name}.tmp-{}-{random:08x}", std::process::id()))
}

struct Piece {
    tmp: PathBuf,
    file: BufWriter<File>,
    count: u64,
}

/// Streams token ids into one `.bin` file, or into pieces of exactly `shard_tokens` each
/// (the last may be shorter).
pub struct BinWriter {
    output: PathBuf,
    vocab_size: u64,
    eot: Option<Rank>,
    shard_tokens: Option<u64>,
    current: Option<Piece>,
    /// Closed pieces, still under their temporary names.
    finished: Vec<PathBuf>,
    total: u64,
    buffer: Vec<u8>,
}

impl BinWriter {
    pub fn create(output: &Path, vocab_size: u64, eot: Option<Rank>, shard_tokens: Option<u64>) -> Result<Self> {
        check_vocab(vocab_size, eot)?;
        if shard_tokens == Some(0) {
            return Err(Error::Invalid("shard size must be at least 1 token".into()));
        }
        crate::memory::keep_large_allocations_mapped();
        Ok(BinWriter {
            output: output.to_path_buf(),
            vocab_size,
            eot,
            shard_tokens,
            current: None,
            finished: Vec::new(),
            total: 0,
            buffer: Vec::new(),
        })
    }

    pub fn num_tokens(&self) -> u64 {
        self.total
    }

    pub fn eot(&self) -> Option<Rank> {
        self.eot
    }

    fn open_piece(&mut self) -> Result<&mut Piece> {
        if self.current.is_none() {
            let tmp = temp_name(&self.output);
            let io = |e: std::io::Error| Error::Io(format!("cannot write {}: {e}", self.output.display()));
            let mut file = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io)?);
            file.write_all(&[0u8; HEADER_BYTES]).map_err(io)?;
            self.current = Some(Piece { tmp, file, count: 0 });
        }
        Ok(self.current.as_mut().unwrap())
    }

    /// Appends `ids`; an id outside the vocabulary is an error naming it.
    pub fn write(&mut self, mut ids: &[Rank]) -> Result<()> {
        if let Some(&bad) = ids.iter().find(|&&id| id as u64 >= self.vocab_size) {
            return Err(Error::Invalid(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.vocab_size
            )));
        }
        let wide = token_width(self.vocab_size) == 4;
        while !ids.is_empty() {
            let room = self
                .shard_tokens
                .map_or(u64::MAX, |s| s - self.current.as_ref().map_or(0, |c| c.count));
            let take = ids.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            let mut buffer = std::mem::take(&mut self.buffer);
            buffer.clear();
            if wide {
                buffer.extend(ids[..take].iter().flat_map(|id| id.to_le_bytes()));
            } else {
                buffer.extend(ids[..take].iter().flat_map(|&id| (id as u16).to_le_bytes()));
            }
            let output = self.output.display().to_string();
            let piece = self.open_piece()?;
            piece
                .file
                .write_all(&buffer)
                .map_err(|e| Error::Io(format!("cannot write {output}: {e}")))?;
            piece.count += take as u64;
            self.buffer = buffer;
            self.total += take as u64;
            ids = &ids[take..];
            if self
                .shard_tokens
                .is_some_and(|s| self.current.as_ref().is_some_and(|c| c.count == s))
            {
                self.close_piece()?;
            }
        }
        Ok(())
    }

    /// Writes the header of the open piece and syncs it; it keeps its temporary name.
    fn close_piece(&mut self) -> Result<()> {
        let Some(mut piece) = self.current.take() else {
            return Ok(());
        };
        self.finished.push(piece.tmp.clone()); // from here on a failure still deletes it
        let header = Header::new(piece.count, self.vocab_size, self.eot)?.to_bytes();
        let output = self.output.display().to_string();
        let io = |e: std::io::Error| Error::Io(format!("cannot write {output}: {e}"));
        piece.file.flush().map_err(io)?;
        let mut file = piece.file.into_inner().map_err(|e| io(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&header).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(())
    }

    /// Completes the last piece and returns every piece's temporary file, in order, for the
    /// caller to rename. With no tokens at all, one empty (but valid) file is written.
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        if self.current.is_none() && self.finished.is_empty() {
            self.open_piece()?;
        }
        self.close_piece()?;
        Ok(std::mem::take(&mut self.finished))
    }
}

impl Drop for BinWriter {
    /// Unfinished output is removed, never left half-written or looking complete.
    fn drop(&mut self) {
        if let Some(piece) = self.current.take() {
            drop(piece.file);
            let _ = std::fs::remove_file(&piece.tmp);
        }
        for tmp in self.finished.drain(..) {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> (Header, Vec<u8>) {
        let bytes = std::fs::read(path).unwrap();
        let header = Header::parse(&bytes, bytes.len() as u64, &path.display().to_string()).unwrap();
        (header, bytes[HEADER_BYTES..].to_vec())
    }

    fn test_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fastgpt-binfile-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn header_round_trip_and_dtype() {
        for (vocab, width) in [(256u64, 2usize), (65536, 2), (65537, 4), (1 << 32, 4)] {
            let header = Header::new(3, vocab, Some(1)).unwrap();
            let mut bytes = header.to_bytes().to_vec();
            bytes.resize(HEADER_BYTES + 3 * width, 0);
            assert_eq!(Header::parse(&bytes, bytes.len() as u64, "x").unwrap(), header);
        }
        let big = Header::new(5_000_000_000, 50257, None).unwrap();
        let bytes = big.to_bytes();
        assert_eq!(
            &bytes[8..12],
            &0i32.to_le_bytes(),
            "llm.c's int32 count is 0 when it does not fit"
        );
        let err = Header::parse(&bytes, 1024, "big.bin").unwrap_err().to_string();
        assert!(err.starts_with("big.bin: size mismatch"), "{err}");
        assert!(Header::new(1, 0, None).is_err() && Header::new(1, (1 << 32) + 1, None).is_err());
        assert!(Header::new(1, 10, Some(10)).is_err());
    }

    #[test]
    fn plain_llmc_header() {
        let mut bytes = vec![0u8; HEADER_BYTES + 6];
        bytes[..4].copy_from_slice(&MAGIC_U16.to_le_bytes());
        bytes[4..8].copy_from_slice(&VERSION_U16.to_le_bytes());
        bytes[8..12].copy_from_slice(&3i32.to_le_bytes());
        let header = Header::parse(&bytes, bytes.len() as u64, "llmc.bin").unwrap();
        assert_eq!(
            (header.num_tokens, header.vocab_size, header.fastgpt_version),
            (3, None, 0)
        );
    }

    #[test]
    fn pieces_of_exact_size_stay_temporary_until_finished() {
        let dir = test_dir("pieces");
        let mut writer = BinWriter::create(&dir.join("t.bin"), 300, Some(299), Some(4)).unwrap();
        writer.write(&[1, 2, 3]).unwrap();
        writer.write(&[4, 5, 6, 7, 8, 9, 299]).unwrap();
        let files = writer.finish().unwrap();
        assert_eq!(files.len(), 3);
        for f in &files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name.starts_with(&format!(".t.bin.tmp-{}-", std::process::id())),
                "{name}"
            );
        }
        let (header, payload) = read(&files[2]);
        assert_eq!((header.num_tokens, header.eot), (2, Some(299)));
        assert_eq!(payload, [9, 0, 43, 1]);
        assert_eq!(read(&files[0]).0.num_tokens, 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_ids_and_dropped_writers_leave_nothing() {
        let dir = test_dir("drop");
        let mut writer = BinWriter::create(&dir.join("t.bin"), 100, None, Some(1)).unwrap();
        writer.write(&[1, 2]).unwrap(); // two closed pieces
        assert!(writer
            .write(&[100])
            .unwrap_err()
            .to_string()
            .contains("token id 100 is outside"));
        drop(writer);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(BinWriter::create(Path::new("x.bin"), 10, Some(10), None).is_err());
    }
}
