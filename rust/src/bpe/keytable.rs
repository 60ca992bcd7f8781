//! A hash table from an integer key to a `u64` that reads one cache line per lookup and
//! whose slot for a key can be prefetched: the vocabulary's short tokens and each thread's
//! word cache (keyed by `word_key`, a piece of up to 15 bytes and its length packed in a
//! `u128`), and the merges (keyed by a pair of ids packed in a `u64`).
//!
//! Encoding looks up nearly every piece, and every pair a new word's merges make. On text
//! the encoder has not seen, or after other work has pushed the tables out of the CPU's
//! caches, each lookup is a miss to main memory, and one lookup's miss would wait for the
//! previous one's. The encoder fetches the slots of a few pieces (or pairs) ahead of the
//! ones it looks up, so that their misses overlap; hashbrown's maps do not say where a key
//! lives, and read a control byte before the bucket it points to: two misses, one after
//! the other, where this reads one line.
//!
//! Linear probing in slots of one key and one value, at most half full: a lookup nearly
//! always reads one line. Key 0 marks an empty slot (keys are made never to be 0). Tables
//! from 2 MB up are on huge pages (`ZeroedSlice`).

use crate::memory::{Zeroable, ZeroedSlice};

/// A key: an integer that is never 0, and how its bits are spread into a hash.
pub(crate) trait Key: Copy + Eq + Default + std::fmt::Debug {
    fn fold(self) -> u64;
}

impl Key for u128 {
    #[inline]
    fn fold(self) -> u64 {
        (self as u64) ^ ((self >> 64) as u64).rotate_left(23)
    }
}

impl Key for u64 {
    #[inline]
    fn fold(self) -> u64 {
        self ^ (self >> 29)
    }
}

/// A piece of 16 to 31 bytes and its length (`encode::mid_key`): two `u128`s, aligned so
/// that its slot fills one cache line.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug, Hash, PartialOrd, Ord)]
#[repr(C, align(32))]
pub(crate) struct MidKey(pub(crate) u128, pub(crate) u128);

impl Key for MidKey {
    #[inline]
    fn fold(self) -> u64 {
        self.0.fold() ^ self.1.fold().rotate_left(31)
    }
}

/// 64 bytes for a `MidKey`, 32 for a `u128` key, 16 for a `u64`, in a cache-aligned table
/// (`ZeroedSlice`): none across two lines.
#[derive(Clone, Copy)]
#[repr(C)]
struct Slot<K> {
    key: K,
    value: u64,
}

// SAFETY: a zero key and value is an empty slot.
unsafe impl<K: Key> Zeroable for Slot<K> {}

pub(crate) struct KeyTable<K: Key = u128> {
    /// On huge pages from 2 MB up (the vocabulary's table, a full word cache).
    slots: ZeroedSlice<Slot<K>>,
    /// `64 - log2(slots.len())`: a key's home slot is the top bits of its hash.
    shift: u32,
    len: usize,
}

impl<K: Key> Default for KeyTable<K> {
    fn default() -> Self {
        KeyTable::with_capacity(0)
    }
}

const MIN_SLOTS: usize = 64;

impl<K: Key> KeyTable<K> {
    /// A table that holds `n` keys before it grows.
    pub(crate) fn with_capacity(n: usize) -> Self {
        let slots = (2 * n).next_power_of_two().max(MIN_SLOTS);
        KeyTable {
            slots: ZeroedSlice::new(slots),
            shift: 64 - slots.trailing_zeros(),
            len: 0,
        }
    }

