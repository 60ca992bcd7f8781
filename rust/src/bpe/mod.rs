//! Byte-level BPE: ranked-merge encoding (with a linear-time path for long pieces),
//! training from word frequencies, and tiktoken rank files.

pub(crate) mod atoms;
pub(crate) mod backtrack;
pub(crate) mod cuts;
pub mod encode;
mod keytable;
mod splits;
pub mod tokens;
pub mod train;
pub mod vocab;

/// A small deterministic generator for the tests' random pieces and vocabularies (a 64-bit
/// linear congruential generator with Knuth's constants).
#[cfg(test)]
pub(crate) struct TestRng(pub(crate) u64);

#[cfg(test)]
impl TestRng {
    pub(crate) fn step(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }

    /// A number below `m`.
    pub(crate) fn below(&mut self, m: usize) -> usize {
        (self.step() >> 33) as usize % m
    }

    /// `len` bytes drawn from `alphabet`.
    pub(crate) fn bytes(&mut self, len: usize, alphabet: &[u8]) -> Vec<u8> {
        (0..len).map(|_| alphabet[self.below(alphabet.len())]).collect()
    }
}
