//! Where a new word may be cut into parts that are merged alone ("cuts").
//!
//! Every merge makes a token out of adjacent bytes of the word. So where no token of the
//! vocabulary can cover the edge between two characters, no merge ever joins across it:
//! BPE of the word is BPE of the part before the edge followed by BPE of the part after.
//! In scripts that a vocabulary holds few tokens of (Thai, Arabic, CJK and Hangul in
//! cl100k; Thai and CJK in o200k), most edges of a word are such cuts, and its parts are
//! single characters that are tokens or short runs met in other words before: a new word
//! costs lookups instead of a merge. In a multilingual web sample, the bytes that still
//! need merging fall from 209 KB to 81 KB for cl100k.
//!
//! A token covering the edge between `c1` and `c2` may hold each of them whole, or only
//! the end of `c1` (it starts inside `c1`) or the start of `c2` (it ends inside `c2`).
//! Whole pairs go into a bit filter, so that a pair not in it is surely no token's. The
//! partial cases, a few hundred, are kept coarsely: by the character on the whole side,
//! or by the two bytes at the edge. Either way an edge that some token may cover is never
//! cut, so a cut is exact.

use crate::bpe::atoms::is_continuation;
use crate::bpe::tokens::Tokens;

pub(crate) struct Cuts {
    /// Per code point below 0x10000, how tokens hold it next to characters that are not
    /// ASCII (`HELD_*`); characters above are never cut at.
    held: Box<[u8]>,
    /// A bit per hash of the pairs of whole characters side by side in some token (about 8
    /// bits a pair: one pair in 8 that no token holds passes for one, and is not cut at),
    /// asked only for two characters that some tokens hold on that side.
    pairs: Box<[u64]>,
    shift: u32,
    /// (last byte before the edge, first byte after) where a token covers both characters
    /// only partly: 256 × 256 bits.
    bytes: Box<[u64]>,
}

/// Some token holds the character whole with a whole character after it.
const HELD_BEFORE: u8 = 1;
/// ... with a whole character before it.
const HELD_AFTER: u8 = 2;
/// ... with part of a character after it (the token ends inside that character).
const HELD_BEFORE_PART: u8 = 4;
/// ... with part of a character before it (the token starts inside that character).
const HELD_AFTER_PART: u8 = 8;
/// What `held` says of the characters above 0x10000: anything.
const HELD_ANYHOW: u8 = 0xFF;

/// The length of the character whose first byte is `b` (1 for a stray continuation byte,
/// which no character of valid text starts with).
fn char_len(b: u8) -> usize {
    match b {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

/// The code point of the whole character `bytes`, if it is one.
fn code_point(bytes: &[u8]) -> Option<u32> {
    let mut chars = std::str::from_utf8(bytes).ok()?.chars();
    chars.next().filter(|_| chars.next().is_none()).map(|c| c as u32)
}

#[inline(always)]
fn pair_hash(c1: u32, c2: u32) -> u64 {
    ((c1 as u64) << 21 | c2 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Cuts {
    pub(crate) fn build(tokens: &Tokens) -> Cuts {
        let mut held = vec![0u8; 0x10000].into_boxed_slice();
        let mut pairs = Vec::new();
        let mut bytes = vec![0u64; 1024].into_boxed_slice();
        let mut mark = |c: u32, flag: u8| {
            if let Some(slot) = held.get_mut(c as usize) {
                *slot |= flag;
            }
        };
        // Only edges between two characters that are not ASCII are asked about.
        for (token, _) in tokens.iter().filter(|(token, _)| !token.is_ascii()) {
            for p in (1..token.len()).filter(|&p| !is_continuation(token[p])) {
                // The whole characters on each side of the edge, where the token holds them.
                let left = token[..p]
                    .iter()
                    .rposition(|&b| !is_continuation(b))
                    .and_then(|q| code_point(&token[q..p]));
                let right = token.get(p..p + char_len(token[p])).and_then(code_point);
                if left.is_some_and(|c| c < 0x80) || right.is_some_and(|c| c < 0x80) {
                    continue;
                }
                match (left, right) {
                    (Some(c1), Some(c2)) => {
                        mark(c1, HELD_BEFORE);
                        mark(c2, HELD_AFTER);
                        pairs.push(pair_hash(c1, c2));
                    }
                    (Some(c1), None) => mark(c1, HELD_BEFORE_PART),
                    (None, Some(c2)) => mark(c2, HELD_AFTER_PART),
                    (None, None) => {
                        let k = (token[p - 1] as usize) << 8 | token[p] as usize;
                        bytes[k / 64] |= 1 << (k % 64);
                    }
                }
            }
        }
        // A pair is met in many tokens.
        pairs.sort_unstable();
        pairs.dedup();
        let n = (8 * pairs.len()).next_power_of_two().max(1 << 12);
        let shift = 64 - n.trailing_zeros();
        let mut bits = vec![0u64; n / 64].into_boxed_slice();
        for hash in pairs {
            let bit = (hash >> shift) as usize;
            bits[bit / 64] |= 1 << (bit % 64);
        }
        Cuts {
            held,
            pairs: bits,
            shift,
            bytes,
        }
    }

    /// How tokens hold the character `c`.
    #[inline(always)]
    pub(crate) fn held(&self, c: u32) -> u8 {
        self.held.get(c as usize).copied().unwrap_or(HELD_ANYHOW)
    }

    /// Whether no token may cover the edge between the characters `c1` and `c2`, neither of
    /// them ASCII (`h1` and `h2` their `held`), whose bytes on each side of it are `x` and
    /// `y`: the word may be cut there.
    #[inline(always)]
    pub(crate) fn cuts(&self, (c1, h1): (u32, u8), (c2, h2): (u32, u8), x: u8, y: u8) -> bool {
        let k = (x as usize) << 8 | y as usize;
        if h1 & HELD_BEFORE_PART != 0 || h2 & HELD_AFTER_PART != 0 || self.bytes[k / 64] >> (k % 64) & 1 != 0 {
            return false;
        }
        if h1 & HELD_BEFORE == 0 || h2 & HELD_AFTER == 0 {
            return true;
        }
        let bit = (pair_hash(c1, c2) >> self.shift) as usize;
        self.pairs[bit / 64] >> (bit % 64) & 1 == 0
    }
}
