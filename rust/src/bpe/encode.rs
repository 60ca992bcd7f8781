//! Ranked-merge byte-level BPE: encoding, decoding and special tokens.
//!
//! A piece (one pre-token) is first looked up whole in the vocabulary; most pieces of real
//! text are one token. Otherwise its bytes are merged pair by pair, always the adjacent
//! pair of lowest priority, leftmost first on ties, starting from whole characters where
//! that is exact (`atoms.rs`). Priorities live in a map keyed by the pair of token ids, so
//! one lookup prices a pair. Pieces of up to 64 symbols use a plain scan. Longer ones
//! (a megabyte of one letter is a single piece) take the linear-time walk of `backtrack.rs`
//! in tiktoken's model, and a heap with lazy deletion, O(n log n), in Hugging Face's.

use crate::bpe::atoms::Atoms;
use crate::bpe::backtrack::LongPieces;
use crate::bpe::cuts::Cuts;
use crate::bpe::keytable::{KeyTable, MidKey};
use crate::bpe::splits::own_splits;
use crate::bpe::tokens::Tokens;
use crate::error::{Error, Result};
use crate::split::Splitter;
use crate::Rank;
use regex_automata::meta::Regex;
use rustc_hash::{FxHashMap, FxHashSet};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Pieces up to this many bytes are merged by scanning; longer ones through a heap.
const SCAN_LIMIT: usize = 64;
/// Bytes in each part that `merge_in_parts` cuts a long piece into, and parts merged at once.
const PART: usize = 32;
const PARTS_AT_ONCE: usize = 32;
/// Bytes per token above which `merge_in_parts` leaves the rest of a piece to backtracking.
const LONG_TOKEN: usize = 3;
/// Pieces the splitter gathers before they are looked up together (`encode_group`).
const GROUP: usize = 64;
const NONE: u32 = u32::MAX;
/// Ids below this have their pairwise merges in `Encoder::low`.
const LOW: u32 = 256;
const NO_MERGE: Merge = Merge {
    priority: NONE,
    id: NONE,
};

#[derive(Clone, Copy)]
struct Merge {
    priority: u32,
    id: Rank,
}

/// Two ids in one key, never 0 (which marks `KeyTable`'s empty slots): ids are below 2^31.
#[inline]
pub(crate) fn pair_key(a: Rank, b: Rank) -> u64 {
    !(((a as u64) << 32) | b as u64)
}

#[inline]
fn unpair(key: u64) -> (Rank, Rank) {
    ((!key >> 32) as Rank, !key as Rank)
}

/// A bit per hash of the keys of a table: a key whose bit is clear is not in it. Small
/// enough to stay in the CPU's caches where the table does not.
/// - The pairs that merge, at 8 bits per pair (128 KB for cl100k): most pairs a long
///   piece's merges look up do not merge, and about one in ten of those finds its bit set
///   and is looked up in the table.
/// - The short tokens (by `word_key`'s hash), at 16 bits per token (256 KB for cl100k,
///   512 KB for o200k): where most pieces are no tokens (random letters, new words), the
///   encoder asks it first, and skips the lookup in the vocabulary's table of megabytes,
///   which even fetched ahead waited on main memory (o200k's random letters 15-20% faster).
struct KeyFilter {
    bits: Box<[u64]>,
    shift: u32,
}

impl KeyFilter {
    /// The filter of `len` keys, `bits_per_key` bits each (rounded up to a power of two).
    fn new(keys: impl Iterator<Item = u64>, len: usize, bits_per_key: usize) -> Self {
        let n = (bits_per_key * len).next_power_of_two().max(1 << 12);
        let mut filter = KeyFilter {
            bits: vec![0; n / 64].into_boxed_slice(),
            shift: 64 - n.trailing_zeros(),
        };
        for key in keys {
            let bit = filter.bit(key);
            filter.bits[bit / 64] |= 1 << (bit % 64);
        }
        filter
    }

    #[inline]
    fn bit(&self, key: u64) -> usize {
        (key.wrapping_mul(0xFF51_AFD7_ED55_8CCD) >> self.shift) as usize
    }

    #[inline]
    fn prefetch(&self, key: u64) {
        crate::memory::prefetch(self.bits.as_ptr().wrapping_add(self.bit(key) / 64));
    }

    #[inline]
    fn may_hold(&self, key: u64) -> bool {
        let bit = self.bit(key);
        self.bits[bit / 64] >> (bit % 64) & 1 == 1
    }
}

impl Merge {
    #[inline]
    fn packed(self) -> u64 {
        pack((self.priority, self.id))
    }

    #[inline]
    fn unpacked(v: u64) -> Self {
        let (priority, id) = unpack(v);
        Merge { priority, id }
    }
}

/// Which special tokens `encode` may emit; text matching any other one is encoded as text.
pub enum Allowed<'a> {
    None,
    All,
    Some(&'a FxHashSet<String>),
}

/// What one call (or one run of a batch) holds: this thread's word cache for the encoder,
/// taken out of its thread-local slot for the call, so a nested call simply starts empty;
/// and in a batch, what the batch's workers share.
struct MergeCache<'b> {
    words: Box<WordCache>,
    batch: Option<&'b BatchCache>,
    pending: Pending,
    /// Whether most of the last group's pieces of 3 to 15 bytes were no tokens (random
    /// letters, new words), so that this group asks `short_filter` before the vocabulary's
    /// table. Asking it always cost 2-3% on code and docs, where most pieces are tokens.
    few_tokens: bool,
    /// This group's pieces of 3 to 15 bytes, and those that are no token.
    token_lookups: u32,
    token_misses: u32,
}

/// Words of up to 15 bytes met for the first time, whose merges wait to be done together
/// (`Encoder::merge_pending`), and where their ids go in the output.
///
/// One word's merges are a chain of lookups in tables of megabytes, each waiting for the
/// one before: on text not seen before, with the tables out of the CPU's caches, about a
/// microsecond a word, half the time of encoding English prose. Merged in lockstep, the
/// lookups of all the words waiting are fetched at once, so their misses overlap.
#[derive(Default)]
struct Pending {
    words: Waiting<u128, 16>,
    /// Words of 16 to `SCAN_LIMIT` bytes (in scripts of two or more bytes a character,
    /// many words are): each makes more merges, so overlapping them pays more.
    long_words: Waiting<LongKey, SCAN_LIMIT>,
    /// (position in the output, index in `words`, or in `long_words` with `LONG_HOLE`
    /// set), in output order: a word seen twice before the merges are done is merged once.
    holes: Vec<(usize, u32)>,
}

const LONG_HOLE: u32 = 1 << 31;

/// Words waiting for their merges, in slots reused from one round to the next: a word is
/// set up in place, only as far as its length, not built whole and copied in.
struct Waiting<K, const N: usize> {
    slots: Vec<NewWord<K, N>>,
    len: usize,
    /// A bit per `WaitingKey::tag` of the words waiting (its top 8 bits): a word whose bit is
    /// clear, most new words, is surely not among them, and is added without comparing its
    /// key with theirs (that search was 3% of the instructions of multilingual text).
    tags: [u64; 4],
}

impl<K, const N: usize> Default for Waiting<K, N> {
    fn default() -> Self {
        Waiting {
            slots: Vec::new(),
            len: 0,
            tags: [0; 4],
        }
    }
}

/// A waiting word's key, a hash of it, and whether the word is all ASCII.
trait WaitingKey: PartialEq + Copy {
    fn tag(&self) -> u64;
    fn is_ascii(&self) -> bool;
}

impl WaitingKey for u128 {
    #[inline(always)]
    fn tag(&self) -> u64 {
        KeyTable::hash(*self)
    }

    #[inline(always)]
    fn is_ascii(&self) -> bool {
        key_is_ascii(*self)
    }
}

impl WaitingKey for LongKey {
    /// From the length and the first 16 bytes (a long word has at least 16).
    #[inline(always)]
    fn tag(&self) -> u64 {
        let head = u128::from_le_bytes(self.bytes[..16].try_into().unwrap());
        KeyTable::hash(head ^ self.len as u128)
    }

    fn is_ascii(&self) -> bool {
        self.bytes().is_ascii()
    }
}

impl<K: WaitingKey, const N: usize> Waiting<K, N> {
    fn clear(&mut self) {
        self.len = 0;
        self.tags = [0; 4];
    }

    fn words(&mut self) -> &mut [NewWord<K, N>] {
        &mut self.slots[..self.len]
    }

    fn ids(&self, i: usize) -> &[Rank] {
        self.slots[..self.len][i].ids()
    }

    /// The index of the word `key` of `bytes`, added unless it is there.
    #[inline(always)]
    fn find_or_add(&mut self, encoder: &Encoder, key: K, bytes: &[u8]) -> u32 {
        let tag = key.tag();
        let (word, bit) = ((tag >> 62) as usize, 1u64 << (tag >> 56 & 63));
        if self.tags[word] & bit != 0 {
            if let Some(i) = self.slots[..self.len].iter().position(|w| w.key == key) {
                return i as u32;
            }
        }
        self.tags[word] |= bit;
        let atoms = encoder.atoms.as_ref().filter(|_| !key.is_ascii());
        if self.len == self.slots.len() {
            self.slots.push(NewWord {
                key,
                scan: Scan::new(encoder, bytes, atoms),
                at: 0,
            });
        } else {
            let word = &mut self.slots[self.len];
            word.key = key;
            word.scan.reset(encoder, bytes, atoms);
        }
        self.len += 1;
        self.len as u32 - 1
    }
}

/// Words merged together at most (64 at most: `merge_words` keeps a bit per word); then
/// their ids are put in place. 48 measured 1-2% faster than 16 on first sight of prose and
/// o200k's multilingual text (more lookups in flight at once); 64 no faster than 48.
const PENDING_WORDS: usize = 48;
const _: () = assert!(PENDING_WORDS <= 64);

/// A new word's BPE in progress; `key` names it in the word cache.
#[derive(Clone, Copy)]
struct NewWord<K, const N: usize> {
    key: K,
    scan: Scan<N>,
    /// Where its last merge was made: the pairs on each side of it are new.
    at: usize,
}

impl<K, const N: usize> NewWord<K, N> {
    fn ids(&self) -> &[Rank] {
        &self.scan.ids[..self.scan.n]
    }
}

/// The bytes of a word of 16 to `SCAN_LIMIT` bytes, its key in the word cache's long map.
#[derive(Clone, Copy)]
struct LongKey {
    len: usize,
    bytes: [u8; SCAN_LIMIT],
}

