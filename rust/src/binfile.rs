//! `.bin` token files: llm.c's layout (a 1024-byte header of 256 little-endian int32, then
//! the tokens as uint16 or uint32) with fastgpt's fields in llm.c's unused slots:
//!
//! | slot | field |
//! | --- | --- |
//! | 0 | magic: 20240520 for uint16 tokens, 20240801 for uint32 |
//! | 1 | version: 1 for uint16, 7 for uint32 |
//! | 2 | token count as int32 (llm.c's field), 0 when it does not fit |
//! | 3 | fastgpt header version, 1 (0 in a plain llm.c file) |
//! | 4, 5 | 64-bit token count, low word then high word |
//! | 6 | vocabulary size (as uint32) |
//! | 7 | end-of-text id, -1 when none |
//!
//! The writer streams: tokens go to a temporary file next to the output, which is renamed
//! into place once its header is final, so an interrupted run never leaves a file that
//! looks complete. With a shard size it rolls over to numbered files of exactly that many
//! tokens (`train_000000.bin`, ...), as llm.c's shards.

use crate::error::{Error, Result};
use crate::Rank;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const HEADER_BYTES: usize = 1024;
pub const MAGIC_U16: i32 = 20240520;
pub const MAGIC_U32: i32 = 20240801;
const VERSION_U16: i32 = 1;
const VERSION_U32: i32 = 7;
const FASTGPT_VERSION: i32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub num_tokens: u64,
    /// At most 2^32: ids must fit uint32.
    pub vocab_size: u64,
    pub eot: Option<Rank>,
}

impl Header {
    /// uint32 tokens when the vocabulary does not fit uint16.
    pub fn wide(&self) -> bool {
        self.vocab_size > 1 << 16
    }

    pub fn to_bytes(&self) -> [u8; HEADER_BYTES] {
        let mut slots = [0i32; HEADER_BYTES / 4];
        (slots[0], slots[1]) = if self.wide() {
            (MAGIC_U32, VERSION_U32)
        } else {
            (MAGIC_U16, VERSION_U16)
        };
        slots[2] = i32::try_from(self.num_tokens).unwrap_or(0);
        slots[3] = FASTGPT_VERSION;
        slots[4] = self.num_tokens as u32 as i32;
        slots[5] = (self.num_tokens >> 32) as u32 as i32;
        slots[6] = self.vocab_size as u32 as i32;
        slots[7] = self.eot.map_or(-1, |e| e as i32);
        let mut out = [0u8; HEADER_BYTES];
        for (chunk, slot) in out.chunks_exact_mut(4).zip(slots) {
            chunk.copy_from_slice(&slot.to_le_bytes());
        }
        out
    }

    /// Reads a fastgpt header and checks it against the file size.
    pub fn parse(bytes: &[u8], file_size: u64, path: &Path) -> Result<Header> {
        let bad = |what: String| Error::Invalid(format!("{}: {what}", path.display()));
        if bytes.len() < HEADER_BYTES {
            return Err(bad(format!(
                "truncated .bin file: shorter than the {HEADER_BYTES}-byte header"
            )));
        }
        let slot = |i: usize| i32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
        let width = match (slot(0), slot(1)) {
            (MAGIC_U16, VERSION_U16) => 2,
            (MAGIC_U32, VERSION_U32) => 4,
            (magic, version) => return Err(bad(format!("not a .bin token file (magic {magic}, version {version})"))),
        };
        if slot(3) != FASTGPT_VERSION {
            return Err(bad(format!("fastgpt header version {} (this reader knows 1)", slot(3))));
        }
        let num_tokens = slot(4) as u32 as u64 | (slot(5) as u32 as u64) << 32;
        let vocab_size = match slot(6) as u32 {
            0 => 1 << 32,
            v => v as u64,
        };
        let header = Header {
            num_tokens,
            vocab_size,
            eot: u32::try_from(slot(7)).ok(),
        };
        if (header.wide() as u64 + 1) * 2 != width {
            return Err(bad(format!("dtype does not match the vocabulary size {vocab_size}")));
        }
        let expected = HEADER_BYTES as u64 + num_tokens * width;
        if file_size != expected {
            return Err(bad(format!(
                "size mismatch: {num_tokens} tokens need {expected} bytes, the file has {file_size}"
            )));
        }
        Ok(header)
    }
}

struct Shard {
    path: PathBuf,
    tmp: PathBuf,
    file: BufWriter<File>,
    count: u64,
}

/// Streams token ids into one `.bin` file, or numbered shards of `shard_tokens` each.
pub struct BinWriter {
    output: PathBuf,
    vocab_size: u64,
    eot: Option<Rank>,
    shard_tokens: Option<u64>,
    current: Option<Shard>,
    finished: Vec<PathBuf>,
    total: u64,
    buffer: Vec<u8>,
}

