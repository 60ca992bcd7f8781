//! Byte-level BPE: ranked-merge encoding (with a linear-time path for long pieces),
//! training from word frequencies, and tiktoken rank files.

pub(crate) mod backtrack;
pub mod encode;
pub mod train;
pub mod vocab;