impl LongKey {
    fn new(piece: &[u8]) -> Self {
        let mut bytes = [0; SCAN_LIMIT];
        bytes[..piece.len()].copy_from_slice(piece);
        LongKey {
            len: piece.len(),
            bytes,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl PartialEq for LongKey {
    /// The lengths first (most waiting words differ there), then the bytes, zero past the
    /// length, compared in place rather than by a call to `memcmp`.
    #[inline(always)]
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self
                .bytes
                .chunks_exact(16)
                .zip(other.bytes.chunks_exact(16))
                .fold(0, |diff, (a, b)| {
                    diff | (u128::from_le_bytes(a.try_into().unwrap()) ^ u128::from_le_bytes(b.try_into().unwrap()))
                })
                == 0
    }
}

/// BPE on up to `N` ids (`N` a multiple of 8, at most 64) by scanning: the best merge is
/// the leftmost of lowest priority. The symbols are a linked list over the positions they
/// started at (a byte each, or a whole character, `Atoms`), so a merge moves nothing; each
/// live symbol with a right neighbour has a key, its pair's priority above its position,
/// so the lowest key is the best merge, leftmost on ties, and is found by a branch-free
/// minimum in strides of 8.
#[derive(Clone, Copy)]
struct Scan<const N: usize> {
    /// The id of the symbol at each live position; once merging is done, the ids in order
    /// in `ids[..n]` (`compact`).
    ids: [Rank; N],
    /// Per live position: `priority << POSITION_BITS | position` of the merge with the
    /// next symbol, `NO_KEY` for none.
    keys: [u32; N],
    /// Per live position: the id that merge makes.
    made: [Rank; N],
    next: [u8; N],
    /// `prev[0]` is 255: past any position.
    prev: [u8; N],
    /// Positions (the symbols it started with: bytes, or whole characters) in all; after
    /// `compact`, ids.
    n: usize,
    live: usize,
}

/// Where the part of a long piece that starts at `from` ends (`merge_in_parts`): `PART`
/// bytes on, or a few bytes sooner, before a capital after a small letter, an edge that
/// few tokens cross (cl100k's random letters: 1 cut in 55 merged again, where 1 in 3 were;
/// 5% fewer instructions).
fn part_end(piece: &[u8], from: usize) -> usize {
    let end = from + PART;
    if end >= piece.len() {
        return piece.len();
    }
    (end - PART / 4..=end)
        .rev()
        .find(|&k| piece[k - 1].is_ascii_lowercase() && piece[k].is_ascii_uppercase())
        .unwrap_or(end)
}

/// `[offset, 1 + offset, 2 + offset, ...]`, wrapping: `Scan`'s links before any merge.
const fn links<const N: usize>(offset: u8) -> [u8; N] {
    let mut links = [0; N];
    let mut i = 0;
    while i < N {
        links[i] = (i as u8).wrapping_add(offset);
        i += 1;
    }
    links
}

const POSITION_BITS: u32 = 6;
/// Bits per id (plus one, so that 0 is none) in `Encoder::char_ids`: three in a `u64`.
const CHAR_ID_BITS: u32 = 21;
const NO_KEY: u32 = u32::MAX;
/// Merge priorities (and so tiktoken's ids) stay below this, leaving room for a position in
/// a key (and a key below `NO_KEY`): 67 million, far more than any vocabulary's.
const MAX_PRIORITY: u32 = (1 << (32 - POSITION_BITS)) - 1;

impl<const N: usize> Scan<N> {
    /// The bytes of `piece` (at most `N`) as ids, its characters whole where `atoms`
    /// allow, no pair priced yet.
    #[inline(always)]
    fn new(encoder: &Encoder, piece: &[u8], atoms: Option<&Atoms>) -> Self {
        let mut scan = Self::blank();
        scan.reset(encoder, piece, atoms);
        scan
    }

    #[inline(always)]
    fn blank() -> Self {
        const { assert!(N.is_multiple_of(8) && N <= 1 << POSITION_BITS) };
        Scan {
            ids: [0; N],
            keys: [NO_KEY; N],
            made: [0; N],
            next: [0; N],
            prev: [0; N],
            n: 0,
            live: 0,
        }
    }

    /// `new`, in place: only what a piece of this length reads is set. False (and the
    /// scan unusable) where `piece` has more than `N` symbols, which only atoms allow.
    /// Callers pass no `atoms` for a piece of ASCII, whose symbols are its bytes: they know
    /// that from its key for less than a scan of its bytes here (1% of the instructions of
    /// o200k's random letters).
    #[inline(always)]
    fn reset(&mut self, encoder: &Encoder, piece: &[u8], atoms: Option<&Atoms>) -> bool {
        let mut n = 0;
        match atoms {
            // Positions count symbols, not bytes: fewer keys to scan.
            Some(atoms) => {
                let mut i = 0;
                while i < piece.len() {
                    if n == N {
                        return false;
                    }
                    let b = piece[i];
                    let (id, len) = match b {
                        0x80.. => atoms.at(piece, i).unwrap_or((encoder.byte_ids[b as usize], 1)),
                        _ => (encoder.byte_ids[b as usize], 1),
                    };
                    self.ids[n] = id;
                    n += 1;
                    i += len;
                }
            }
            _ => {
                for &b in piece {
                    self.ids[n] = encoder.byte_ids[b as usize];
                    n += 1;
                }
            }
        }
        // Each position linked to the next and the one before, copied whole (N bytes each).
        self.next = const { links::<N>(1) };
        self.prev = const { links::<N>(u8::MAX) };
        (self.n, self.live) = (n, n);
        // Every key that `step` reads: those of the pairs, and the rest of their strides.
        self.keys[..n.saturating_sub(1).next_multiple_of(8)].fill(NO_KEY);
        true
    }

    /// Prices the pair starting at the live position `j` (merges of priority `limit` and
    /// above do not count).
    #[inline(always)]
    fn price(&mut self, encoder: &Encoder, j: usize, limit: u32) {
        let m = encoder.pair(self.ids[j], self.ids[self.next[j] as usize]);
        (self.keys[j], self.made[j]) = if m.priority < limit {
            (m.priority << POSITION_BITS | j as u32, m.id)
        } else {
            (NO_KEY, NONE)
        };
    }

    #[inline(always)]
    fn price_all(&mut self, encoder: &Encoder, limit: u32) {
        for j in 0..self.n.saturating_sub(1) {
            self.price(encoder, j, limit);
        }
    }

    /// The live positions before and after the live position `i`, if any.
    #[inline(always)]
    fn neighbours(&self, i: usize) -> (Option<usize>, Option<usize>) {
        let (left, right) = (self.prev[i] as usize, self.next[i] as usize);
        ((left < self.n).then_some(left), (right < self.n).then_some(right))
    }

    /// Makes the best merge and returns where, or `None` if no pair merges. The pairs on
    /// each side of it are left to price (`price_around`).
    #[inline(always)]
    fn step(&mut self) -> Option<usize> {
        let mut lowest = [NO_KEY; 8];
        for keys in self.keys[..self.n.saturating_sub(1).next_multiple_of(8)].chunks_exact(8) {
            for (low, &key) in lowest.iter_mut().zip(keys) {
                *low = (*low).min(key);
            }
        }
        let best = lowest.iter().fold(NO_KEY, |a, &b| a.min(b));
        if best == NO_KEY {
            return None;
        }
        let at = (best & ((1 << POSITION_BITS) - 1)) as usize;
        let gone = self.next[at] as usize;
        let right = self.next[gone];
        self.ids[at] = self.made[at];
        self.next[at] = right;
        if (right as usize) < self.n {
            self.prev[right as usize] = at as u8;
        }
        self.keys[gone] = NO_KEY;
        self.keys[at] = NO_KEY;
        self.live -= 1;
        Some(at)
    }

    /// Prices the pairs that the merge at `at` made.
    #[inline(always)]
    fn price_around(&mut self, encoder: &Encoder, at: usize, limit: u32) {
        let (left, right) = self.neighbours(at);
        if let Some(left) = left {
            self.price(encoder, left, limit);
        }
        if right.is_some() {
            self.price(encoder, at, limit);
        }
    }

    /// Puts the live ids in order at the front: `ids[..n]`.
    #[inline(always)]
    fn compact(&mut self) {
        let (mut at, mut k) = (0, 0);
        while at < self.n {
            self.ids[k] = self.ids[at];
            k += 1;
            at = self.next[at] as usize;
        }
        self.n = k;
    }

    #[inline(always)]
    fn run(mut self, encoder: &Encoder, limit: u32, out: &mut Vec<Rank>) {
        self.price_all(encoder, limit);
        while let Some(at) = self.step() {
            self.price_around(encoder, at, limit);
        }
        self.compact();
        out.extend_from_slice(&self.ids[..self.n]);
    }
}

impl<'b> MergeCache<'b> {
    fn open(encoder: u64, batch: Option<&'b BatchCache>) -> Self {
        MergeCache {
            words: match batch {
                None => WordCache::take(encoder, WORD_CACHE_PIECES),
                Some(_) => WordCache::take(encoder, BATCH_RUN_CACHE_START),
            },
            batch,
            pending: PENDING.try_with(std::cell::Cell::take).unwrap_or_default(),
            few_tokens: false,
            token_lookups: 0,
            token_misses: 0,
        }
    }

    fn close(self, encoder: u64) {
        self.words.put_back(encoder);
        let _ = PENDING.try_with(|spare| spare.set(self.pending));
    }

    /// The word cache of the batch's caller, if this is a batch run and it has one. Its
    /// hits are not copied into this run's cache: the caller's stays as close.
    #[inline]
    fn seed(&self) -> Option<&WordCache> {
        self.batch.and_then(|batch| batch.seed.as_deref())
    }

    /// Appends the ids of a piece of up to 15 bytes (`key` its `word_key`) from the
    /// caller's word cache, if it has the piece.
    #[inline]
    fn seed_get(&self, key: u128, out: &mut Vec<Rank>) -> bool {
        self.seed().is_some_and(|seed| seed.get(key, out))
    }

    /// `seed_get` for a piece of 16 to `SCAN_LIMIT` bytes.
    #[inline]
    fn seed_get_long(&self, piece: &[u8], out: &mut Vec<Rank>) -> bool {
        self.seed().is_some_and(|seed| seed.get_long(piece, out))
    }
}

/// What the workers of one batch share: the calling thread's word cache, read only, so
/// that each worker starts as warm as the caller, without a copy. Words that no worker has
/// met are merged by each worker that meets them: sharing those too (in shards behind
/// locks, two lock round trips per new word) measured 5-10% slower on 2 threads, on prose,
/// code and multilingual text alike, than merging a word again.
struct BatchCache {
    seed: Option<Box<WordCache>>,
}

impl BatchCache {
    fn new(encoder: u64) -> Self {
        BatchCache {
            seed: WordCache::try_take(encoder),
        }
    }

    /// Gives the caller's word cache back to its thread, with the pieces the caller's own
    /// runs added (the caller takes part in its batches), so that it learns from them.
    fn close(self, encoder: u64) {
        if let Some(mut seed) = self.seed {
            if let Some(learned) = WordCache::try_take(encoder) {
                seed.absorb(&learned);
            }
            seed.put_back(encoder);
        }
    }
}

/// Pieces and their ids, kept across calls by each thread for each of the last few encoders
/// it used: the pieces up to `SCAN_LIMIT` bytes that are not found whole in the vocabulary
/// (all of them when merges decide even a whole token's ids, as in Hugging Face's model
/// without `ignore_merges`). Bounded: at most `WORD_CACHE_PIECES` pieces (of them
/// `WORD_CACHE_MID` of 16 to 31 bytes), `WORD_CACHE_IDS` ids of pieces that are several
/// tokens, and `WORD_CACHE_BYTES` bytes of pieces over 15 bytes (about 7 MB in all); once
/// full it starts over (`value`). Per thread, so callers
/// on many threads (free-threaded Python) never lock one; a batch's workers share only
/// what `BatchCache` holds.
#[derive(Default)]
struct WordCache {
    /// Piece (bytes and length packed by `word_key`) → the range of its ids in `ids`
    /// (`pack`ed).
    map: KeyTable,
    /// Pieces of 16 to 31 bytes (by `mid_key`) → the range of their ids in `ids`
    /// (`pack`ed): most words of Cyrillic or Greek, which a map of boxed bytes slowed with
    /// a hash over the bytes, a comparison and an allocation per new word.
    mid: KeyTable<MidKey>,
    /// Longer pieces → the range of their ids in `ids`.
    long: FxHashMap<Box<[u8]>, (u32, u32)>,
    long_bytes: usize,
    ids: Vec<Rank>,
    /// How well `Encoder::encode_cut` has been doing on this thread's recent new words,
    /// per block of code points (`CUT_BLOCKS`, made at its first use), and the words it
    /// skipped while doing badly.
    cut_score: Box<[i8]>,
    cut_skips: u32,
}

/// The most pieces and ids one thread's word cache holds for one encoder.
pub const WORD_CACHE_PIECES: usize = 1 << 16;
pub const WORD_CACHE_IDS: usize = 1 << 17;
pub const WORD_CACHE_BYTES: usize = 1 << 19;
/// Under 2 MB of 64-byte slots, the table staying at most half full.
pub const WORD_CACHE_MID: usize = 1 << 14;
/// The pieces a batch run's new word cache holds before its table first grows (64 KB of
/// zeroed pages, touched as it fills; starting at 4,096 pieces, 256 KB, made 2-thread
/// batches of fresh 4 KB documents 4% slower in Rust, 16,384 16%; 256 and 512 measured as
/// 1,024). A thread's own word cache is made at its full size
/// (`WORD_CACHE_PIECES`, 4 MB on huge pages, faulted in on the first call): growing by
/// doubling moved every piece again and faulted in each new table's pages, which cost
/// first sight 3-5% on prose and code, 8% on multilingual text and 20% on o200k's random
/// letters. A batch's runs start small instead, as a batch of a few milliseconds would
/// spend a good part of them faulting in 4 MB per worker.
const BATCH_RUN_CACHE_START: usize = 1 << 10;
/// The pieces of 16 to 31 bytes a word cache holds before that table first grows, as a
/// share of its pieces (2,048 for a thread's own cache, in 256 KB): made at its full size,
/// it was faulted in afresh by each new tokenizer, which cost more than the growing.
const MID_SHARE: usize = 32;
/// Word caches a thread keeps, for its most recently used encoders.
const WORD_CACHES_PER_THREAD: usize = 4;

thread_local! {
    /// The buffers of a call's waiting words, kept for the thread's next call: a call
    /// that grew them afresh spent more on that than a small document's merges (a nested
    /// call starts empty).
    static PENDING: std::cell::Cell<Pending> = std::cell::Cell::new(Pending::default());
    /// Boxed, so that a call takes its cache out and puts it back as a pointer: moving the
    /// 152 bytes in and out (and along the list) was 5% of a chat-sized call.
    static WORD_CACHES: std::cell::RefCell<Vec<(u64, Box<WordCache>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Distinct ids for encoders (never reused, unlike addresses), naming their word caches.
static NEXT_ENCODER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// `Encoder::encode_cut`'s record per block of 128 code points (those above 0xFF80 share
/// the last): a word cut counts `CUT_HIT`, one not cut -1, within ±`CUT_SCORE_LIMIT`;
/// below 0, one new word in `CUT_PROBE` is tried.
const CUT_BLOCKS: usize = 512;
const CUT_HIT: i32 = 4;
const CUT_SCORE_LIMIT: i32 = 64;
const CUT_PROBE: u32 = 32;

/// Where the runs of a batch of `n` texts on `threads` threads start, and `n` last. Runs
/// shrink toward the end (each a quarter of what is left per thread), so that the thread
/// that finishes first waits for a run of a text or two: with runs of equal size it waited
/// for a sixteenth of the batch, 4-7% of a 2-thread batch of 4 KB documents.
fn run_starts(n: usize, threads: usize) -> Vec<usize> {
    let mut starts = vec![0];
    while let Some(&start) = starts.last().filter(|&&start| start < n) {
        starts.push(start + (n - start).div_ceil(4 * threads));
    }
    starts
}

/// The code point of the character at `bytes[i..]` (valid UTF-8) and where the next starts.
#[inline(always)]
fn next_char(bytes: &[u8], i: usize) -> (u32, usize) {
    let b = bytes[i] as u32;
    let cont = |k: usize| bytes[i + k] as u32 & 0x3F;
    match b {
        0..0x80 => (b, i + 1),
        0x80..0xE0 => ((b & 0x1F) << 6 | cont(1), i + 2),
        0xE0..0xF0 => ((b & 0x0F) << 12 | cont(1) << 6 | cont(2), i + 3),
        _ => ((b & 0x07) << 18 | cont(1) << 12 | cont(2) << 6 | cont(3), i + 4),
    }
}

/// `word_key(piece)` for a piece of `text`, read as one 16-byte load where the text goes on
/// that far past the piece's start (nearly always), not a copy of a variable length.
#[inline]
fn word_key_within(text: &[u8], piece: &[u8]) -> Option<u128> {
    let len = piece.len();
    if len > 15 {
        return None;
    }
    let start = piece.as_ptr() as usize - text.as_ptr() as usize;
    match text.get(start..start + 16) {
        Some(chunk) => Some(prefix_key(u128::from_le_bytes(chunk.try_into().unwrap()), len)),
        None => word_key(piece),
    }
}

/// Whether the piece whose `word_key` is `key` is all ASCII: no byte has its top bit set
/// (the length, in the top byte, is below 16, so its top bit is clear too). One test,
/// where `encode_cut`'s own check of the bytes cost a call and a scan per new word (3% of
/// the instructions of o200k's random letters).
#[inline(always)]
fn key_is_ascii(key: u128) -> bool {
    key & u128::from_le_bytes([0x80; 16]) == 0
}

/// `word_key` of the first `len` (at most 15) of the 16 bytes `loaded` (little-endian).
#[inline(always)]
pub(crate) fn prefix_key(loaded: u128, len: usize) -> u128 {
    // The mask from a table: a shift of a `u128` by a variable amount is several
    // instructions with branches or conditional moves, on every piece.
    const MASKS: [u128; 16] = {
        let mut masks = [0; 16];
        let mut len = 0;
        while len < 16 {
            masks[len] = ((1u128 << (8 * len)) - 1) | (len as u128) << 120;
            len += 1;
        }
        masks
    };
    debug_assert!(len < 16);
    let mask = MASKS[len & 15];
    // The top byte of `loaded & mask` holds only bits of the length, which the OR sets.
    loaded & mask | mask & (0xFF << 120)
}

/// Up to 15 bytes and their length packed into one integer; `None` for longer pieces.
#[inline]
pub(crate) fn word_key(bytes: &[u8]) -> Option<u128> {
    if bytes.len() > 15 {
        return None;
    }
    let mut buf = [0u8; 16];
    buf[..bytes.len()].copy_from_slice(bytes);
    buf[15] = bytes.len() as u8;
    Some(u128::from_le_bytes(buf))
}

/// The `MidKey` of a piece of 16 to 31 bytes (`None` for others): its first 16 bytes,
/// then the rest with the length in the top byte, read as two 16-byte loads (the second
/// ending where the piece ends) instead of a copy of a variable length.
#[inline]
pub(crate) fn mid_key(bytes: &[u8]) -> Option<MidKey> {
    let len = bytes.len();
    if !(16..32).contains(&len) {
        return None;
    }
    let head = u128::from_le_bytes(bytes[..16].try_into().unwrap());
    let tail = u128::from_le_bytes(bytes[len - 16..].try_into().unwrap());
    // The tail's last `len - 16` bytes, moved down to the bottom (none when `len` is 16).
    let rest = tail.checked_shr(8 * (32 - len) as u32).unwrap_or(0);
    Some(MidKey(head, rest | (len as u128) << 120))
}

/// The piece whose `mid_key` is `key`: its bytes (the first `.1` of `.0`).
fn mid_bytes(key: MidKey) -> ([u8; 32], usize) {
    let mut bytes = [0; 32];
    bytes[..16].copy_from_slice(&key.0.to_le_bytes());
    bytes[16..].copy_from_slice(&key.1.to_le_bytes());
    (bytes, (key.1 >> 120) as usize)
}

/// Appends `from[a..b]` to `out`. Most runs are a few ids, which `extend_from_slice`
/// copies with a call to `memcpy`: where 8 ids can be read from `a`, 8 are copied in one
/// fixed-size move (those past `b` land beyond the new length and are never read).
#[inline(always)]
fn extend_short(out: &mut Vec<Rank>, from: &[Rank], a: usize, b: usize) {
    const RUN: usize = 8;
    if b - a > RUN || a + RUN > from.len() {
        return out.extend_from_slice(&from[a..b]);
    }
    out.reserve(RUN);
    // SAFETY: `from[a..a + RUN]` is in bounds (checked above) and `reserve` made room for
    // `RUN` ids past the length, of which the first `b - a` become part of it.
    unsafe {
        let len = out.len();
        std::ptr::copy_nonoverlapping(from.as_ptr().add(a), out.as_mut_ptr().add(len), RUN);
        out.set_len(len + (b - a));
    }
}

#[inline]
fn pack((a, b): (u32, u32)) -> u64 {
    a as u64 | (b as u64) << 32
}

#[inline]
fn unpack(v: u64) -> (u32, u32) {
    (v as u32, (v >> 32) as u32)
}

impl WordCache {
    /// This thread's cache for `encoder`, or a new one with room for `pieces`.
    fn take(encoder: u64, pieces: usize) -> Box<WordCache> {
        Self::try_take(encoder).unwrap_or_else(|| {
            Box::new(WordCache {
                map: KeyTable::with_capacity(pieces),
                mid: KeyTable::with_capacity(pieces / MID_SHARE),
                ids: Vec::with_capacity((2 * pieces).min(WORD_CACHE_IDS)),
                ..WordCache::default()
            })
        })
    }

    /// This thread's cache for `encoder`, if it has one.
    fn try_take(encoder: u64) -> Option<Box<WordCache>> {
        WORD_CACHES
            .try_with(|caches| {
                let mut caches = caches.try_borrow_mut().ok()?;
                let i = caches.iter().position(|(id, _)| *id == encoder)?;
                Some(caches.remove(i).1)
            })
            .ok()
            .flatten()
    }

    fn put_back(self: Box<Self>, encoder: u64) {
        let _ = WORD_CACHES.try_with(|caches| {
            if let Ok(mut caches) = caches.try_borrow_mut() {
                // One cache per encoder (a batch's seed and a worker on the same thread
                // both come back): the later replaces the earlier.
                caches.retain(|(id, _)| *id != encoder);
                // Most recent last; the least recently used encoder's cache goes first.
                if caches.len() >= WORD_CACHES_PER_THREAD {
                    caches.remove(0);
                }
                caches.push((encoder, self));
            }
        });
    }

    /// Appends the cached ids of a piece (`(id, NONE)` for one token, else a range of
    /// `ids`) to `out`.
    #[inline]
    fn emit(&self, (a, b): (u32, u32), out: &mut Vec<Rank>) {
        if b == NONE {
            out.push(a);
        } else {
            extend_short(out, &self.ids, a as usize, b as usize);
        }
    }

    /// Appends the ids of the piece `key` to `out` if it is cached.
    #[inline]
    fn get(&self, key: u128, out: &mut Vec<Rank>) -> bool {
        self.get_hashed(key, KeyTable::hash(key), out)
    }

    #[inline]
    fn get_hashed(&self, key: u128, hash: u64, out: &mut Vec<Rank>) -> bool {
        self.map
            .get_hashed(key, hash)
            .map(|v| self.emit(unpack(v), out))
            .is_some()
    }

    /// The value to store for `ids`. A full cache starts over: kept as it was, it held the
    /// first pieces a thread met for good, and text in another script that came later
    /// (CJK after text that had filled it) was merged anew every time, 2.2-2.6x slower.
    #[inline]
    fn value(&mut self, key_bytes: usize, ids: &[Rank]) -> (u32, u32) {
        if self.map.len() + self.mid.len() + self.long.len() >= WORD_CACHE_PIECES
            || self.long_bytes + key_bytes > WORD_CACHE_BYTES
            || ((16..32).contains(&key_bytes) && self.mid.len() + 1 >= WORD_CACHE_MID)
            || (ids.len() > 1 && self.ids.len() + ids.len() > WORD_CACHE_IDS)
        {
            self.clear();
        }
        if let [id] = ids {
            return (*id, NONE);
        }
        let start = self.ids.len() as u32;
        self.ids.extend_from_slice(ids);
        (start, self.ids.len() as u32)
    }

    /// Forgets every piece (the blocks' scores for `encode_cut` stay).
    #[cold]
    fn clear(&mut self) {
        self.map.clear();
        self.mid.clear();
        self.long.clear();
        self.long_bytes = 0;
        self.ids.clear();
    }

    #[inline]
    fn insert(&mut self, key: u128, ids: &[Rank]) {
        let v = self.value(0, ids);
        self.map.insert(key, pack(v));
    }

    #[inline]
    fn get_long(&self, piece: &[u8], out: &mut Vec<Rank>) -> bool {
        match mid_key(piece) {
            Some(key) => self.mid.get(key).map(|v| self.emit(unpack(v), out)).is_some(),
            None => self.long.get(piece).map(|&v| self.emit(v, out)).is_some(),
        }
    }

    fn insert_long(&mut self, piece: &[u8], ids: &[Rank]) {
        let v = self.value(piece.len(), ids);
        self.long_bytes += piece.len();
        match mid_key(piece) {
            Some(key) => self.mid.insert(key, pack(v)),
            None => {
                self.long.insert(piece.into(), v);
            }
        }
    }

    /// Adds the pieces of `other` that this cache lacks (starting over if it fills).
    fn absorb(&mut self, other: &WordCache) {
        for (key, v) in other.map.iter() {
            let (a, b) = unpack(v);
            if self.map.get(key).is_none() {
                match b {
                    NONE => self.insert(key, &[a]),
                    _ => self.insert(key, &other.ids[a as usize..b as usize]),
                }
            }
        }
        for (key, v) in other.mid.iter() {
            if self.mid.get(key).is_none() {
                let (bytes, len) = mid_bytes(key);
                match unpack(v) {
                    (a, NONE) => self.insert_long(&bytes[..len], &[a]),
                    (a, b) => self.insert_long(&bytes[..len], &other.ids[a as usize..b as usize]),
                }
            }
        }
        for (piece, &(a, b)) in &other.long {
            if !self.long.contains_key(piece) {
                match b {
                    NONE => self.insert_long(piece, &[a]),
                    _ => self.insert_long(piece, &other.ids[a as usize..b as usize]),
                }
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len() + self.mid.len() + self.long.len()
    }
}

/// A BPE vocabulary with its pre-tokenizer and special tokens.
pub struct Encoder {
    splitter: Splitter,
    /// The regular tokens; pieces of up to 15 bytes are looked up in `tokens.short`,
    /// hashing and comparing one integer instead of a byte string behind a pointer.
    tokens: Tokens,
    /// The special tokens' bytes by id.
    special_bytes: FxHashMap<Rank, Box<[u8]>>,
    /// One past the largest id, special tokens included.
    n_vocab: usize,
    /// Pair key → merge (`Merge::packed`): megabytes probed at random, often not in the
    /// CPU's caches, whose slots new words' merges prefetch.
    merges: KeyTable<u64>,
    /// Which pairs of `merges` may merge, answering most lookups of pairs that do not.
    filter: KeyFilter,
    /// Which `word_key` hashes may be of a token in `tokens.short`.
    short_filter: KeyFilter,
    /// The merges of two ids below `LOW` again, in a dense table (512 KB, cache-resident):
    /// every piece's first merges are of two bytes, whose ids are low in trained vocabularies.
    low: Box<[Merge]>,
    /// Merges in priority order, kept for export when given explicitly (Hugging Face).
    merge_list: Option<Vec<(Rank, Rank)>>,
    byte_ids: [Rank; 256],
    /// Whole-piece lookup before merging (tiktoken always; Hugging Face with `ignore_merges`).
    direct_lookup: bool,
    specials: FxHashMap<String, Rank>,
    special_regex: Option<Regex>,
    /// The linear-time encoder of long pieces: built at load in tiktoken's model; never
    /// for an explicit merge list (Hugging Face's), which leaves long pieces to the heap.
    pub(crate) long_pieces: Option<LongPieces>,
    /// The characters that new words' merges start from whole, where exact.
    pub(crate) atoms: Option<Atoms>,
    /// Where new words in other scripts may be cut into parts merged alone.
    cuts: Option<Cuts>,
    /// BPE of each character of three bytes (U+0800 to U+FFFF) on its own bytes, up to
    /// three ids packed by `CHAR_ID_BITS` (512 KB; empty without `cuts`, or for a
    /// vocabulary of more ids than they hold). Most parts that `encode_cut` cuts words of
    /// CJK and other such scripts into are one such character: one load from here, where
    /// the word cache took two dependent misses, and on first sight a merge.
    char_ids: Box<[u64]>,
    /// Names this encoder's per-thread word caches.
    id: u64,
}

/// The dropping thread's word cache for this encoder goes with it (up to 7 MB, which stayed
/// until 4 newer encoders had pushed it out: 20-28 MB in a process that loads tokenizers
/// again and again); other threads' go as newer encoders push them out.
impl Drop for Encoder {
    fn drop(&mut self) {
        drop(WordCache::try_take(self.id));
    }
}

impl Encoder {
    /// tiktoken's model from (token bytes, rank) pairs (`from_tokens`).
    pub fn from_ranks(ranks: Vec<(Vec<u8>, Rank)>, pattern: &str, specials: Vec<(String, Rank)>) -> Result<Self> {
        Self::from_tokens(Tokens::from_pairs(ranks)?, pattern, specials)
    }

    /// tiktoken's model: a token's rank is its id and the priority of any merge making it.
    pub fn from_tokens(tokens: Tokens, pattern: &str, specials: Vec<(String, Rank)>) -> Result<Self> {
        let mut encoder = Self::new(tokens, pattern, specials, true)?;
        // Of all the pairs whose bytes join into a token, only the last merge of BPE on
        // the token's own bytes ever makes it in a text: until a token forms, the merges
        // inside its span are those of its bytes alone (a neighbour taking one of its bytes
        // means it never forms). So the map holds each token's split (200,000 pairs for
        // o200k, not the 446,000 whose bytes join into a token) and more of it stays in
        // cache for the lookups that are most of the time of merging. A token that its
        // bytes reach only through a part ranked after it keeps every pair that makes it.
        let splits = own_splits(&encoder);
        encoder.set_merges(
            splits
                .merges
                .iter()
                .map(|(&key, &id)| (key, Merge { priority: id, id })),
        );
        // The long-piece tables are built here, at load, so the first long piece costs no
        // more than any other.
        encoder.long_pieces = Some(LongPieces::build(&encoder, &splits));
        encoder.set_atoms();
        encoder.warm_tables();
        Ok(encoder)
    }

    /// Hugging Face's model: an explicit merge list in priority order, each pair of ids
    /// merging into the id of their concatenated bytes.
    pub fn from_merges(
        vocab: Vec<(Vec<u8>, Rank)>,
        merges: Vec<(Rank, Rank)>,
        pattern: &str,
        specials: Vec<(String, Rank)>,
        direct_lookup: bool,
    ) -> Result<Self> {
        if merges.len() >= MAX_PRIORITY as usize {
            return Err(Error::Invalid(format!(
                "{} merges: at most {MAX_PRIORITY} are supported",
                merges.len()
            )));
        }
        let mut encoder = Self::new(Tokens::from_pairs(vocab)?, pattern, specials, direct_lookup)?;
        let mut map = FxHashMap::default();
        for (priority, &(a, b)) in merges.iter().enumerate() {
            let joined = [encoder.token_bytes(a)?, encoder.token_bytes(b)?].concat();
            let Some(id) = encoder.token_id(&joined) else {
                return Err(Error::Invalid(format!(
                    "merge {priority} ({a} {b}) makes {:?}, which is not in the vocabulary",
                    String::from_utf8_lossy(&joined)
                )));
            };
            map.entry(pair_key(a, b)).or_insert(Merge {
                priority: priority as u32,
                id,
            });
        }
        encoder.set_merges(map.iter().map(|(&key, &m)| (key, m)));
        encoder.merge_list = Some(merges);
        encoder.set_atoms();
        encoder.warm_tables();
        Ok(encoder)
    }

    /// Reads every entry of the tables that encoding looks up, once, as the last step of a
    /// load: building the long-piece tables and the merge map after them has pushed these
    /// out of the CPU's caches, and a first encode soon after a load (the usual case) would
    /// otherwise meet each word's entries in main memory. Takes a few milliseconds; first
    /// sight of 128 KB of text measured 7-20% faster right after.
    fn warm_tables(&self) {
        let mut sum = 0u64;
        for (key, id) in self.tokens.short.iter() {
            sum = sum.wrapping_add(key as u64 ^ id);
        }
        for (key, id) in self.tokens.mid.iter() {
            sum = sum.wrapping_add(key.0 as u64 ^ id);
        }
        for (key, merge) in self.merges.iter() {
            sum = sum.wrapping_add(key ^ merge);
        }
        for merge in self.low.iter() {
            sum = sum.wrapping_add(merge.id as u64);
        }
        std::hint::black_box(sum);
    }

    fn new(tokens: Tokens, pattern: &str, specials: Vec<(String, Rank)>, direct_lookup: bool) -> Result<Self> {
        // A token's id is the priority of its merges in tiktoken's model.
        if tokens.id_bound() >= MAX_PRIORITY as usize {
            return Err(Error::Invalid(format!(
                "token ids up to {}: at most {MAX_PRIORITY} tokens are supported",
                tokens.id_bound() - 1
            )));
        }
        let splitter = Splitter::new(pattern)?;
        let mut byte_ids = [0; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = tokens.id(&[b as u8]).ok_or_else(|| {
                Error::Invalid(format!(
                    "the vocabulary has no token for the single byte {b:#04x}; byte-level BPE needs all 256"
                ))
            })?;
        }
        let mut n_vocab = tokens.id_bound();
        let mut special_map = FxHashMap::default();
        let mut special_bytes = FxHashMap::default();
        for (text, id) in specials {
            if text.is_empty() {
                return Err(Error::Invalid(format!("special token {id} is an empty string")));
            }
            if tokens.get(id).is_some() || special_bytes.contains_key(&id) {
                return Err(Error::Invalid(format!(
                    "special token {text:?} has id {id}, which is already taken"
                )));
            }
            if id as usize >= 2 * (tokens.id_bound() + special_map.len()) + (1 << 16) {
                return Err(Error::Invalid(format!(
                    "special token {text:?} has id {id}, far beyond the {} tokens (ids must be dense)",
                    tokens.len()
                )));
            }
            n_vocab = n_vocab.max(id as usize + 1);
            special_bytes.insert(id, text.as_bytes().into());
            special_map.insert(text, id);
        }
        let special_regex = if special_map.is_empty() {
            None
        } else {
            let mut texts: Vec<&String> = special_map.keys().collect();
            // Longest first, so a special token that extends another wins.
            texts.sort_by_key(|t| (Reverse(t.len()), (*t).clone()));
            let alternation: Vec<String> = texts.iter().map(|t| regex_syntax::escape(t)).collect();
            Some(Regex::new(&alternation.join("|")).map_err(|e| Error::Invalid(e.to_string()))?)
        };
        // Asked only before a whole-piece lookup: an encoder that makes none keeps it empty.
        let short_filter = if direct_lookup {
            let keys = tokens.short.iter().map(|(key, _)| KeyTable::hash(key));
            KeyFilter::new(keys, tokens.short.len(), 16)
        } else {
            KeyFilter::new(std::iter::empty(), 0, 16)
        };
        Ok(Encoder {
            splitter,
            tokens,
            special_bytes,
            n_vocab,
            merges: KeyTable::default(),
            filter: KeyFilter::new(std::iter::empty(), 0, 8),
            short_filter,
            low: Box::new([]),
            merge_list: None,
            byte_ids,
            direct_lookup,
            specials: special_map,
            special_regex,
            long_pieces: None,
            atoms: None,
            cuts: None,
            char_ids: Box::new([]),
            id: NEXT_ENCODER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// The tables of the pairs that merge: `merges` gives each pair's key and merge once.
    fn set_merges(&mut self, merges: impl ExactSizeIterator<Item = (u64, Merge)> + Clone) {
        let mut low = vec![NO_MERGE; (LOW * LOW) as usize].into_boxed_slice();
        let mut table = KeyTable::with_capacity(merges.len());
        for (key, m) in merges.clone() {
            let (a, b) = unpair(key);
            if a < LOW && b < LOW {
                low[(a * LOW + b) as usize] = m;
            }
            table.insert(key, m.packed());
        }
        self.low = low;
        self.filter = KeyFilter::new(merges.clone().map(|(key, _)| key), merges.len(), 8);
        self.merges = table;
    }

    /// Finds the atoms once the merges are set.
    fn set_atoms(&mut self) {
        let merges = self.merges.iter().map(|(key, m)| {
            let (a, b) = unpair(key);
            (a, b, Merge::unpacked(m).priority)
        });
        let pair = |a, b| {
            Some(self.pair(a, b))
                .filter(|m| m.priority != NONE)
                .map(|m| (m.priority, m.id))
        };
        self.atoms = Atoms::build(&self.tokens, &self.byte_ids, merges, pair);
        self.cuts = Some(Cuts::build(&self.tokens));
        self.set_char_ids();
    }

    /// Fills `char_ids` (1.5-3 ms of a load). BPE of three symbols is at most two merges:
    /// `merge_three`'s, then the two symbols left, if they merge.
    fn set_char_ids(&mut self) {
        if self.n_vocab >= (1 << CHAR_ID_BITS) - 1 {
            return;
        }
        let mut table = vec![0u64; 0x10000].into_boxed_slice();
        let (mut buf, mut ids) = ([0u8; 4], Vec::with_capacity(3));
        for c in (0x800..0x10000).filter_map(char::from_u32) {
            let bytes = c.encode_utf8(&mut buf).as_bytes();
            ids.clear();
            self.merge_three(
                [bytes[0], bytes[1], bytes[2]].map(|b| self.byte_ids[b as usize]),
                &mut ids,
            );
            if let [a, b] = ids[..] {
                let m = self.pair(a, b);
                if m.priority != NONE {
                    ids.clear();
                    ids.push(m.id);
                }
            }
            table[c as usize] = ids
                .iter()
                .rev()
                .fold(0, |packed, &id| packed << CHAR_ID_BITS | (id as u64 + 1));
        }
        self.char_ids = table;
    }

    /// Appends the ids of the character of three bytes `[x, y, z]` from `char_ids`; false
    /// where it has none (no table, or bytes that are not one such character).
    #[inline(always)]
    fn char_part(&self, [x, y, z]: [u8; 3], out: &mut Vec<Rank>) -> bool {
        if x & 0xF0 != 0xE0 || (y & 0xC0, z & 0xC0) != (0x80, 0x80) || self.char_ids.is_empty() {
            return false;
        }
        let c = (x as usize & 0x0F) << 12 | (y as usize & 0x3F) << 6 | z as usize & 0x3F;
        // 0 for an overlong form or a surrogate, which are no character.
        let mut packed = self.char_ids[c];
        if packed == 0 {
            return false;
        }
        while packed != 0 {
            out.push((packed & ((1 << CHAR_ID_BITS) - 1)) as Rank - 1);
            packed >>= CHAR_ID_BITS;
        }
        true
    }

    /// The merge of `a` and `b`, `NO_MERGE` where they do not merge. Two bytes' merge, one
    /// load, is always inlined: pieces of two bytes and three or four that are no token
    /// (`merge_three`) look up little else.
    #[inline(always)]
    fn pair(&self, a: Rank, b: Rank) -> Merge {
        if a < LOW && b < LOW {
            return self.low[(a * LOW + b) as usize];
        }
        self.pair_above_low(a, b)
    }

    /// `pair` where `a` or `b` is not below `LOW`: a lookup in `merges`.
    #[inline]
    fn pair_above_low(&self, a: Rank, b: Rank) -> Merge {
        let key = pair_key(a, b);
        if !self.filter.may_hold(key) {
            return NO_MERGE;
        }
        self.merges.get(key).map_or(NO_MERGE, Merge::unpacked)
    }

    /// Asks the CPU to bring the merge of `a` and `b` into its caches.
    #[inline]
    fn prefetch_pair(&self, a: Rank, b: Rank) {
        if a < LOW && b < LOW {
            crate::memory::prefetch(self.low.as_ptr().wrapping_add((a * LOW + b) as usize));
        } else {
            let key = pair_key(a, b);
            self.filter.prefetch(key);
            self.merges.prefetch(key);
        }
    }

    pub fn splitter(&self) -> &Splitter {
        &self.splitter
    }

    /// One more than the largest id, regular or special (tiktoken's `n_vocab`).
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    pub(crate) fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    pub fn special_tokens(&self) -> &FxHashMap<String, Rank> {
        &self.specials
    }

    pub fn token_bytes(&self, id: Rank) -> Result<&[u8]> {
        match self.tokens.get(id) {
            Some(bytes) => Ok(bytes),
            None => self
                .special_bytes
                .get(&id)
                .map(|b| &b[..])
                .ok_or(Error::UnknownToken(id)),
        }
    }

    /// The regular tokens with their ids (no special tokens), in id order.
    pub fn ranks(&self) -> Vec<(&[u8], Rank)> {
        self.tokens.iter().collect()
    }

    /// The merges in priority order. For a tiktoken vocabulary, each token's merge is the
    /// split that BPE on its own bytes reaches using only lower ranks; tokens that BPE
    /// cannot reach that way (rare) get none and are found by whole-piece lookup.
    pub fn merges(&self) -> Vec<(Rank, Rank)> {
        if let Some(list) = &self.merge_list {
            return list.clone();
        }
        self.ranks()
            .into_iter()
            .filter(|(bytes, _)| bytes.len() >= 2)
            .filter_map(|(bytes, id)| self.split_of(bytes, id))
            .collect()
    }

    /// Whether merge priorities follow token ids, so the ids alone (a tiktoken rank
    /// file) describe this encoder.
    pub fn is_rank_ordered(&self) -> bool {
        match &self.merge_list {
            None => true,
            Some(list) => {
                self.direct_lookup
                    && list.iter().enumerate().all(|(p, &(a, b))| {
                        self.merges
                            .get(pair_key(a, b))
                            .is_some_and(|m| Merge::unpacked(m).priority as usize == p)
                    })
                    && list
                        .windows(2)
                        .all(|w| self.pair(w[0].0, w[0].1).id < self.pair(w[1].0, w[1].1).id)
            }
        }
    }

    pub fn encode_ordinary(&self, text: &str) -> Vec<Rank> {
        let mut out = Vec::new();
        self.encode_ordinary_to(text, &mut out);
        out
    }

    /// `encode_ordinary`, appending to `out`: a caller that reuses one buffer saves an
    /// allocation per call.
    pub fn encode_ordinary_to(&self, text: &str, out: &mut Vec<Rank>) {
        out.reserve(text.len() / 3);
        let mut cache = MergeCache::open(self.id, None);
        self.encode_ordinary_into(text, out, &mut cache);
        cache.close(self.id);
    }

    /// The splitter only notes where each piece is, and every `GROUP` pieces they are
    /// encoded together (`encode_group`). Encoding each piece as it was found (after a ring
    /// of 16 pieces, for the prefetches) made the splitter's loop call a closure per piece,
    /// whose state went through memory: 6% slower on code, 2-3% on prose. (o200k's random
    /// letters, nearly all new pieces, lost 7%: the 64 pieces' fetches are more misses than
    /// the CPU waits for at once.)
    fn encode_ordinary_into(&self, text: &str, out: &mut Vec<Rank>, cache: &mut MergeCache) {
        let all = text.as_bytes();
        let mut spans = [(0usize, 0usize); GROUP];
        let mut n = 0;
        self.splitter.for_each_piece(text, |piece| {
            spans[n] = (piece.as_ptr() as usize - all.as_ptr() as usize, piece.len());
            n += 1;
            if n == GROUP {
                self.encode_group(all, &spans, cache, out);
                n = 0;
            }
        });
        self.encode_group(all, &spans[..n], cache, out);
        self.merge_pending(cache, out);
    }

    /// Encodes the pieces at `spans` of `all`, in two passes: the table slots each will
    /// be looked up in are fetched for all of them first, so that their cache misses
    /// overlap instead of each waiting for the one before.
    #[inline(never)]
    fn encode_group(&self, all: &[u8], spans: &[(usize, usize)], cache: &mut MergeCache, out: &mut Vec<Rank>) {
        let mut keys = [None::<(u128, u64)>; GROUP];
        for (slot, &(start, len)) in keys.iter_mut().zip(spans) {
            let bytes = &all[start..start + len];
            let key = if len > 2 { word_key_within(all, bytes) } else { None };
            // With its hash, computed once for every table it is looked up in: the
            // vocabulary's, the word cache and, in a batch, the caller's word cache.
            let key = key.map(|key| (key, KeyTable::hash(key)));
            if let Some((_, hash)) = key {
                if cache.few_tokens {
                    self.short_filter.prefetch(hash);
                    if let (true, &[x, y, z, w]) = (self.direct_lookup, bytes) {
                        self.prefetch_four([x, y, z, w]);
                    }
                } else {
                    self.tokens.short.prefetch_hashed(hash);
                }
                // Pieces of 3 or 4 bytes that are no token are merged straight away
                // (`merge_three`, `encode_four`), never looked up in a word cache.
                if len > 4 || !self.direct_lookup {
                    cache.words.map.prefetch_hashed(hash);
                    if let Some(seed) = cache.batch.and_then(|batch| batch.seed.as_ref()) {
                        seed.map.prefetch_hashed(hash);
                    }
                }
            } else if let Some(mid) = mid_key(bytes) {
                let hash = KeyTable::hash(mid);
                self.tokens.mid.prefetch_hashed(hash);
                cache.words.mid.prefetch_hashed(hash);
            }
            *slot = key;
        }
        if cache.few_tokens {
            // The filter's words fetched above are in by now: only the pieces it may hold
            // are fetched from the vocabulary's table (random letters: 1 in 10 of their
            // pieces of 3 bytes or more), so the CPU's misses in flight are not spent on
            // slots that will not be read.
            for &(_, hash) in keys[..spans.len()].iter().flatten() {
                if self.short_filter.may_hold(hash) {
                    self.tokens.short.prefetch_hashed(hash);
                }
            }
        }
        for (&(start, len), &key) in spans.iter().zip(&keys) {
            self.encode_piece(all, &all[start..start + len], key, cache, out);
        }
        cache.few_tokens = 2 * cache.token_misses > cache.token_lookups;
        (cache.token_lookups, cache.token_misses) = (0, 0);
    }

    /// Leaves a hole in `out` for the ids of `bytes`, a piece of 3 to `SCAN_LIMIT` bytes
    /// (`key` its `word_key`, `None` over 15 bytes) that no cache has, to be filled when it
    /// is merged with others.
    #[inline]
    fn defer(&self, bytes: &[u8], key: Option<u128>, cache: &mut MergeCache, out: &mut Vec<Rank>) {
        let pending = &mut cache.pending;
        let hole = match key {
            Some(key) => self.pending_word(&mut pending.words, key, bytes),
            None => self.pending_word(&mut pending.long_words, LongKey::new(bytes), bytes) | LONG_HOLE,
        };
        pending.holes.push((out.len(), hole));
        if pending.words.len == PENDING_WORDS
            || pending.long_words.len == PENDING_WORDS
            || pending.holes.len() == 4 * PENDING_WORDS
        {
            self.merge_pending(cache, out);
        }
    }

    /// The index in `words` of the word `key`, added (its first pairs' merges fetched)
    /// unless it is there.
    #[inline(always)]
    fn pending_word<K: WaitingKey, const N: usize>(&self, words: &mut Waiting<K, N>, key: K, bytes: &[u8]) -> u32 {
        let before = words.len;
        let i = words.find_or_add(self, key, bytes);
        if words.len > before {
            // A pair of bytes' merge is in the dense table of low ids, which stays in
            // cache (prefetching it measured 20% slower on random letters); in a
            // vocabulary whose bytes have higher ids, it is in the large table.
            let scan = &words.slots[i as usize].scan;
            for w in scan.ids[..scan.n].windows(2) {
                if w[0] >= LOW || w[1] >= LOW {
                    self.prefetch_pair(w[0], w[1]);
                }
            }
        }
        i
    }

    /// Merges the words waiting in `cache.pending`, caches them, and puts their ids in
    /// their holes in `out`.
    fn merge_pending(&self, cache: &mut MergeCache, out: &mut Vec<Rank>) {
        if cache.pending.holes.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut cache.pending);
        self.merge_and_cache(pending.words.words(), cache, |key| (&[], Some(*key)));
        self.merge_and_cache(pending.long_words.words(), cache, |key| (key.bytes(), None));
        // Fill the holes from the last: each part of `out` after a hole moves right by the
        // ids of the holes before it.
        let ids_of = |hole: u32| match hole & LONG_HOLE {
            0 => pending.words.ids(hole as usize),
            _ => pending.long_words.ids((hole & !LONG_HOLE) as usize),
        };
        let extra: usize = pending.holes.iter().map(|&(_, w)| ids_of(w).len()).sum();
        let mut end = out.len();
        out.resize(end + extra, 0);
        let mut shift = extra;
        for &(at, w) in pending.holes.iter().rev() {
            out.copy_within(at..end, at + shift);
            let ids = ids_of(w);
            shift -= ids.len();
            out[at + shift..at + shift + ids.len()].copy_from_slice(ids);
            end = at;
        }
        pending.words.clear();
        pending.long_words.clear();
        pending.holes.clear();
        cache.pending = pending;
    }

    /// Merges `words` and adds them to the word cache; `name` gives a word's bytes and
    /// `word_key` as the cache takes them.
    #[inline(always)]
    fn merge_and_cache<K, const N: usize>(
        &self,
        words: &mut [NewWord<K, N>],
        cache: &mut MergeCache,
        name: impl Fn(&K) -> (&[u8], Option<u128>),
    ) {
        if words.is_empty() {
            return;
        }
        self.merge_words(words, u64::MAX >> (64 - words.len()));
        for word in words.iter() {
            let (bytes, key) = name(&word.key);
            match key {
                Some(key) => cache.words.insert(key, word.ids()),
                None => cache.words.insert_long(bytes, word.ids()),
            }
        }
    }

    /// BPE on the words whose bits are set in `live`, in lockstep: each round makes the
    /// best merge of every word still merging and fetches the merges of the new pairs,
    /// then prices them, so that the lookups of all the words overlap. Compiled for
    /// SSE4.1 where the CPU has it: the scan's minimum of unsigned keys is then one
    /// instruction for 4 keys, where SSE2 takes six (random letters: 17% fewer
    /// instructions in cl100k, whose long piece is merged in parts, 6% in o200k).
    fn merge_words<K, const N: usize>(&self, words: &mut [NewWord<K, N>], live: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            /// # Safety
            /// The CPU has SSE4.1.
            #[target_feature(enable = "sse4.1")]
            unsafe fn sse41<K, const N: usize>(encoder: &Encoder, words: &mut [NewWord<K, N>], live: u64) {
                encoder.merge_words_in_lockstep(words, live)
            }
            if std::arch::is_x86_feature_detected!("sse4.1") {
                // SAFETY: detected just now.
                return unsafe { sse41(self, words, live) };
            }
        }
        self.merge_words_in_lockstep(words, live)
    }

    #[inline(always)]
    fn merge_words_in_lockstep<K, const N: usize>(&self, words: &mut [NewWord<K, N>], mut live: u64) {
        let each = |mut bits: u64| {
            std::iter::from_fn(move || {
                let i = bits.trailing_zeros() as usize;
                bits &= bits.wrapping_sub(1);
                (i < 64).then_some(i)
            })
        };
        for i in each(live) {
            words[i].scan.price_all(self, NONE);
        }
        while live != 0 {
            for i in each(live) {
                let w = &mut words[i];
                let Some(at) = w.scan.step() else {
                    w.scan.compact();
                    live &= !(1 << i);
                    continue;
                };
                w.at = at;
                let (left, right) = w.scan.neighbours(at);
                let ids = &w.scan.ids;
                if let Some(left) = left {
                    self.prefetch_pair(ids[left], ids[at]);
                }
                if let Some(right) = right {
                    self.prefetch_pair(ids[at], ids[right]);
                }
                if w.scan.live == 1 {
                    w.scan.compact();
                    live &= !(1 << i);
                }
            }
            for i in each(live) {
                let w = &mut words[i];
                w.scan.price_around(self, w.at, NONE);
            }
        }
    }

    /// Appends the ids of the piece `bytes` of `text` (`key` its `word_key` and that key's
    /// `KeyTable::hash`, when it has 3 to 15 bytes).
    #[inline(always)]
    fn encode_piece(
        &self,
        text: &[u8],
        bytes: &[u8],
        key: Option<(u128, u64)>,
        cache: &mut MergeCache,
        out: &mut Vec<Rank>,
    ) {
        // One or two bytes (punctuation, spaces, short words): a byte's token, or the
        // merge of two (in tiktoken's model every two-byte token is one), straight from
        // `byte_ids` and the dense table of low merges, cheaper than the word cache and
        // never filling it. An explicit merge list may lack a two-byte token's merge,
        // which whole-piece lookup (`ignore_merges`) still finds.
        match *bytes {
            [b] => return out.push(self.byte_ids[b as usize]),
            [x, y] => {
                let (a, b) = (self.byte_ids[x as usize], self.byte_ids[y as usize]);
                let id = match self.pair(a, b).id {
                    NONE if self.direct_lookup && self.merge_list.is_some() => self.token_id(bytes).unwrap_or(NONE),
                    id => id,
                };
                match id {
                    NONE => out.extend_from_slice(&[a, b]),
                    id => out.push(id),
                }
                return;
            }
            _ => {}
        }
        if let Some((key, hash)) = key {
            // A whole token (most words) is found in the vocabulary's table, never
            // filling the word cache, which keeps the pieces of several tokens.
            if self.direct_lookup {
                cache.token_lookups += 1;
                if !cache.few_tokens || self.short_filter.may_hold(hash) {
                    if let Some(id) = self.tokens.short.get_hashed(key, hash) {
                        return out.push(id as Rank);
                    }
                }
                cache.token_misses += 1;
                match *bytes {
                    [x, y, z] => return self.merge_three([x, y, z].map(|b| self.byte_ids[b as usize]), out),
                    [x, y, z, w] => return self.encode_four([x, y, z, w], out),
                    _ => {}
                }
            }
            if cache.words.get_hashed(key, hash, out)
                || cache.seed_get(key, out)
                || (!key_is_ascii(key) && self.encode_cut(text, bytes, Some(key), cache, out))
            {
                return;
            }
            return self.defer(bytes, Some(key), cache, out);
        }
        if self.direct_lookup {
            if let Some(id) = self.token_id(bytes) {
                return out.push(id);
            }
        }
        if bytes.len() > SCAN_LIMIT {
            if !self.encode_cut(text, bytes, None, cache, out) {
                self.merge_long(bytes, out);
            }
            return;
        }
        if !cache.words.get_long(bytes, out)
            && !cache.seed_get_long(bytes, out)
            && !self.encode_cut(text, bytes, None, cache, out)
        {
            self.defer(bytes, None, cache, out);
        }
    }

    /// Appends the ids of three symbols `x y z` whose bytes make a piece that is no token,
    /// where whole pieces are looked up (`direct_lookup`): the better of the two pairs
    /// merges (the left one on ties, as in BPE), and the token it makes cannot merge with
    /// the third, since that would make the whole piece. Pieces of three bytes take this
    /// instead of the word cache and a merge loop: random letters are mostly such pieces
    /// in o200k, whose pattern cuts words where the case changes.
    #[inline(always)]
    fn merge_three(&self, [x, y, z]: [Rank; 3], out: &mut Vec<Rank>) {
        let (left, right) = (self.pair(x, y), self.pair(y, z));
        if left.priority != NONE && left.priority <= right.priority {
            out.extend_from_slice(&[left.id, z]);
        } else if right.priority != NONE {
            out.extend_from_slice(&[x, right.id]);
        } else {
            out.extend_from_slice(&[x, y, z]);
        }
    }

    /// `merge_three` for four bytes that are no token, after their first merge: the best
    /// of the three byte pairs (the leftmost on ties), from the dense table of low merges.
    #[inline]
    fn encode_four(&self, bytes: [u8; 4], out: &mut Vec<Rank>) {
        let (ids, first, made) = self.first_of_four(bytes);
        let [a, b, c, d] = ids;
        match first {
            _ if made == NONE => out.extend_from_slice(&ids),
            0 => self.merge_three([made, c, d], out),
            1 => self.merge_three([a, made, d], out),
            _ => self.merge_three([a, b, made], out),
        }
    }

    /// The ids of four bytes, where the first of their merges is (the index of its left
    /// byte), and the id it makes (`NONE` where no two of them merge).
    #[inline(always)]
    fn first_of_four(&self, bytes: [u8; 4]) -> ([Rank; 4], usize, Rank) {
        let ids = bytes.map(|b| self.byte_ids[b as usize]);
        let [a, b, c, d] = ids;
        let pairs = [self.pair(a, b), self.pair(b, c), self.pair(c, d)];
        let first = (1..3).fold(0, |best, i| {
            if pairs[i].priority < pairs[best].priority {
                i
            } else {
                best
            }
        });
        (ids, first, pairs[first].id)
    }

    /// Fetches the merges that `encode_four` will look up in `merges` (those of the token
    /// that the first merge makes with its neighbours), so that its misses overlap.
    #[inline(always)]
    fn prefetch_four(&self, bytes: [u8; 4]) {
        let ([a, b, c, d], first, made) = self.first_of_four(bytes);
        match first {
            _ if made == NONE => {}
            0 => self.prefetch_pair(made, c),
            1 => {
                self.prefetch_pair(a, made);
                self.prefetch_pair(made, d);
            }
            _ => self.prefetch_pair(b, made),
        }
    }

    /// Appends the ids of `piece` (of `text`, `key` its `word_key` if it has one), a word
    /// not seen before, part by part if it has characters other than ASCII and `Cuts`
    /// finds places to cut it; false, with nothing appended, if it finds none. The parts
    /// are cached, and the word too once all its parts were (a part merged now leaves a
    /// hole in `out`, filled later).
    #[inline(never)]
    fn encode_cut(
        &self,
        text: &[u8],
        piece: &[u8],
        key: Option<u128>,
        cache: &mut MergeCache,
        out: &mut Vec<Rank>,
    ) -> bool {
        let Some(cuts) = &self.cuts else { return false };
        if piece.is_ascii() {
            return false;
        }
        // In scripts whose letters the vocabulary joins in many tokens (Cyrillic in cl100k
        // and o200k, Arabic in o200k), few words have a cut, and looking for one cost up to
        // 7%. So each block of 128 code points (a script, mostly) keeps a score per thread:
        // while it is below 0, only one new word in `CUT_PROBE` is tried.
        let (first_char, _) = next_char(piece, piece.iter().position(|&b| b >= 0x80).unwrap());
        let block = (first_char >> 7).min(CUT_BLOCKS as u32 - 1) as usize;
        let words = &mut cache.words;
        if words.cut_score.is_empty() {
            words.cut_score = vec![0; CUT_BLOCKS].into_boxed_slice();
        }
        if words.cut_score[block] < 0 {
            words.cut_skips = words.cut_skips.wrapping_add(1);
            if !words.cut_skips.is_multiple_of(CUT_PROBE) {
                return false;
            }
        }
        // Only edges between two characters that are not ASCII are tried: next to ASCII
        // letters (accented Latin text), parts are runs of letters that need merges of
        // their own, and cutting there measured slower.
        let (mut before, mut i) = next_char(piece, 0);
        let mut held_before = cuts.held(before);
        let (first, mut start, mut known) = (out.len(), 0, true);
        while i < piece.len() {
            let (c, next) = next_char(piece, i);
            let held = cuts.held(c);
            if before.min(c) >= 0x80 && cuts.cuts((before, held_before), (c, held), piece[i - 1], piece[i]) {
                known &= self.encode_part(text, &piece[start..i], cache, out);
                start = i;
            }
            (before, held_before, i) = (c, held, next);
        }
        if start == 0 {
            let score = &mut cache.words.cut_score[block];
            *score = (*score as i32 - 1).max(-CUT_SCORE_LIMIT) as i8;
            return false;
        }
        let score = &mut cache.words.cut_score[block];
        *score = (*score as i32 + CUT_HIT).min(CUT_SCORE_LIMIT) as i8;
        known &= self.encode_part(text, &piece[start..], cache, out);
        if known {
            match key {
                Some(key) => cache.words.insert(key, &out[first..]),
                None if piece.len() <= SCAN_LIMIT => cache.words.insert_long(piece, &out[first..]),
                None => {}
            }
        }
        true
    }

    /// Appends the ids of `part`, a part of a word (of `text`) that no token crosses the
    /// ends of: BPE on its bytes alone, which may differ from the token it is, if it is one
    /// (tiktoken looks up only whole pieces). False where they are left to merge
    /// (`defer`).
    #[inline(always)]
    fn encode_part(&self, text: &[u8], part: &[u8], cache: &mut MergeCache, out: &mut Vec<Rank>) -> bool {
        match *part {
            [b] => {
                out.push(self.byte_ids[b as usize]);
                return true;
            }
            [x, y] => {
                let (a, b) = (self.byte_ids[x as usize], self.byte_ids[y as usize]);
                match self.pair(a, b).id {
                    NONE => out.extend_from_slice(&[a, b]),
                    id => out.push(id),
                };
                return true;
            }
            [x, y, z] if self.char_part([x, y, z], out) => return true,
            _ => {}
        }
        if let Some((id, len)) = self.atoms.as_ref().and_then(|atoms| atoms.at(part, 0)) {
            if len == part.len() {
                out.push(id);
                return true;
            }
        }
        if let Some(key) = word_key_within(text, part) {
            if cache.words.get(key, out) || cache.seed_get(key, out) {
                return true;
            }
            self.defer(part, Some(key), cache, out);
        } else if part.len() > SCAN_LIMIT {
            self.merge_long(part, out);
            return true;
        } else if cache.words.get_long(part, out) || cache.seed_get_long(part, out) {
            return true;
        } else {
            self.defer(part, None, cache, out);
        }
        false
    }

    /// Encodes `text`, emitting the allowed special tokens where their text appears; the
    /// caller decides (in Python) whether other special tokens in the text are an error.
    pub fn encode(&self, text: &str, allowed: &Allowed) -> Vec<Rank> {
        let mut out = Vec::new();
        self.encode_to(text, allowed, &mut out);
        out
    }

    /// `encode`, appending to `out`.
    pub fn encode_to(&self, text: &str, allowed: &Allowed, out: &mut Vec<Rank>) {
        out.reserve(text.len() / 3);
        let mut cache = MergeCache::open(self.id, None);
        self.encode_into(text, allowed, out, &mut cache);
        cache.close(self.id);
    }

    fn encode_into(&self, text: &str, allowed: &Allowed, out: &mut Vec<Rank>, cache: &mut MergeCache) {
        let Some(special_regex) = self
            .special_regex
            .as_ref()
            .filter(|_| !matches!(allowed, Allowed::None))
        else {
            return self.encode_ordinary_into(text, out, cache);
        };
        let mut start = 0;
        let mut search_from = 0;
        while let Some(m) = special_regex.find(&text[search_from..]) {
            let (s, e) = (search_from + m.start(), search_from + m.end());
            let found = &text[s..e];
            let ok = match allowed {
                Allowed::All => true,
                Allowed::Some(set) => set.contains(found),
                Allowed::None => false,
            };
            if ok {
                self.encode_ordinary_into(&text[start..s], out, cache);
                out.push(self.specials[found]);
                start = e;
                search_from = e;
            } else {
                search_from = s + text[s..].chars().next().map_or(1, char::len_utf8);
            }
        }
        self.encode_ordinary_into(&text[start..], out, cache);
    }

    /// Encodes many texts on every core (see `encode_batch_threads`).
    pub fn encode_batch<T: AsRef<str> + Sync>(&self, texts: &[T], allowed: &Allowed) -> Vec<Vec<Rank>> {
        self.encode_batch_threads(texts, allowed, None)
    }

    /// `encode_batch` on `threads` threads, the caller among them (`None`: every core).
    pub fn encode_batch_threads<T: AsRef<str> + Sync>(
        &self,
        texts: &[T],
        allowed: &Allowed,
        threads: Option<usize>,
    ) -> Vec<Vec<Rank>> {
        let mut out: Vec<Vec<Rank>> = vec![Vec::new(); texts.len()];
        self.encode_batch_each(texts, allowed, threads, |first, ids| {
            for (slot, ids) in out[first..].iter_mut().zip(ids) {
                *slot = ids;
            }
        });
        out
    }

    /// `encode_batch_threads`, handing the ids of consecutive texts from `first` on to
    /// `take(first, ids)` on the calling thread as soon as it is free, in the order they
    /// finish: work the caller must do alone (Python's lists) overlaps the helpers' encoding.
    pub fn encode_batch_each<T: AsRef<str> + Sync>(
        &self,
        texts: &[T],
        allowed: &Allowed,
        threads: Option<usize>,
        mut take: impl FnMut(usize, Vec<Vec<Rank>>),
    ) {
        self.in_runs(
            texts.len(),
            threads,
            |run, cache| {
                let first = run.start;
                let ids = texts[run]
                    .iter()
                    .map(|text| {
                        let mut out = Vec::with_capacity(text.as_ref().len() / 3);
                        self.encode_into(text.as_ref(), allowed, &mut out, cache);
                        out
                    })
                    .collect::<Vec<_>>();
                (first, ids)
            },
            |(first, ids)| take(first, ids),
        );
    }

    /// Encodes `texts` as ordinary text on `threads` threads (`None`: every core) into one
    /// stream in order, with `eot` after each text whose `ends` flag is set (a text may be
    /// part of a longer document).
    pub fn encode_documents<T: AsRef<str> + Sync>(
        &self,
        texts: &[T],
        ends: &[bool],
        eot: Option<Rank>,
        threads: Option<usize>,
    ) -> Vec<Rank> {
        let mut parts = Vec::new();
        self.in_runs(
            texts.len(),
            threads,
            |run, cache| {
                let mut out = Vec::with_capacity(texts[run.clone()].iter().map(|t| t.as_ref().len() / 3).sum());
                for (text, &end) in texts[run.clone()].iter().zip(&ends[run.clone()]) {
                    self.encode_ordinary_into(text.as_ref(), &mut out, cache);
                    if let (true, Some(eot)) = (end, eot) {
                        out.push(eot);
                    }
                }
                (run.start, out)
            },
            |part| parts.push(part),
        );
        // Runs come back in the order they finish.
        parts.sort_unstable_by_key(|&(start, _)| start);
        parts.into_iter().flat_map(|(_, ids)| ids).collect()
    }

    /// `encode(run, cache)` over consecutive runs of `0..n`, each result handed to `take` on
    /// the calling thread as soon as it is free (in the order the runs finish). On one
    /// thread, one run with the caller's own word cache, which keeps what the texts add. On
    /// more, runs that shrink toward the end (`run_starts`), claimed in turn by the caller
    /// and the helpers of `workers`; each run's cache reads the caller's word cache
    /// (`BatchCache`) behind its own. A thread's runs reuse one cache and one set of
    /// buffers (`MergeCache::open`), so many short texts cost little more than one long one.
    fn in_runs<R: Send>(
        &self,
        n: usize,
        threads: Option<usize>,
        encode: impl Fn(std::ops::Range<usize>, &mut MergeCache) -> R + Sync,
        mut take: impl FnMut(R),
    ) {
        let threads = crate::workers::resolve(threads);
        if threads <= 1 || n <= 1 {
            let mut cache = MergeCache::open(self.id, None);
            let out = encode(0..n, &mut cache);
            cache.close(self.id);
            return take(out);
        }
        let starts = run_starts(n, threads);
        let batch = BatchCache::new(self.id);
        crate::workers::map_into(
            threads,
            starts.len() - 1,
            |i| {
                let mut cache = MergeCache::open(self.id, Some(&batch));
                let out = encode(starts[i]..starts[i + 1], &mut cache);
                cache.close(self.id);
                out
            },
            |_, out| take(out),
        );
        batch.close(self.id);
    }

    /// Encodes each non-empty line of `block` (without its line ending) as a document,
    /// followed by `eot`. Returns the ids and the number of documents.
    pub fn encode_lines(&self, block: &str, eot: Option<Rank>, threads: Option<usize>) -> (Vec<Rank>, usize) {
        let lines: Vec<&str> = block
            .split('\n')
            .map(|line| line.trim_end_matches(['\r', '\n']))
            .filter(|line| !line.is_empty())
            .collect();
        let ends = vec![true; lines.len()];
        (self.encode_documents(&lines, &ends, eot, threads), lines.len())
    }

    /// The special tokens whose text occurs in `text` (for the caller's disallowed check).
    pub fn find_special<'t>(&self, text: &'t str) -> Option<&'t str> {
        self.special_regex.as_ref()?.find(text).map(|m| &text[m.range()])
    }

    /// BPE on a piece of more than `SCAN_LIMIT` bytes: the scan where its whole characters
    /// make it `SCAN_LIMIT` symbols or fewer, else linear-time backtracking where the
    /// vocabulary allows it, else the heap.
    fn merge_long(&self, piece: &[u8], out: &mut Vec<Rank>) {
        // Up to `SCAN_LIMIT` symbols when started from whole characters: the scan.
        if let Some(atoms) = &self.atoms {
            if piece.len() <= 3 * SCAN_LIMIT && !piece.is_ascii() {
                let mut scan = Scan::<SCAN_LIMIT>::blank();
                if scan.reset(self, piece, Some(atoms)) {
                    return scan.run(self, NONE, out);
                }
            }
        }
        if !self
            .long_pieces
            .as_ref()
            .is_some_and(|long| self.merge_in_parts(long, piece, out) || long.encode(self, piece, out))
        {
            self.merge(piece, NONE, out);
        }
    }

    /// BPE on a long piece cut into parts of up to `PART` bytes (`part_end`), merged in
    /// lockstep (their lookups overlap, where the backtracking walk waits on each in turn)
    /// and then joined. A run of whitespace or punctuation (a line of dashes), or a piece
    /// whose tokens turn out long (one letter repeated), is left to the walk, which finds
    /// a long token in one step where parts merge it byte by byte. False, with `out` as it
    /// was, where the walk should take the piece.
    fn merge_in_parts(&self, long: &LongPieces, piece: &[u8], out: &mut Vec<Rank>) -> bool {
        // A piece's first byte may be a space or a mark before its letters.
        if piece[1].is_ascii() && !piece[1].is_ascii_alphanumeric() {
            return false;
        }
        let base = out.len();
        let blank = NewWord {
            key: (),
            scan: Scan::<PART>::blank(),
            at: 0,
        };
        let mut parts = [blank; PARTS_AT_ONCE];
        let mut ends = [0; PARTS_AT_ONCE];
        let mut window = Vec::new();
        let mut at = 0;
        while at < piece.len() {
            let (start, mut end, mut n) = (at, at, 0);
            while n < PARTS_AT_ONCE && end < piece.len() {
                let from = end;
                end = part_end(piece, from);
                parts[n].scan.reset(self, &piece[from..end], None);
                ends[n] = end;
                n += 1;
            }
            self.merge_words(&mut parts[..n], u64::MAX >> (64 - n));
            // Each cut's check is a chain of lookups: its first ones are fetched for all
            // the cuts at once (cl100k's random letters about 10% faster).
            for pair in parts[..n].windows(2) {
                long.prefetch_compatible(pair[0].ids()[pair[0].scan.n - 1], pair[1].ids()[0]);
            }
            let before = out.len();
            for (part, &end) in parts[..n].iter().zip(&ends) {
                if !self.join(long, piece, (base, at), part.ids(), &mut window, out) {
                    out.truncate(base);
                    return false;
                }
                at = end;
            }
            if (out.len() - before) * LONG_TOKEN < at - start && at < piece.len() {
                // The walk appends in place; only where its first token does not fit the
                // last part's is it taken out again to be joined.
                let mid = out.len();
                let joined = long.encode(self, &piece[at..], out)
                    && (long.compatible_at_cut(self, out[mid - 1], out[mid]) || {
                        let rest = out.split_off(mid);
                        self.join(long, piece, (base, at), &rest, &mut window, out)
                    });
                if !joined {
                    out.truncate(base);
                }
                return joined;
            }
        }
        true
    }

    /// Appends `ids`, the BPE of a part of `piece` that starts at byte `at`, to `out`, which
    /// from `base` holds the BPE of `piece[..at]`. Where the tokens on the two sides of the
    /// cut are compatible (encoding their bytes alone gives them back), every two
    /// neighbours of the whole are, so it is the BPE of `piece[..at]` and the part (see
    /// `backtrack`). Elsewhere the tokens next to the cut are merged again as one window,
    /// widened on whichever side is not compatible with its neighbour until both are.
    /// False where the window would pass `SCAN_LIMIT` bytes.
    fn join(
        &self,
        long: &LongPieces,
        piece: &[u8],
        (base, at): (usize, usize),
        ids: &[Rank],
        window: &mut Vec<Rank>,
        out: &mut Vec<Rank>,
    ) -> bool {
        match out[base..].last() {
            Some(&last) if !long.compatible_at_cut(self, last, ids[0]) => {}
            _ => {
                out.extend_from_slice(ids);
                return true;
            }
        }
        let (mut back, mut ahead) = (1, 1);
        loop {
            let kept = out.len() - back;
            let start = at - out[kept..].iter().map(|&t| long.token_len(t)).sum::<usize>();
            let end = at + ids[..ahead].iter().map(|&t| long.token_len(t)).sum::<usize>();
            if end - start > SCAN_LIMIT {
                return false;
            }
            window.clear();
            self.merge(&piece[start..end], NONE, window);
            let left = kept == base || long.compatible_at_cut(self, out[kept - 1], window[0]);
            let right = ahead == ids.len() || long.compatible_at_cut(self, window[window.len() - 1], ids[ahead]);
            if left && right {
                out.truncate(kept);
                out.extend_from_slice(window);
                out.extend_from_slice(&ids[ahead..]);
                return true;
            }
            if !left {
                back = (2 * back).min(out.len() - base);
            }
            if !right {
                ahead = (2 * ahead).min(ids.len());
            }
        }
    }

    /// The two tokens whose merge makes `id` (whose bytes are `bytes`) when BPE runs on
    /// its own bytes with lower ranks only; `None` for a token that BPE cannot reach.
    pub(crate) fn split_of(&self, bytes: &[u8], id: Rank) -> Option<(Rank, Rank)> {
        let mut parts = Vec::with_capacity(2);
        self.merge(bytes, id, &mut parts);
        match parts[..] {
            [a, b] if self.lookup(a, b, NONE).is_some_and(|m| m.id == id) => Some((a, b)),
            _ => None,
        }
    }

    /// The priority of merging `a` and `b`, if they merge.
    #[inline]
    pub(crate) fn merge_rank(&self, a: Rank, b: Rank) -> Option<u32> {
        Some(self.pair(a, b).priority).filter(|&p| p != NONE)
    }

    /// The id of the token whose bytes are `piece`, if there is one.
    #[inline]
    pub(crate) fn token_id(&self, piece: &[u8]) -> Option<Rank> {
        self.tokens.id(piece)
    }

    /// BPE on `piece` using merges of priority below `limit`.
    fn merge(&self, piece: &[u8], limit: u32, out: &mut Vec<Rank>) {
        match piece.len() {
            0 => {}
            1 => out.push(self.byte_ids[piece[0] as usize]),
            n if n <= SCAN_LIMIT => self.merge_scan(piece, limit, out),
            _ => self.merge_heap(piece, limit, out),
        }
    }

    #[inline]
    fn lookup(&self, a: Rank, b: Rank, limit: u32) -> Option<Merge> {
        Some(self.pair(a, b)).filter(|m| m.priority < limit)
    }

    fn merge_scan(&self, piece: &[u8], limit: u32, out: &mut Vec<Rank>) {
        // Atoms hold only with every merge allowed (and an ASCII piece has none).
        let atoms = self.atoms.as_ref().filter(|_| limit == NONE && !piece.is_ascii());
        Scan::<SCAN_LIMIT>::new(self, piece, atoms).run(self, limit, out)
    }

    fn merge_heap(&self, piece: &[u8], limit: u32, out: &mut Vec<Rank>) {
        let n = piece.len();
        let mut ids: Vec<Rank> = piece.iter().map(|&b| self.byte_ids[b as usize]).collect();
        let mut next: Vec<u32> = (1..=n as u32).collect();
        let mut prev: Vec<u32> = (0..n as u32).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        // Entries are (priority, position): the heap's order is the scan's order.
        let mut heap: BinaryHeap<Reverse<u64>> = BinaryHeap::with_capacity(n);
        let entry = |p: u32, i: usize| Reverse(((p as u64) << 32) | i as u64);
        for i in 0..n - 1 {
            if let Some(m) = self.lookup(ids[i], ids[i + 1], limit) {
                heap.push(entry(m.priority, i));
            }
        }
        while let Some(Reverse(key)) = heap.pop() {
            let (p, i) = ((key >> 32) as u32, (key & 0xffff_ffff) as usize);
            let j = next[i] as usize;
            if !alive[i] || j >= n {
                continue;
            }
            // Stale if either side changed since this entry was pushed.
            let Some(m) = self.lookup(ids[i], ids[j], limit).filter(|m| m.priority == p) else {
                continue;
            };
            ids[i] = m.id;
            alive[j] = false;
            next[i] = next[j];
            if (next[i] as usize) < n {
                prev[next[i] as usize] = i as u32;
            }
            let before = prev[i];
            if before != NONE {
                if let Some(m) = self.lookup(ids[before as usize], ids[i], limit) {
                    heap.push(entry(m.priority, before as usize));
                }
            }
            if (next[i] as usize) < n {
                if let Some(m) = self.lookup(ids[i], ids[next[i] as usize], limit) {
                    heap.push(entry(m.priority, i));
                }
            }
        }
        let mut i = 0;
        while i < n {
            out.push(ids[i]);
            i = next[i] as usize;
        }
    }

    /// The bytes of `ids` concatenated; an id outside the vocabulary is an error naming it.
    pub fn decode_bytes(&self, ids: &[Rank]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpe::TestRng;

    #[test]
    fn ascii_keys() {
        for piece in ["abc", "0123456789abcde", "\x7f\x7f\x7f"] {
            assert!(key_is_ascii(word_key(piece.as_bytes()).unwrap()), "{piece:?}");
        }
        for piece in ["caf\u{e9}", "\u{e9}ab", "abcdefghijklm\u{e9}", "\u{4e2d}"] {
            assert!(!key_is_ascii(word_key(piece.as_bytes()).unwrap()), "{piece:?}");
        }
    }

    /// 256 bytes plus merges a+b, ab+c, b+c, a+a, aa+aa, in that rank order.
    fn tiny() -> Encoder {
        let mut ranks: Vec<(Vec<u8>, Rank)> = (0..=255u8).map(|b| (vec![b], b as Rank)).collect();
        for (i, t) in ["ab", "abc", "bc", "aa", "aaaa"].iter().enumerate() {
            ranks.push((t.as_bytes().to_vec(), 256 + i as Rank));
        }
        Encoder::from_ranks(ranks, "gpt2", vec![("<|eot|>".into(), 300)]).unwrap()
    }

    /// A whole-piece lookup, else the merge, equals the naive all-pairs merge.
    fn assert_merge_is_naive(enc: &Encoder, piece: &[u8]) {
        let mut ours = Vec::new();
        match enc.token_id(piece) {
            Some(id) => ours.push(id),
            None => enc.merge(piece, NONE, &mut ours),
        }
        assert_eq!(ours, naive(enc, piece), "piece {:?}", String::from_utf8_lossy(piece));
    }

    /// tiktoken's algorithm, transcribed naively: merge the lowest-ranked adjacent pair of
    /// byte ranges, leftmost first, until no concatenation is in the vocabulary.
    fn naive(enc: &Encoder, piece: &[u8]) -> Vec<Rank> {
        match enc.token_id(piece) {
            Some(id) => vec![id],
            None => naive_merge(enc, piece),
        }
    }

    /// `naive` without the whole-piece lookup: BPE on the bytes alone, as parts get.
    fn naive_merge(enc: &Encoder, piece: &[u8]) -> Vec<Rank> {
        let mut parts: Vec<Vec<u8>> = piece.iter().map(|&b| vec![b]).collect();
        loop {
            let best = (0..parts.len().saturating_sub(1))
                .filter_map(|i| {
                    enc.token_id(&[parts[i].clone(), parts[i + 1].clone()].concat())
                        .map(|r| (r, i))
                })
                .min();
            let Some((_, i)) = best else { break };
            let right = parts.remove(i + 1);
            parts[i].extend(right);
        }
        parts.iter().map(|p| enc.token_id(p).unwrap()).collect()
    }

    #[test]
    fn a_dropped_encoder_takes_this_threads_word_cache_with_it() {
        let enc = tiny();
        let id = enc.id;
        enc.encode_ordinary("abcx bcxa cxab xabc abcxabc bcabcx");
        let cache = WordCache::try_take(id).expect("the call left a cache");
        assert!(cache.len() > 0);
        cache.put_back(id);
        drop(enc);
        assert!(WordCache::try_take(id).is_none());
    }

    #[test]
    fn batch_runs_cover_every_text_once_and_shrink() {
        for threads in 1..6 {
            for n in 0..200 {
                let starts = run_starts(n, threads);
                assert_eq!((starts[0], *starts.last().unwrap()), (0, n));
                let sizes: Vec<usize> = starts.windows(2).map(|w| w[1] - w[0]).collect();
                assert!(sizes.iter().all(|&size| size > 0), "{n} on {threads}: {starts:?}");
                assert!(sizes.windows(2).all(|w| w[1] <= w[0]), "{n} on {threads}: {sizes:?}");
                assert!(
                    sizes.last().is_none_or(|&last| last <= 1 + n / 64),
                    "{n} on {threads}: {sizes:?}"
                );
            }
        }
    }

    #[test]
    fn merges_follow_ranks() {
        let enc = tiny();
        assert_eq!(enc.encode_ordinary("abc"), vec![257]);
        assert_eq!(enc.encode_ordinary("abcab"), vec![257, 256]);
        assert_eq!(enc.encode_ordinary("aaaaa"), vec![260, 97]);
    }

    #[test]
    fn scan_and_heap_agree_with_the_naive_merge() {
        let enc = tiny();
        let mut rng = TestRng(12345);
        for len in [2usize, 5, 17, 63, 64, 65, 200, 1000] {
            for _ in 0..20 {
                let piece = rng.bytes(len, b"aabc");
                assert_merge_is_naive(&enc, &piece);
            }
        }
    }

    /// Only each token's own split is kept as a merge; on random vocabularies (each token
    /// two earlier ones joined, so many tokens have several splits, some made only
    /// through a later part, some unreachable) the scan and the heap still equal the naive
    /// merge over every pair. (The backtracking walk assumes a trained vocabulary.)
    #[test]
    fn own_splits_alone_give_the_naive_merge() {
        let mut rng = TestRng(2024);
        let mut next = |m: usize| rng.below(m);
        for _ in 0..20 {
            let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
            let alphabet = b"abcd";
            let mut known: FxHashSet<Vec<u8>> = tokens.iter().cloned().collect();
            while tokens.len() < 256 + 60 {
                let pick = |k: usize| {
                    if k < 4 {
                        vec![alphabet[k]]
                    } else {
                        tokens[256 + k - 4].clone()
                    }
                };
                let (x, y) = (next(tokens.len() - 252), next(tokens.len() - 252));
                let joined = [pick(x), pick(y)].concat();
                if joined.len() <= 8 && known.insert(joined.clone()) {
                    tokens.push(joined);
                }
            }
            let pairs = (256..tokens.len())
                .flat_map(|t| (1..tokens[t].len()).map(move |k| (t, k)))
                .filter(|&(t, k)| known.contains(&tokens[t][..k]) && known.contains(&tokens[t][k..]))
                .count();
            let ranks = tokens.into_iter().enumerate().map(|(i, t)| (t, i as Rank)).collect();
            let enc = Encoder::from_ranks(ranks, "gpt2", vec![]).unwrap();
            assert!(enc.merges.len() < pairs, "only own splits are kept");
            for len in [2usize, 3, 5, 9, 20, 64, 100] {
                for _ in 0..30 {
                    let piece: Vec<u8> = (0..len).map(|_| alphabet[next(4)]).collect();
                    assert_merge_is_naive(&enc, &piece);
                }
            }
        }
    }

    /// New words are merged in lockstep, many at a time, and their ids put in place after
    /// the pieces that follow them: the ids equal the naive merge of each piece in turn,
    /// with words of up to 15 bytes and longer ones interleaved, words seen twice before
    /// their merge, more new words of either kind than one round holds, and a batch's
    /// workers sharing what they merged.
    #[test]
    fn words_merged_together_equal_each_merged_alone() {
        let enc = tiny();
        let mut rng = TestRng(31);
        let mut words: Vec<String> = (0..6 * PENDING_WORDS)
            .map(|i| {
                let len = if i % 2 == 0 {
                    2 + rng.below(14)
                } else {
                    16 + rng.below(SCAN_LIMIT - 15)
                };
                String::from_utf8(rng.bytes(len, b"aabc")).unwrap()
            })
            .collect();
        words.push("ab".repeat(40));
        let texts: Vec<String> = (0..8)
            .map(|_| {
                (0..200)
                    .map(|_| words[rng.below(words.len())].as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let expect = |text: &str| {
            let mut ids = Vec::new();
            enc.splitter()
                .for_each_piece(text, |piece| ids.extend(naive(&enc, piece.as_bytes())));
            ids
        };
        for text in &texts {
            assert_eq!(enc.encode_ordinary(text), expect(text));
        }
        let batch = enc.encode_batch_threads(&texts, &Allowed::None, Some(2));
        for (text, ids) in texts.iter().zip(batch) {
            assert_eq!(ids, expect(text));
        }
    }

    /// The characters of `char_vocabulary`: ASCII, 2 and 3 bytes.
    const CHARS: [&str; 6] = ["a", "é", "ж", "ё", "中", "文"];

    /// A random vocabulary of 60 tokens over `CHARS`, joining whole characters, their
    /// bytes and parts of them (tokens that start or end inside a character) in random
    /// rank order.
    fn char_vocabulary(rng: &mut TestRng) -> Encoder {
        let bytes: Vec<u8> = CHARS.concat().into_bytes();
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let mut known: FxHashSet<Vec<u8>> = tokens.iter().cloned().collect();
        while tokens.len() < 256 + 60 {
            let pick = |k: usize| match k {
                _ if k < bytes.len() => vec![bytes[k]],
                _ if k < bytes.len() + CHARS.len() => CHARS[k - bytes.len()].as_bytes().to_vec(),
                _ => tokens[256 + k - bytes.len() - CHARS.len()].clone(),
            };
            let choices = bytes.len() + CHARS.len() + tokens.len() - 256;
            let first = pick(rng.below(choices));
            let joined = match rng.below(4) {
                0 => first,
                _ => [first, pick(rng.below(choices))].concat(),
            };
            if joined.len() >= 2 && joined.len() <= 9 && known.insert(joined.clone()) {
                tokens.push(joined);
            }
        }
        let ranks = tokens.into_iter().enumerate().map(|(i, t)| (t, i as Rank)).collect();
        Encoder::from_ranks(ranks, "gpt2", vec![]).unwrap()
    }

    /// Pieces of three and four bytes skip the word cache and the merge loop
    /// (`merge_three`, `encode_four`): every such piece made of `CHARS`, "b" and "c" (ties
    /// of one pair twice, as in "aaa" and "abab", and the bytes of one character included)
    /// encodes as the naive merge, on `tiny` and on random vocabularies.
    #[test]
    fn three_and_four_byte_pieces_equal_the_naive_merge() {
        let letters: Vec<&str> = CHARS.iter().copied().chain(["b", "c"]).collect();
        let (mut pieces, mut frontier) = (Vec::new(), vec![String::new()]);
        while !frontier.is_empty() {
            frontier = frontier
                .iter()
                .flat_map(|p| letters.iter().map(move |l| format!("{p}{l}")))
                .filter(|p| p.len() <= 4)
                .collect();
            pieces.extend(frontier.iter().filter(|p| p.len() >= 3).cloned());
        }
        assert!(pieces.len() > 200, "{} pieces", pieces.len());
        let mut rng = TestRng(3);
        let encoders: Vec<Encoder> = std::iter::once(tiny())
            .chain((0..20).map(|_| char_vocabulary(&mut rng)))
            .collect();
        for enc in &encoders {
            for piece in &pieces {
                assert_eq!(
                    enc.encode_ordinary(piece),
                    naive(enc, piece.as_bytes()),
                    "piece {piece:?}"
                );
            }
        }
    }

    /// Where most pieces are no tokens, the encoder asks `short_filter` before the
    /// vocabulary's table: on `tiny` and on random vocabularies (where some tokens are not
    /// what merging their bytes makes, so that only the lookup finds them), the filter
    /// holds every short token, and text of new words with tokens among them encodes as
    /// the naive merge.
    #[test]
    fn pieces_that_are_mostly_no_tokens_still_find_the_tokens() {
        let mut rng = TestRng(7);
        let encoders: Vec<Encoder> = std::iter::once(tiny())
            .chain((0..10).map(|_| char_vocabulary(&mut rng)))
            .collect();
        for enc in &encoders {
            for (key, _) in enc.tokens.short.iter() {
                assert!(enc.short_filter.may_hold(KeyTable::hash(key)), "{key:#x}");
            }
            let tokens: Vec<&str> = (0..enc.n_vocab() as Rank)
                .filter_map(|id| std::str::from_utf8(enc.token_bytes(id).ok()?).ok())
                .filter(|t| (3..=15).contains(&t.len()) && t.chars().all(char::is_alphabetic))
                .collect();
            let mut pieces = Vec::new();
            for i in 0..1000 {
                pieces.push(match i % 5 {
                    0 if !tokens.is_empty() => tokens[rng.below(tokens.len())].to_string(),
                    _ => (0..2 + rng.below(4)).map(|_| CHARS[rng.below(CHARS.len())]).collect(),
                });
            }
            // Digits between the words make pieces of their own, of one byte.
            let text = pieces.join("1");
            let mut cache = MergeCache::open(enc.id, None);
            let mut ours = Vec::new();
            enc.encode_ordinary_into(&text, &mut ours, &mut cache);
            assert!(cache.few_tokens, "the filter was not asked");
            cache.close(enc.id);
            let mut expected = Vec::new();
            for (i, piece) in pieces.iter().enumerate() {
                if i > 0 {
                    expected.push(enc.byte_ids[b'1' as usize]);
                }
                expected.extend(naive(enc, piece.as_bytes()));
            }
            assert_eq!(ours, expected);
        }
    }

    /// `Cuts` never cuts an edge that some token covers: on random vocabularies, every edge
    /// between two characters of random text (neither ASCII) is checked against every token
    /// that could cover it (by the bytes around it), and edges of both kinds are met.
    #[test]
    fn cuts_are_never_where_a_token_may_cover_the_edge() {
        let mut rng = TestRng(5);
        let (mut cut, mut covered) = (0, 0);
        for _ in 0..40 {
            let enc = char_vocabulary(&mut rng);
            let cuts = enc.cuts.as_ref().unwrap();
            let tokens: Vec<&[u8]> = enc.tokens.iter().map(|(t, _)| t).filter(|t| t.len() > 1).collect();
            let text: String = (0..400).map(|_| CHARS[rng.below(CHARS.len())]).collect();
            let bytes = text.as_bytes();
            let edges: Vec<usize> = text.char_indices().map(|(i, _)| i).skip(1).collect();
            for &e in &edges {
                let ((c1, _), (c2, _)) = (
                    next_char(bytes, text[..e].char_indices().last().unwrap().0),
                    next_char(bytes, e),
                );
                if c1.min(c2) < 0x80 {
                    continue; // never asked
                }
                let is_cut = cuts.cuts((c1, cuts.held(c1)), (c2, cuts.held(c2)), bytes[e - 1], bytes[e]);
                let is_covered = tokens
                    .iter()
                    .any(|t| (e.saturating_sub(t.len() - 1)..e).any(|i| i + t.len() > e && bytes[i..].starts_with(t)));
                let around = &bytes[e.saturating_sub(9)..(e + 9).min(bytes.len())];
                assert!(
                    !(is_cut && is_covered),
                    "cut at {e} ({around:?}) although a token covers it"
                );
                cut += is_cut as usize;
                covered += is_covered as usize;
            }
        }
        assert!(cut > 500 && covered > 1000, "{cut} cut, {covered} covered");
    }

    /// New words start from whole characters where `Atoms` allow, and are cut where `Cuts`
    /// allow. On random vocabularies over a few characters of 2 and 3 bytes (see
    /// `char_vocabulary`), the scan and the lockstep merge of new words equal the naive
    /// merge.
    #[test]
    fn words_started_from_whole_characters_equal_the_naive_merge() {
        let mut rng = TestRng(77);
        let (mut atoms, mut guarded) = (0, 0);
        for _ in 0..40 {
            let enc = char_vocabulary(&mut rng);
            if let Some(found) = &enc.atoms {
                (atoms, guarded) = (atoms + found.len(), guarded + found.guarded());
            }
            let word = |rng: &mut TestRng, n: usize| (0..n).map(|_| CHARS[rng.below(CHARS.len())]).collect::<String>();
            for n in [2, 3, 5, 8, 13, 21] {
                for _ in 0..20 {
                    let piece = word(&mut rng, n);
                    if piece.len() <= SCAN_LIMIT {
                        assert_merge_is_naive(&enc, piece.as_bytes());
                    }
                }
            }
            let text: Vec<String> = (0..300)
                .map(|_| {
                    let n = 1 + rng.below(20);
                    word(&mut rng, n)
                })
                .collect();
            let text = text.join(" ");
            let mut expect = Vec::new();
            enc.splitter()
                .for_each_piece(&text, |piece| expect.extend(naive(&enc, piece.as_bytes())));
            assert_eq!(enc.encode_ordinary(&text), expect);
            // The same merges in a shuffled priority order (Hugging Face's model), where a
            // merge with a character may come before the merges that form it.
            let mut list = enc.merges();
            for i in (1..list.len()).rev() {
                list.swap(i, rng.below(i + 1));
            }
            let vocab = enc.ranks().into_iter().map(|(b, id)| (b.to_vec(), id)).collect();
            let listed = Encoder::from_merges(vocab, list.clone(), "gpt2", vec![], false).unwrap();
            // Parts of one character of three bytes come from `char_ids`, in both models.
            for c in ["中", "文"] {
                let bytes: [u8; 3] = c.as_bytes().try_into().unwrap();
                let (mut ours, mut theirs) = (Vec::new(), Vec::new());
                assert!(enc.char_part(bytes, &mut ours) && listed.char_part(bytes, &mut theirs));
                assert_eq!(ours, naive_merge(&enc, &bytes));
                assert_eq!(theirs, naive_listed(&listed, &list, &bytes));
            }
            let mut expect = Vec::new();
            listed.splitter().for_each_piece(&text, |piece| {
                expect.extend(naive_listed(&listed, &list, piece.as_bytes()))
            });
            assert_eq!(listed.encode_ordinary(&text), expect);
        }
        // The vocabularies had atoms, some of them guarded by fragments.
        assert!(atoms > 40 && guarded > 10, "{atoms} atoms, {guarded} guarded");
    }

    /// BPE by an explicit merge list, naively: merge the adjacent pair that comes first in
    /// `list`, leftmost first, until none is in it.
    fn naive_listed(enc: &Encoder, list: &[(Rank, Rank)], piece: &[u8]) -> Vec<Rank> {
        let mut priority = FxHashMap::default();
        for (p, &pair) in list.iter().enumerate() {
            priority.entry(pair).or_insert(p);
        }
        let mut ids: Vec<Rank> = piece.iter().map(|&b| enc.byte_ids[b as usize]).collect();
        loop {
            let best = (0..ids.len().saturating_sub(1))
                .filter_map(|i| priority.get(&(ids[i], ids[i + 1])).map(|&p| (p, i)))
                .min();
            let Some((_, i)) = best else { return ids };
            let joined = [enc.token_bytes(ids[i]).unwrap(), enc.token_bytes(ids[i + 1]).unwrap()].concat();
            ids[i] = enc.token_id(&joined).unwrap();
            ids.remove(i + 1);
        }
    }

    #[test]
    fn backtracking_agrees_with_the_heap_merge() {
        let enc = tiny();
        let long = enc.long_pieces.as_ref().unwrap();
        let mut rng = TestRng(99);
        for len in [1usize, 2, 3, 10, 65, 300, 5000] {
            for alphabet in [&b"a"[..], b"ab", b"abc", b"aabcx"] {
                let piece = rng.bytes(len, alphabet);
                let (mut heap, mut backtracked) = (Vec::new(), Vec::new());
                enc.merge_heap(&piece, NONE, &mut heap);
                assert!(long.encode(&enc, &piece, &mut backtracked));
                assert_eq!(backtracked, heap, "piece {:?}", String::from_utf8_lossy(&piece));
            }
        }
    }

    /// `mid_key` tells apart pieces of 16 to 31 bytes that differ in any byte or in length
    /// (zero bytes included), and `mid_bytes` gives each piece back.
    #[test]
    fn mid_keys_name_pieces_of_16_to_31_bytes() {
        let mut rng = TestRng(11);
        let mut seen = FxHashMap::default();
        for _ in 0..3000 {
            let len = 16 + rng.below(16);
            let piece = rng.bytes(len, b"\0ab");
            let key = mid_key(&piece).unwrap();
            let (bytes, n) = mid_bytes(key);
            assert_eq!(&bytes[..n], &piece[..]);
            if let Some(other) = seen.insert(key, piece.clone()) {
                assert_eq!(other, piece, "two pieces share a key");
            }
        }
        assert!(seen.len() > 2000, "{} distinct pieces", seen.len());
        assert!(mid_key(&[b'a'; 15]).is_none() && mid_key(&[b'a'; 32]).is_none());
    }

    #[test]
    fn word_cache_hits_equal_misses_and_stay_bounded() {
        let enc = tiny();
        let mut rng = TestRng(7);
        let words: Vec<String> = (0..3000)
            .map(|_| {
                let state = rng.step();
                let len = 1 + (state >> 58) as usize % 40;
                (0..len)
                    .map(|i| ['a', 'b', 'c', 'x'][state.rotate_right((2 * i + 3) as u32) as usize % 4])
                    .collect()
            })
            .collect();
        let text = words.join(" ");
        let expected: Vec<Rank> = enc
            .splitter()
            .split(&text)
            .iter()
            .flat_map(|piece| naive(&enc, piece.as_bytes()))
            .collect();
        // A miss fills this thread's cache, a hit reads it; both give the naive merge.
        assert_eq!(enc.encode_ordinary(&text), expected);
        assert_eq!(enc.encode_ordinary(&text), expected);
        let cached = WordCache::take(enc.id, WORD_CACHE_PIECES);
        assert!(cached.len() > 100 && cached.len() <= WORD_CACHE_PIECES);
        cached.put_back(enc.id);
        // Another encoder on this thread keeps its own cache.
        let other = tiny();
        assert_eq!(other.encode_ordinary(&text), expected);
        assert_ne!(other.id, enc.id);
        // The cap: a full cache starts over instead of growing, so that the pieces met
        // after it filled are cached too.
        let mut full = WordCache::default();
        for i in 1..(WORD_CACHE_PIECES + 10) as u128 {
            full.insert(i, &[1, 2, 3]);
            full.insert_long(&[b'x'; 40], &[4, 5]);
            assert!(full.len() <= WORD_CACHE_PIECES && full.ids.len() <= WORD_CACHE_IDS);
            assert!(full.long_bytes <= WORD_CACHE_BYTES);
        }
        let (mut first, mut last) = (Vec::new(), Vec::new());
        assert!(!full.get(1, &mut first));
        assert!(full.get((WORD_CACHE_PIECES + 9) as u128, &mut last));
        assert_eq!(last, [1, 2, 3]);
        // Pieces of 16 to 31 bytes have a cap of their own.
        let mut mid = WordCache::default();
        let piece = |i: u64| [&i.to_le_bytes()[..], &[b'y'; 12]].concat();
        for i in 0..WORD_CACHE_MID as u64 + 10 {
            mid.insert_long(&piece(i), &[i as Rank, 7]);
            assert!(mid.mid.len() < WORD_CACHE_MID);
        }
        let (mut first, mut last) = (Vec::new(), Vec::new());
        assert!(!mid.get_long(&piece(0), &mut first));
        assert!(mid.get_long(&piece(WORD_CACHE_MID as u64 + 9), &mut last));
        assert_eq!(last, [WORD_CACHE_MID as Rank + 9, 7]);
        // Threads (as in encode_batch) each use their own cache and agree.
        let results: Vec<Vec<Vec<Rank>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..3)
                .map(|_| scope.spawn(|| (0..3).map(|_| enc.encode_ordinary(&text)).collect()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.iter().flatten().all(|ids| *ids == expected));
        let batch = enc.encode_batch(&[text.as_str(); 8], &Allowed::None);
        assert!(batch.iter().all(|ids| *ids == expected));
        // Workers of another pool read this thread's cache, which stays here.
        let batch = enc.encode_batch_threads(&[text.as_str(); 8], &Allowed::None, Some(2));
        assert!(batch.iter().all(|ids| *ids == expected));
        let mine = WordCache::take(enc.id, WORD_CACHE_PIECES);
        assert!(mine.len() > 100);
        mine.put_back(enc.id);
    }

    #[test]
    fn word_keys_read_in_place_equal_copied_ones() {
        let text = "héllo wörld, 12345\0\0 tail\u{1F600}xy".as_bytes();
        for start in 0..text.len() {
            for end in start..=text.len() {
                let piece = &text[start..end];
                assert_eq!(word_key_within(text, piece), word_key(piece), "{start}..{end}");
            }
        }
    }

    #[test]
    fn a_batch_starts_from_the_callers_word_cache() {
        let enc = tiny();
        // Documents that are each word of a few hundred, so workers meet each other's words
        // (and the caller's, for the first half) in every order.
        let words: Vec<String> = (0..600)
            .map(|i| {
                let letters: String = (0..6).map(|k| ['a', 'b', 'c', 'x'][i >> (2 * k) & 3]).collect();
                format!("x{letters}ab")
            })
            .collect();
        let docs: Vec<String> = (0..64).map(|d| words[d * 7 % 600..].join(" ")).collect();
        let expected: Vec<Vec<Rank>> = docs
            .iter()
            .map(|doc| {
                let pieces = enc.splitter().split(doc);
                pieces.iter().flat_map(|piece| naive(&enc, piece.as_bytes())).collect()
            })
            .collect();
        let fresh = tiny();
        fresh.encode_ordinary(&words[..300].join(" "));
        let warmed = WordCache::take(fresh.id, WORD_CACHE_PIECES);
        let known = warmed.len();
        warmed.put_back(fresh.id);
        for threads in [1, 2, 4] {
            assert_eq!(
                fresh.encode_batch_threads(&docs, &Allowed::None, Some(threads)),
                expected
            );
        }
        // The caller's cache keeps what its own runs met (on one thread, every run is its).
        let learned = WordCache::take(fresh.id, WORD_CACHE_PIECES);
        assert!(learned.len() > known, "{} <= {known}", learned.len());
        let mut merged = WordCache::default();
        merged.absorb(&learned);
        assert_eq!(merged.len(), learned.len());
        for (key, _) in learned.map.iter().take(50) {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            assert!(learned.get(key, &mut a) && merged.get(key, &mut b));
            assert_eq!(a, b);
        }
    }

    #[test]
    fn long_single_letter_runs() {
        let enc = tiny();
        let text = "a".repeat(1 << 20);
        let ids = enc.encode_ordinary(&text);
        assert_eq!(ids.len(), 1 << 18);
        assert!(ids.iter().all(|&id| id == 260));
    }

    #[test]
    fn special_tokens() {
        let enc = tiny();
        let allowed: FxHashSet<String> = ["<|eot|>".to_string()].into_iter().collect();
        assert_eq!(enc.encode("ab<|eot|>c", &Allowed::Some(&allowed)), vec![256, 300, 99]);
        assert_eq!(enc.encode("ab<|eot|>", &Allowed::All), vec![256, 300]);
        assert_eq!(enc.encode("<|eot|>", &Allowed::None).len(), 7);
        assert_eq!(enc.find_special("x <|eot|>"), Some("<|eot|>"));
        assert_eq!(enc.decode_bytes(&[256, 300]).unwrap(), b"ab<|eot|>");
        assert_eq!(enc.decode_bytes(&[299]), Err(Error::UnknownToken(299)));
        assert_eq!(enc.decode_bytes(&[1000]), Err(Error::UnknownToken(1000)));
    }

    #[test]
    fn documents_and_lines() {
        let enc = tiny();
        let texts = ["ab", "c", "abc"];
        assert_eq!(
            enc.encode_documents(&texts, &[true, false, true], Some(300), Some(2)),
            vec![256, 300, 99, 257, 300]
        );
        let (ids, docs) = enc.encode_lines("ab\r\n\n\nc\n", Some(300), Some(2));
        assert_eq!((ids, docs), (vec![256, 300, 99, 300], 2));
    }

    #[test]
    fn derived_merges_rebuild_the_same_encoder() {
        let enc = tiny();
        let vocab = enc.ranks().into_iter().map(|(b, r)| (b.to_vec(), r)).collect();
        let hf = Encoder::from_merges(vocab, enc.merges(), "gpt2", vec![], true).unwrap();
        for text in ["abcabc aaaaaaab", "bcabca aaa"] {
            assert_eq!(hf.encode_ordinary(text), enc.encode_ordinary(text));
        }
        assert!(hf.is_rank_ordered());
    }

    #[test]
    fn pieces_of_one_and_two_bytes() {
        let enc = tiny();
        // "ab" and "aa" are tokens, "ba" is not; spaces and punctuation are single bytes.
        assert_eq!(enc.encode_ordinary("ab"), vec![256]);
        assert_eq!(enc.encode_ordinary("aa ba b."), vec![259, 32, 98, 97, 32, 98, 46]);
        // An explicit merge list without the merge of "b" and "c": whole-piece lookup
        // (Hugging Face's `ignore_merges`) still finds the token "bc", plain BPE does not.
        let vocab: Vec<(Vec<u8>, Rank)> = enc.ranks().into_iter().map(|(b, r)| (b.to_vec(), r)).collect();
        let merges: Vec<(Rank, Rank)> = enc.merges().into_iter().filter(|&m| m != (98, 99)).collect();
        let lookup = Encoder::from_merges(vocab.clone(), merges.clone(), "gpt2", vec![], true).unwrap();
        let plain = Encoder::from_merges(vocab, merges, "gpt2", vec![], false).unwrap();
        assert_eq!(lookup.encode_ordinary("bc ab"), vec![258, 32, 256]);
        assert_eq!(plain.encode_ordinary("bc ab"), vec![98, 99, 32, 256]);
    }

    #[test]
    fn invalid_vocabularies_are_errors() {
        let mut sparse: Vec<(Vec<u8>, Rank)> = (0..=255u8).map(|b| (vec![b], b as Rank)).collect();
        sparse.push((b"ab".to_vec(), 4_000_000_000));
        let err = Encoder::from_ranks(sparse, "gpt2", vec![]).err().unwrap().to_string();
        assert!(
            err.contains("token id 4000000000 is far beyond the 257 tokens"),
            "{err}"
        );
        let no_bytes = Encoder::from_ranks(vec![(b"a".to_vec(), 0)], "gpt2", vec![]);
        assert!(no_bytes.err().unwrap().to_string().contains("single byte 0x00"));
        let mut ranks: Vec<(Vec<u8>, Rank)> = (0..=255u8).map(|b| (vec![b], b as Rank)).collect();
        ranks.push((b"a".to_vec(), 256));
        assert!(Encoder::from_ranks(ranks, "gpt2", vec![]).is_err());
    }
}
