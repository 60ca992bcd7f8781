//! A vocabulary's regular tokens: the bytes of each id, and the id of given bytes.
//!
//! The bytes lie back to back in one buffer, and tokens of up to 15 bytes are found by
//! `word_key` in a `KeyTable`. Loading a vocabulary of 200,000 tokens makes a few large
//! allocations; a boxed byte string per token, in a map of them, took longer to build
//! (and to free) than most of the encoder's tables.

use crate::bpe::encode::{mid_key, prefix_key, word_key};
use crate::bpe::keytable::{KeyTable, MidKey};
use crate::error::{Error, Result};
use crate::Rank;
use rustc_hash::FxHashMap;
use std::collections::hash_map::Entry;

/// No token, in `prefix_pairs`.
pub(crate) const NO_TOKEN: Rank = Rank::MAX;

#[derive(Default)]
pub struct Tokens {
    bytes: Vec<u8>,
    /// id → its range in `bytes`; an empty one for an id that is no token.
    spans: Vec<(u32, u32)>,
    /// Tokens of up to 15 bytes by `word_key`; the encoder probes this table directly.
    pub(crate) short: KeyTable,
    /// Tokens of 16 to 31 bytes by `mid_key`, also probed directly.
    pub(crate) mid: KeyTable<MidKey>,
    /// Longer tokens (a fraction of a percent) by their bytes.
    long: FxHashMap<Box<[u8]>, Rank>,
    len: usize,
}

/// Why `Tokens::insert` refused a token.
#[derive(Debug, PartialEq)]
pub enum Refused {
    Empty,
    IdTaken,
    /// Another id has the same bytes.
    SameBytes(Rank),
}

impl Tokens {
    /// Room for `n` tokens of `bytes` bytes in all before anything grows.
    pub fn with_capacity(n: usize, bytes: usize) -> Self {
        Tokens {
            bytes: Vec::with_capacity(bytes),
            spans: Vec::with_capacity(n),
            short: KeyTable::with_capacity(n),
            mid: KeyTable::default(),
            long: FxHashMap::default(),
            len: 0,
        }
    }

    /// (bytes, id) pairs in any order. Ids must be dense enough to index a table: a stray
    /// huge id is an error, not a giant allocation.
    pub fn from_pairs(pairs: Vec<(Vec<u8>, Rank)>) -> Result<Self> {
        let max_id = pairs.iter().map(|&(_, id)| id).max().unwrap_or(0);
        if max_id as usize >= 2 * pairs.len() + (1 << 16) {
            return Err(Error::Invalid(format!(
                "token id {max_id} is far beyond the {} tokens given (ids must be dense)",
                pairs.len()
            )));
        }
        let mut tokens = Tokens::with_capacity(pairs.len(), pairs.iter().map(|(b, _)| b.len()).sum());
        for (bytes, id) in pairs {
            tokens.insert(id, &bytes).map_err(|refused| {
                Error::Invalid(match refused {
                    Refused::Empty => format!("token {id} is empty"),
                    Refused::IdTaken => format!("token id {id} appears twice"),
                    Refused::SameBytes(other) => format!("tokens {other} and {id} have the same bytes"),
                })
            })?;
        }
        Ok(tokens)
    }

    /// Adds token `id`. The caller bounds ids: the table of spans grows to the largest.
    pub fn insert(&mut self, id: Rank, bytes: &[u8]) -> std::result::Result<(), Refused> {
        if bytes.is_empty() {
            return Err(Refused::Empty);
        }
        if self.get(id).is_some() {
            return Err(Refused::IdTaken);
        }
        let other = match (word_key(bytes), mid_key(bytes)) {
            (Some(key), _) => self.short.insert_new(key, id as u64).map(|other| other as Rank),
            (_, Some(key)) => self.mid.insert_new(key, id as u64).map(|other| other as Rank),
            _ => match self.long.entry(bytes.into()) {
                Entry::Occupied(other) => Some(*other.get()),
                Entry::Vacant(slot) => {
                    slot.insert(id);
                    None
                }
            },
        };
        if let Some(other) = other {
            return Err(Refused::SameBytes(other));
        }
        if id as usize >= self.spans.len() {
            self.spans.resize(id as usize + 1, (0, 0));
        }
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(bytes);
        self.spans[id as usize] = (start, self.bytes.len() as u32);
        self.len += 1;
        Ok(())
    }

    /// The bytes of token `id`, if it is one.
    #[inline]
    pub fn get(&self, id: Rank) -> Option<&[u8]> {
        let &(start, end) = self.spans.get(id as usize)?;
        (start < end).then(|| &self.bytes[start as usize..end as usize])
    }

    /// The id of the token whose bytes are `bytes`, if there is one.
    #[inline]
    pub fn id(&self, bytes: &[u8]) -> Option<Rank> {
        match word_key(bytes) {
            Some(key) => self.short.get(key).map(|id| id as Rank),
            None => self.long_id(bytes),
        }
    }

    /// `id` of 16 bytes or more, kept out of line so that `id` stays small enough to inline
    /// where a load looks up every token's prefixes (inlined whole, a load took about 3% longer).
    fn long_id(&self, bytes: &[u8]) -> Option<Rank> {
        match mid_key(bytes) {
            Some(key) => self.mid.get(key).map(|id| id as Rank),
            None => self.long.get(bytes).copied(),
        }
    }

