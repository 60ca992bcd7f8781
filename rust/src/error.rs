//! The crate's one error type. `py.rs` maps each variant to a Python exception class.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// An unknown pattern name or a regex that does not compile (maps to ValueError).
    Pattern(String),
    /// A vocabulary, rank file, merges list or token file that is malformed (maps to ValueError).
    Invalid(String),
    /// A token id that is not in the vocabulary (maps to KeyError).
    UnknownToken(u32),
    /// A failed read or write, with the path (maps to OSError).
    Io(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Pattern(msg) | Error::Invalid(msg) | Error::Io(msg) => f.write_str(msg),
            Error::UnknownToken(id) => write!(f, "token id {id} is not in the vocabulary"),
        }
    }
}

impl std::error::Error for Error {}