    /// `key`'s hash, the same in every table: a caller that looks a key up in two tables,
    /// or prefetches before it looks, computes it once (`get_hashed`, `prefetch_hashed`).
    #[inline]
    pub(crate) fn hash(key: K) -> u64 {
        key.fold().wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    #[inline]
    fn home(&self, key: K) -> usize {
        (Self::hash(key) >> self.shift) as usize
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Empties the table, keeping its size and memory.
    pub(crate) fn clear(&mut self) {
        // SAFETY: a zeroed slot is an empty one (`Zeroable`).
        unsafe { std::ptr::write_bytes(self.slots.as_mut_ptr(), 0, self.slots.len()) };
        self.len = 0;
    }

    #[inline]
    pub(crate) fn get(&self, key: K) -> Option<u64> {
        self.get_hashed(key, Self::hash(key))
    }

    /// `get` of a key whose `hash` is known.
    #[inline]
    pub(crate) fn get_hashed(&self, key: K, hash: u64) -> Option<u64> {
        let mask = self.slots.len() - 1;
        let mut i = (hash >> self.shift) as usize;
        loop {
            let slot = &self.slots[i];
            // Empty first: key 0 (the empty piece's `word_key`) is in no table.
            if slot.key == K::default() {
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
    pub(crate) fn prefetch(&self, key: K) {
        self.prefetch_hashed(Self::hash(key));
    }

    /// `prefetch` of a key by its `hash`.
    #[inline]
    pub(crate) fn prefetch_hashed(&self, hash: u64) {
        crate::memory::prefetch(self.slots.as_ptr().wrapping_add((hash >> self.shift) as usize));
    }

    /// Sets `key`'s value; key 0 (which marks empty slots) is refused.
    pub(crate) fn insert(&mut self, key: K, value: u64) {
        self.put(key, value, true);
    }

    /// Sets `key`'s value unless it has one, which is returned (and kept).
    pub(crate) fn insert_new(&mut self, key: K, value: u64) -> Option<u64> {
        self.put(key, value, false)
    }

    fn put(&mut self, key: K, value: u64, replace: bool) -> Option<u64> {
        assert!(key != K::default(), "key 0 marks an empty slot");
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let slot = &mut self.slots[i];
            if slot.key == key {
                let old = slot.value;
                if replace {
                    slot.value = value;
                }
                return Some(old);
            }
            if slot.key == K::default() {
                *slot = Slot { key, value };
                self.len += 1;
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let old = std::mem::replace(self, KeyTable::with_capacity(self.slots.len()));
        for slot in old.slots.iter().filter(|s| s.key != K::default()) {
            self.insert(slot.key, slot.value);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (K, u64)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.key != K::default())
            .map(|s| (s.key, s.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpe::TestRng;

    /// `table` against a `HashMap` under random inserts (many overwriting) and lookups of
    /// keys made by `key` from small numbers.
    fn check<K: Key + std::hash::Hash + Ord>(mut table: KeyTable<K>, key: impl Fn(&mut TestRng) -> K) {
        let mut rng = TestRng(7);
        let mut reference = std::collections::HashMap::new();
        for _ in 0..20_000 {
            let k = key(&mut rng);
            let value = rng.below(1 << 30) as u64;
            if rng.below(2) == 0 {
                table.insert(k, value);
                reference.insert(k, value);
            } else {
                assert_eq!(table.insert_new(k, value), reference.get(&k).copied());
                reference.entry(k).or_insert(value);
            }
            let probe = key(&mut rng);
            assert_eq!(table.get(probe), reference.get(&probe).copied());
        }
        assert_eq!(table.len(), reference.len());
        assert_eq!(table.get(K::default()), None, "key 0 marks empty slots");
        assert!(2 * table.len() <= table.slots.len());
        let mut all: Vec<_> = table.iter().collect();
        all.sort();
        let mut want: Vec<_> = reference.into_iter().collect();
        want.sort();
        assert_eq!(all, want);
    }

    #[test]
    fn agrees_with_a_hash_map() {
        // Few distinct keys, so that many inserts overwrite; never key 0.
        check(KeyTable::<u128>::default(), |rng| {
            (rng.below(5_000) as u128 + 1) << (8 * rng.below(12))
        });
        check(KeyTable::<u64>::default(), |rng| {
            (rng.below(5_000) as u64 + 1) << (4 * rng.below(12))
        });
        check(KeyTable::<MidKey>::default(), |rng| {
            MidKey(
                rng.below(50) as u128,
                (rng.below(5_000) as u128 + 1) << (8 * rng.below(12)),
            )
        });
    }
}