    /// Each token that is a proper prefix of `bytes`, longest first, with the token that
    /// is the rest of `bytes` (`NO_TOKEN` if the rest is none), appended to `out`. The
    /// lookups' table slots are all prefetched before any is read, so that their misses
    /// overlap: at load this runs for every token, against tables of many megabytes.
    /// `bytes` has at least 2 bytes.
    pub(crate) fn prefix_pairs(&self, bytes: &[u8], out: &mut Vec<(Rank, Rank)>) {
        let n = bytes.len();
        let mut keys = [(0u128, 0u64); 15];
        let short = (n - 1).min(15);
        let mut word = [0u8; 16];
        word[..n.min(16)].copy_from_slice(&bytes[..n.min(16)]);
        let word = u128::from_le_bytes(word);
        for (k, slot) in keys[..short].iter_mut().enumerate() {
            let len = k + 1;
            let key = prefix_key(word, len);
            let hash = KeyTable::hash(key);
            self.short.prefetch_hashed(hash);
            *slot = (key, hash);
        }
        let start = out.len();
        for len in (16..n).rev() {
            if let Some(a) = self.id(&bytes[..len]) {
                out.push((a, len as Rank));
            }
        }
        for &(key, hash) in keys[..short].iter().rev() {
            if let Some(a) = self.short.get_hashed(key, hash) {
                out.push((a as Rank, (key >> 120) as Rank));
            }
        }
        // The rests: every slot fetched first, then each looked up.
        for &(_, len) in &out[start..] {
            if let Some(key) = word_key(&bytes[len as usize..]) {
                self.short.prefetch(key);
            }
        }
        for pair in &mut out[start..] {
            pair.1 = self.id(&bytes[pair.1 as usize..]).unwrap_or(NO_TOKEN);
        }
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// One past the largest id.
    pub fn id_bound(&self) -> usize {
        self.spans.len()
    }

    /// The tokens with their ids, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Rank)> + '_ {
        (0..self.spans.len() as Rank).filter_map(|id| Some((self.get(id)?, id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_bytes_by_id_and_ids_by_bytes() {
        let long = b"a token longer than fifteen bytes".to_vec();
        let tokens = Tokens::from_pairs(vec![(b"b".to_vec(), 3), (long.clone(), 0), (b"ab".to_vec(), 1)]).unwrap();
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens.id_bound(), 4);
        assert_eq!(tokens.get(2), None);
        assert_eq!(tokens.get(9), None);
        assert_eq!(tokens.get(0), Some(&long[..]));
        assert_eq!(tokens.id(&long), Some(0));
        assert_eq!(tokens.id(b"ab"), Some(1));
        assert_eq!(tokens.id(b"a"), None);
        assert_eq!(tokens.id(&long[1..]), None);
        let all: Vec<_> = tokens.iter().collect();
        assert_eq!(all, vec![(&long[..], 0), (&b"ab"[..], 1), (&b"b"[..], 3)]);
    }

    /// Prefix pairs against every split looked up plainly, over tokens both side of the
    /// 15 bytes that `word_key` packs.
    #[test]
    fn prefix_pairs_are_every_prefix_token_with_its_rest() {
        let mut rng = crate::bpe::TestRng(8);
        let mut pairs: Vec<(Vec<u8>, Rank)> = (0..=255u8).map(|b| (vec![b], b as Rank)).collect();
        while pairs.len() < 3000 {
            let len = 2 + rng.below(30);
            let bytes = rng.bytes(len, b"ab");
            if !pairs.iter().any(|(b, _)| *b == bytes) {
                let id = pairs.len() as Rank;
                pairs.push((bytes, id));
            }
        }
        let tokens = Tokens::from_pairs(pairs.clone()).unwrap();
        for (bytes, _) in &pairs {
            let mut got = Vec::new();
            tokens.prefix_pairs(bytes, &mut got);
            let want: Vec<(Rank, Rank)> = (1..bytes.len())
                .rev()
                .filter_map(|k| Some((tokens.id(&bytes[..k])?, tokens.id(&bytes[k..]).unwrap_or(NO_TOKEN))))
                .collect();
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn refuses_what_would_make_ids_or_bytes_ambiguous() {
        let mut tokens = Tokens::default();
        assert_eq!(tokens.insert(0, b"a"), Ok(()));
        assert_eq!(tokens.insert(1, b""), Err(Refused::Empty));
        assert_eq!(tokens.insert(0, b"b"), Err(Refused::IdTaken));
        assert_eq!(tokens.insert(2, b"a"), Err(Refused::SameBytes(0)));
        assert_eq!(tokens.id(b"a"), Some(0));
        let long = [b'x'; 20];
        assert_eq!(tokens.insert(3, &long), Ok(()));
        assert_eq!(tokens.insert(4, &long), Err(Refused::SameBytes(3)));
        let err = |pairs: Vec<(Vec<u8>, Rank)>| Tokens::from_pairs(pairs).err().unwrap().to_string();
        assert!(err(vec![(b"a".to_vec(), 1 << 20)]).contains("far beyond"));
        assert!(err(vec![(b"a".to_vec(), 0), (b"a".to_vec(), 1)]).contains("tokens 0 and 1 have the same bytes"));
    }
}
