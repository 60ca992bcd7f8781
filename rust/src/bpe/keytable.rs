//! A hash table from `word_key`s (a piece of up to 15 bytes and its length packed in a
//! `u128`) to a `u64`, that reads one cache line per lookup and whose slot for a key can
//! be prefetched: the vocabulary's short tokens and each thread's word cache.
//!
//! Encoding looks up nearly every piece in both. On text the encoder has not seen, or after
//! other work has pushed the tables out of the CPU's caches, each lookup is a miss to main
//! memory, and one piece's misses would wait for the previous piece's. The encoder fetches
//! the slots of a few pieces ahead of the one it encodes, so that their misses overlap;
//! hashbrown's maps do not say where a key lives, and read a control byte before the bucket
//! it points to: two misses, one after the other, where this reads one line.
//!
//! Linear probing in slots of one key and one value, at most half full: a lookup nearly
//! always reads one line. Key 0 marks an empty slot: a `word_key` holds a length of at
//! least 1. Tables from 2 MB up are on huge pages (`ZeroedSlice`).

use crate::memory::{Zeroable, ZeroedSlice};

/// 32 bytes, in a cache-aligned table: two slots to a line, none across two.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    key: u128,
    value: u64,
}

// SAFETY: a zero key and value is an empty slot.
unsafe impl Zeroable for Slot {}

pub(crate) struct KeyTable {
    /// On huge pages from 2 MB up (the vocabulary's table, a full word cache).
    slots: ZeroedSlice<Slot>,
    /// `64 - log2(slots.len())`: a key's home slot is the top bits of its hash.
    shift: u32,
    len: usize,
}

impl Default for KeyTable {
    fn default() -> Self {
        KeyTable::with_capacity(0)
    }
}

const MIN_SLOTS: usize = 64;

impl KeyTable {
    /// A table that holds `n` keys before it grows.
    pub(crate) fn with_capacity(n: usize) -> Self {
        let slots = (2 * n).next_power_of_two().max(MIN_SLOTS);
        KeyTable {
            slots: ZeroedSlice::new(slots),
            shift: 64 - slots.trailing_zeros(),
            len: 0,
        }
    }

    #[inline]
    fn home(&self, key: u128) -> usize {
        let folded = (key as u64) ^ ((key >> 64) as u64).rotate_left(23);
        (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn get(&self, key: u128) -> Option<u64> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let slot = &self.slots[i];
            // Empty first: key 0 (the empty piece's `word_key`) is in no table.
            if slot.key == 0 {
                return None;
            }
            if slot.key == key {
                return Some(slot.value);
            }
            i = (i + 1) & mask;
        }
    }

    /// Asks the CPU to bring `key`'s home slot into its caches; no effect on the table.
    #[inline]
    pub(crate) fn prefetch(&self, key: u128) {
        crate::memory::prefetch(self.slots.as_ptr().wrapping_add(self.home(key)));
    }

    /// Sets `key`'s value; key 0 (which marks empty slots) is refused.
    pub(crate) fn insert(&mut self, key: u128, value: u64) {
        assert!(key != 0, "key 0 marks an empty slot");
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let slot = &mut self.slots[i];
            if slot.key == key {
                slot.value = value;
                return;
            }
            if slot.key == 0 {
                *slot = Slot { key, value };
                self.len += 1;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let old = std::mem::replace(self, KeyTable::with_capacity(self.slots.len()));
        for slot in old.slots.iter().filter(|s| s.key != 0) {
            self.insert(slot.key, slot.value);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u128, u64)> + '_ {
        self.slots.iter().filter(|s| s.key != 0).map(|s| (s.key, s.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpe::TestRng;

    #[test]
    fn agrees_with_a_hash_map() {
        let mut rng = TestRng(7);
        let mut table = KeyTable::default();
        let mut reference = std::collections::HashMap::new();
        for _ in 0..20_000 {
            // Few distinct keys, so that many inserts overwrite.
            let key = (rng.below(5_000) as u128 + 1) << (8 * rng.below(12));
            let value = rng.below(1 << 30) as u64;
            table.insert(key, value);
            reference.insert(key, value);
            let probe = (rng.below(6_000) as u128 + 1) << (8 * rng.below(12));
            assert_eq!(table.get(probe), reference.get(&probe).copied());
        }
        assert_eq!(table.len(), reference.len());
        assert_eq!(table.get(0), None, "key 0 marks empty slots");
        assert!(2 * table.len() <= table.slots.len());
        let mut all: Vec<_> = table.iter().collect();
        all.sort();
        let mut want: Vec<_> = reference.into_iter().collect();
        want.sort();
        assert_eq!(all, want);
    }
}