impl BinWriter {
    pub fn create(output: &Path, vocab_size: u64, eot: Option<Rank>, shard_tokens: Option<u64>) -> Result<Self> {
        if vocab_size == 0 || vocab_size > 1 << 32 {
            return Err(Error::Invalid(format!(
                "vocabulary size {vocab_size} must be in 1..=2^32"
            )));
        }
        if eot.is_some_and(|e| e as u64 >= vocab_size) {
            return Err(Error::Invalid(format!(
                "end-of-text id {eot:?} is outside the vocabulary of {vocab_size}"
            )));
        }
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

    /// The path of shard `index`: `out.bin` → `out_000003.bin`.
    fn shard_path(&self, index: usize) -> PathBuf {
        if self.shard_tokens.is_none() {
            return self.output.clone();
        }
        let stem = self
            .output
            .file_stem()
            .map_or_else(|| "tokens".into(), |s| s.to_string_lossy().into_owned());
        let ext = self
            .output
            .extension()
            .map_or_else(|| "bin".into(), |s| s.to_string_lossy().into_owned());
        self.output.with_file_name(format!("{stem}_{index:06}.{ext}"))
    }

    fn open_shard(&mut self) -> Result<&mut Shard> {
        if self.current.is_none() {
            let path = self.shard_path(self.finished.len());
            let name = path
                .file_name()
                .map_or_else(|| "tokens.bin".into(), |n| n.to_string_lossy().into_owned());
            let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
            let io = |e: std::io::Error| Error::Io(format!("cannot write {}: {e}", path.display()));
            let mut file = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io)?);
            file.write_all(&[0u8; HEADER_BYTES]).map_err(io)?;
            self.current = Some(Shard {
                path,
                tmp,
                file,
                count: 0,
            });
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
        let wide = self.header(0).wide();
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
            let shard = self.open_shard()?;
            shard
                .file
                .write_all(&buffer)
                .map_err(|e| Error::Io(format!("{}: {e}", shard.tmp.display())))?;
            shard.count += take as u64;
            self.buffer = buffer;
            self.total += take as u64;
            ids = &ids[take..];
            if self
                .shard_tokens
                .is_some_and(|s| self.current.as_ref().is_some_and(|c| c.count == s))
            {
                self.close_shard()?;
            }
        }
        Ok(())
    }

    fn header(&self, num_tokens: u64) -> Header {
        Header {
            num_tokens,
            vocab_size: self.vocab_size,
            eot: self.eot,
        }
    }

    /// Writes the header of the open shard and renames it into place.
    fn close_shard(&mut self) -> Result<()> {
        let Some(mut shard) = self.current.take() else {
            return Ok(());
        };
        let header = self.header(shard.count).to_bytes();
        let io = |e: std::io::Error| Error::Io(format!("{}: {e}", shard.tmp.display()));
        shard.file.flush().map_err(io)?;
        let mut file = shard.file.into_inner().map_err(|e| io(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&header).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&shard.tmp, &shard.path).map_err(io)?;
        self.finished.push(shard.path);
        Ok(())
    }

    /// Completes the last file and returns every file written. With no tokens at all, one
    /// empty (but valid) file is written.
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        if self.current.is_none() && self.finished.is_empty() {
            self.open_shard()?;
        }
        self.close_shard()?;
        Ok(std::mem::take(&mut self.finished))
    }
}

impl Drop for BinWriter {
    /// An unfinished file is removed, never left half-written.
    fn drop(&mut self) {
        if let Some(shard) = self.current.take() {
            drop(shard.file);
            let _ = std::fs::remove_file(&shard.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> (Header, Vec<u8>) {
        let bytes = std::fs::read(path).unwrap();
        let header = Header::parse(&bytes, bytes.len() as u64, path).unwrap();
        (header, bytes[HEADER_BYTES..].to_vec())
    }

    #[test]
    fn header_round_trip_and_dtype() {
        for (vocab, width) in [(256u64, 2usize), (65536, 2), (65537, 4), (1 << 32, 4)] {
            let header = Header {
                num_tokens: 3,
                vocab_size: vocab,
                eot: Some(1),
            };
            let mut bytes = header.to_bytes().to_vec();
            bytes.resize(HEADER_BYTES + 3 * width, 0);
            assert_eq!(
                Header::parse(&bytes, bytes.len() as u64, Path::new("x")).unwrap(),
                header
            );
        }
        let big = Header {
            num_tokens: 5_000_000_000,
            vocab_size: 50257,
            eot: None,
        };
        let bytes = big.to_bytes();
        assert_eq!(
            &bytes[8..12],
            &0i32.to_le_bytes(),
            "llm.c's int32 count is 0 when it does not fit"
        );
        let err = Header::parse(&bytes, 1024, Path::new("big.bin"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("big.bin: size mismatch"), "{err}");
    }

    #[test]
    fn writes_shards_of_exact_size_and_renames() {
        let dir = std::env::temp_dir().join(format!("fastgpt-binfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut writer = BinWriter::create(&dir.join("t.bin"), 300, Some(299), Some(4)).unwrap();
        writer.write(&[1, 2, 3]).unwrap();
        writer.write(&[4, 5, 6, 7, 8, 9, 299]).unwrap();
        let files = writer.finish().unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["t_000000.bin", "t_000001.bin", "t_000002.bin"]);
        let (header, payload) = read(&files[2]);
        assert_eq!((header.num_tokens, header.eot), (2, Some(299)));
        assert_eq!(payload, [9, 0, 43, 1]);
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_ids_and_dropped_writers_leave_nothing() {
        let dir = std::env::temp_dir().join(format!("fastgpt-binfile-drop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut writer = BinWriter::create(&dir.join("t.bin"), 100, None, None).unwrap();
        writer.write(&[1, 2]).unwrap();
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
