//! Byte-level BPE training on word (pre-token) frequencies.
//!
//! Two phases:
//!
//! 1. [`WordCounter`] splits batches of text with a [`Splitter`] and counts each distinct
//!    piece ("word") on all cores: every rayon worker fills its own map, the maps are summed,
//!    and the batch total is added to the running counts. Counting is a sum, so the counts do
//!    not depend on the number of threads. The text is never held whole: callers stream it
//!    in batches. A cap on distinct words bounds memory; past it the rarest words are dropped
//!    (see [`WordCounter::prune`]).
//! 2. [`Merger`] learns the merges. Each distinct word is a sequence of token ids weighted
//!    by its count; pair counts are sums of those weights (u64, so a pair seen more than 2^32
//!    times is still exact). An index from each pair to the words holding it and a max-heap
//!    of pairs keyed by count make one merge cost only the words it touches: the counts of the
//!    pairs around each replaced occurrence are adjusted in place, pairs whose count grew are
//!    pushed again, and heap entries whose count went stale are refreshed when popped.
//!
//! **Tie rule**: the next merge is the pair with the highest count; among equal counts, the
//! pair with the lowest left id, then the lowest right id. Ids 0..=255 are the single bytes
//! in byte order, and each merge that makes new bytes gets the next id. The result is a
//! function of the word counts alone, whatever the thread count.
//!
//! Should a merge spell bytes that already are a token (`a·bc` after `ab·c`), it maps to
//! that token: it is kept in the merge list but takes no new id, as in Hugging Face's trainer. Training stops when the vocabulary is full or no pair is left.

use crate::error::{Error, Result};
use crate::split::Splitter;
use crate::Rank;
use rayon::prelude::*;
use regex_automata::meta::Regex;
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Counts of distinct pre-tokens over a stream of text batches.
pub struct WordCounter {
    splitter: Splitter,
    /// Special tokens' text: never part of a word (the text around each is split on its own).
    specials: Option<Regex>,
    words: FxHashMap<Box<[u8]>, u64>,
    max_words: usize,
    /// Distinct words dropped by pruning (a word dropped twice counts twice), and their
    /// occurrences.
    dropped_words: u64,
    dropped_occurrences: u64,
    total_words: u64,
}

impl WordCounter {
    /// `pattern` is a pattern name or a regex (see [`Splitter::new`]); text equal to one of
    /// `specials` is skipped; at most `max_words` distinct words are kept (0: no cap).
    pub fn new(pattern: &str, specials: &[String], max_words: usize) -> Result<Self> {
        let specials = if specials.is_empty() {
            None
        } else {
            let mut sorted: Vec<&String> = specials.iter().filter(|s| !s.is_empty()).collect();
            // Longest first, so a special token that contains another wins.
            sorted.sort_by_key(|s| Reverse(s.len()));
            let alternation: Vec<String> = sorted.iter().map(|s| regex_syntax::escape(s)).collect();
            Some(Regex::new(&alternation.join("|")).map_err(|e| Error::Pattern(e.to_string()))?)
        };
        Ok(WordCounter {
            splitter: Splitter::new(pattern)?,
            specials,
            words: FxHashMap::default(),
            max_words,
            dropped_words: 0,
            dropped_occurrences: 0,
            total_words: 0,
        })
    }

    /// Distinct words held now.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Word occurrences counted so far (dropped ones included).
    pub fn total_words(&self) -> u64 {
        self.total_words
    }

    /// (distinct words dropped by the cap, their occurrences).
    pub fn dropped(&self) -> (u64, u64) {
        (self.dropped_words, self.dropped_occurrences)
    }

    fn for_each_word<'t>(&self, text: &'t str, mut f: impl FnMut(&'t str)) {
        match &self.specials {
            None => self.splitter.for_each_piece(text, f),
            Some(regex) => {
                let mut start = 0;
                for m in regex.find_iter(text) {
                    self.splitter.for_each_piece(&text[start..m.start()], &mut f);
                    start = m.end();
                }
                self.splitter.for_each_piece(&text[start..], f);
            }
        }
    }

    /// Splits and counts `texts` on the current rayon pool (all cores by default).
    pub fn add_texts<S: AsRef<str> + Sync>(&mut self, texts: &[S]) {
        let batch = texts
            .par_iter()
            .fold(FxHashMap::<&str, u64>::default, |mut map, text| {
                self.for_each_word(text.as_ref(), |w| *map.entry(w).or_insert(0) += 1);
                map
            })
            .reduce(FxHashMap::default, |a, b| {
                let (mut big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
                for (w, n) in small {
                    *big.entry(w).or_insert(0) += n;
                }
                big
            });
        for (w, n) in batch {
            self.add_word(w.as_bytes(), n);
        }
        self.enforce_cap();
    }

    /// Adds `count` occurrences of one word (for callers that count elsewhere, and tests).
    pub fn add_word(&mut self, word: &[u8], count: u64) {
        if word.is_empty() || count == 0 {
            return;
        }
        self.total_words += count;
        match self.words.get_mut(word) {
            Some(n) => *n += count,
            None => {
                self.words.insert(word.into(), count);
            }
        }
    }

    /// When over the cap, prunes to 7/8 of it, so a stream at the cap prunes every few
    /// batches rather than after each one.
    fn enforce_cap(&mut self) {
        if self.max_words > 0 && self.words.len() > self.max_words {
            self.prune(self.max_words - self.max_words / 8);
        }
    }

    /// Keeps the `keep` most frequent words, ties broken by the words' bytes (the smaller
    /// stays), so the words kept are a function of the counts alone.
    pub fn prune(&mut self, keep: usize) {
        if self.words.len() <= keep {
            return;
        }
        let mut all: Vec<(Box<[u8]>, u64)> = std::mem::take(&mut self.words).into_iter().collect();
        let order = |a: &(Box<[u8]>, u64), b: &(Box<[u8]>, u64)| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0));
        if keep > 0 {
            all.select_nth_unstable_by(keep - 1, order);
        }
        for (_, n) in &all[keep..] {
            self.dropped_words += 1;
            self.dropped_occurrences += n;
        }
        all.truncate(keep);
        self.words = all.into_iter().collect();
    }

    /// Prunes to exactly the cap (done by `into_merger`; call it first to read `dropped`).
    pub fn apply_cap(&mut self) {
        if self.max_words > 0 {
            self.prune(self.max_words);
        }
    }

    /// Ends counting: enforces the cap exactly and starts merging towards `vocab_size`
    /// tokens, `n_specials` of which are reserved for special tokens (given the ids after the
    /// merges by the caller).
    pub fn into_merger(mut self, vocab_size: usize, n_specials: usize) -> Result<Merger> {
        check_vocab_size(vocab_size, n_specials)?;
        self.apply_cap();
        let words: Vec<(Box<[u8]>, u64)> = self.words.into_iter().collect();
        let merger = Merger::new(words, vocab_size - n_specials);
        crate::memory::release_free_memory();
        Ok(merger)
    }
}

/// The smallest vocabulary is the 256 bytes plus the special tokens.
pub fn check_vocab_size(vocab_size: usize, n_specials: usize) -> Result<()> {
    let minimum = 256 + n_specials;
    if vocab_size < minimum {
        return Err(Error::Invalid(format!(
            "vocab_size {vocab_size} is too small: the minimum is {minimum} (256 byte tokens + {n_specials} special tokens)"
        )));
    }
    Ok(())
}

#[inline]
fn pair_key(a: Rank, b: Rank) -> u64 {
    ((a as u64) << 32) | b as u64
}

#[inline]
fn unpair(key: u64) -> (Rank, Rank) {
    ((key >> 32) as Rank, key as Rank)
}

/// One learned merge: `left` and `right` make `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeRule {
    pub left: Rank,
    pub right: Rank,
    pub id: Rank,
}

/// The merge phase: words as id sequences, pair counts, the pair → words index and the heap.
pub struct Merger {
    /// Every word's symbols, back to back; a word shrinks in place as merges apply.
    symbols: Vec<Rank>,
    starts: Vec<usize>,
    lens: Vec<u32>,
    counts: Vec<u64>,
    pair_counts: FxHashMap<u64, u64>,
    /// The words that hold each pair (maybe also some that no longer do, and repeats).
    pair_words: FxHashMap<u64, Vec<u32>>,
    /// (count, pair) with the pair reversed so that, among equal counts, the lowest pops first.
    heap: BinaryHeap<(u64, Reverse<u64>)>,
    tokens: Vec<Vec<u8>>,
    token_ids: FxHashMap<Vec<u8>, Rank>,
    merges: Vec<MergeRule>,
    target_tokens: usize,
    finished: bool,
    /// Buffers reused by every merge.
    deltas: FxHashMap<u64, i64>,
    new_pairs: Vec<(u64, u32)>,
}

impl Merger {
    /// `words` with their counts (any order); merges until `target_tokens` tokens exist.
    pub fn new(words: Vec<(Box<[u8]>, u64)>, target_tokens: usize) -> Self {
        assert!(
            words.len() < u32::MAX as usize,
            "too many distinct words for one training run"
        );
        let total: usize = words.iter().map(|(w, _)| w.len()).sum();
        let mut symbols = Vec::with_capacity(total);
        let mut starts = Vec::with_capacity(words.len());
        let mut lens = Vec::with_capacity(words.len());
        let mut counts = Vec::with_capacity(words.len());
        for (w, n) in &words {
            starts.push(symbols.len());
            lens.push(w.len() as u32);
            counts.push(*n);
            symbols.extend(w.iter().map(|&b| b as Rank));
        }
        drop(words);

        // Pair counts and the index, on all cores; each worker covers a range of words.
        type Maps = (FxHashMap<u64, u64>, FxHashMap<u64, Vec<u32>>);
        let (pair_counts, pair_words) = (0..starts.len())
            .into_par_iter()
            .fold(Maps::default, |(mut pc, mut pw), i| {
                let word = &symbols[starts[i]..starts[i] + lens[i] as usize];
                for w in word.windows(2) {
                    let key = pair_key(w[0], w[1]);
                    *pc.entry(key).or_insert(0) += counts[i];
                    let list = pw.entry(key).or_default();
                    if list.last() != Some(&(i as u32)) {
                        list.push(i as u32);
                    }
                }
                (pc, pw)
            })
            .reduce(Maps::default, |a, b| {
                let ((mut pc, mut pw), (pc2, pw2)) = if a.0.len() >= b.0.len() { (a, b) } else { (b, a) };
                for (k, n) in pc2 {
                    *pc.entry(k).or_insert(0) += n;
                }
                for (k, mut list) in pw2 {
                    pw.entry(k).or_default().append(&mut list);
                }
                (pc, pw)
            });
        let heap: BinaryHeap<_> = pair_counts.iter().map(|(&k, &n)| (n, Reverse(k))).collect();

        let tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let token_ids = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as Rank)).collect();
        Merger {
            symbols,
            starts,
            lens,
            counts,
            pair_counts,
            pair_words,
            heap,
            tokens,
            token_ids,
            merges: Vec::new(),
            target_tokens: target_tokens.max(256),
            finished: false,
            deltas: FxHashMap::default(),
            new_pairs: Vec::new(),
        }
    }

    /// Tokens so far, by id: the 256 bytes, then one per merge that made new bytes.
    pub fn tokens(&self) -> &[Vec<u8>] {
        &self.tokens
    }

    /// Merges in the order learned.
    pub fn merges(&self) -> &[MergeRule] {
        &self.merges
    }

    /// Tokens the run aims for (without special tokens).
    pub fn target_tokens(&self) -> usize {
        self.target_tokens
    }

    /// Whether the vocabulary is full or no pair is left.
    pub fn is_finished(&self) -> bool {
        self.finished || self.tokens.len() >= self.target_tokens
    }

    /// Learns up to `max_new_tokens` more tokens (merges that only respell an existing token
    /// come free); returns how many were made.
    pub fn step(&mut self, max_new_tokens: usize) -> usize {
        let before = self.tokens.len();
        while !self.is_finished() && self.tokens.len() - before < max_new_tokens {
            if !self.merge_next() {
                self.finished = true;
            }
        }
        self.tokens.len() - before
    }

    /// Runs to the end (tests; Python steps with `step` to show progress).
    #[cfg(test)]
    pub fn run(&mut self) {
        self.step(usize::MAX);
    }

    /// The best pair by the tie rule, with stale heap entries refreshed on the way.
    fn pop_best(&mut self) -> Option<u64> {
        while let Some((count, Reverse(key))) = self.heap.pop() {
            let actual = self.pair_counts.get(&key).copied().unwrap_or(0);
            if actual == count {
                return Some(key);
            }
            // A pair's count falls as merges take its occurrences; rising counts were pushed
            // when they rose, so a lower stale entry is simply dropped.
            if actual > 0 && actual < count {
                self.heap.push((actual, Reverse(key)));
            }
        }
        None
    }

    fn merge_next(&mut self) -> bool {
        let Some(key) = self.pop_best() else {
            return false;
        };
        let (a, b) = unpair(key);
        let joined = [self.tokens[a as usize].as_slice(), self.tokens[b as usize].as_slice()].concat();
        let c = match self.token_ids.get(&joined) {
            Some(&id) => id,
            None => {
                let id = self.tokens.len() as Rank;
                self.token_ids.insert(joined.clone(), id);
                self.tokens.push(joined);
                id
            }
        };
        self.merges.push(MergeRule {
            left: a,
            right: b,
            id: c,
        });

        let mut words = self.pair_words.remove(&key).unwrap_or_default();
        words.sort_unstable();
        words.dedup();
        let mut deltas = std::mem::take(&mut self.deltas);
        let mut new_pairs = std::mem::take(&mut self.new_pairs);
        for &w in &words {
            let start = self.starts[w as usize];
            let len = self.lens[w as usize] as usize;
            let count = self.counts[w as usize] as i64;
            let s = &mut self.symbols[start..start + len];
            let (mut read, mut write) = (0, 0);
            while read < len {
                if read + 1 < len && s[read] == a && s[read + 1] == b {
                    if write > 0 {
                        let prev = s[write - 1];
                        *deltas.entry(pair_key(prev, a)).or_insert(0) -= count;
                        *deltas.entry(pair_key(prev, c)).or_insert(0) += count;
                        new_pairs.push((pair_key(prev, c), w));
                    }
                    if read + 2 < len {
                        let next = s[read + 2];
                        *deltas.entry(pair_key(b, next)).or_insert(0) -= count;
                        *deltas.entry(pair_key(c, next)).or_insert(0) += count;
                        new_pairs.push((pair_key(c, next), w));
                    }
                    s[write] = c;
                    read += 2;
                } else {
                    s[write] = s[read];
                    read += 1;
                }
                write += 1;
            }
            self.lens[w as usize] = write as u32;
        }
        // Every occurrence of the pair is gone (overlaps like `a a a` included).
        self.pair_counts.remove(&key);
        deltas.remove(&key);
        for (k, d) in deltas.drain() {
            if d == 0 {
                continue;
            }
            let entry = self.pair_counts.entry(k).or_insert(0);
            let updated = *entry as i128 + d as i128;
            debug_assert!(updated >= 0, "pair count went negative");
            *entry = updated as u64;
            if *entry == 0 {
                self.pair_counts.remove(&k);
            } else if d > 0 {
                // Grown (new) pairs get a fresh heap entry; shrunk ones are refreshed on pop.
                self.heap.push((*entry, Reverse(k)));
            }
        }
        for (k, w) in new_pairs.drain(..) {
            let list = self.pair_words.entry(k).or_default();
            if list.last() != Some(&w) {
                list.push(w);
            }
        }
        self.deltas = deltas;
        self.new_pairs = new_pairs;
        true
    }

    /// The tokens as (bytes, id) in id order: the rank list of a tiktoken vocabulary.
    #[cfg(test)]
    pub fn ranks(&self) -> Vec<(Vec<u8>, Rank)> {
        self.tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as Rank))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::with_threads;

    /// The tokens as (bytes, id) in id order, and the merges in the order learned.
    type Trained = (Vec<(Vec<u8>, Rank)>, Vec<MergeRule>);

    /// Trains on `texts` in one call: the whole pipeline that Python drives in steps.
    fn train<S: AsRef<str> + Sync>(
        texts: &[S],
        pattern: &str,
        vocab_size: usize,
        specials: &[String],
    ) -> Result<Trained> {
        check_vocab_size(vocab_size, specials.len())?;
        let mut counter = WordCounter::new(pattern, specials, 0)?;
        counter.add_texts(texts);
        let mut merger = counter.into_merger(vocab_size, specials.len())?;
        merger.run();
        Ok((merger.ranks(), merger.merges().to_vec()))
    }

    /// The obvious trainer: recount every pair before each merge.
    fn reference(words: &[(Vec<u8>, u64)], target: usize) -> (Vec<Vec<u8>>, Vec<MergeRule>) {
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let mut seqs: Vec<(Vec<Rank>, u64)> = words
            .iter()
            .map(|(w, n)| (w.iter().map(|&b| b as Rank).collect(), *n))
            .collect();
        let mut merges = Vec::new();
        while tokens.len() < target {
            let mut counts: std::collections::BTreeMap<(Rank, Rank), u64> = Default::default();
            for (s, n) in &seqs {
                for w in s.windows(2) {
                    *counts.entry((w[0], w[1])).or_insert(0) += n;
                }
            }
            let Some((&(a, b), _)) = counts.iter().max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0))) else {
                break;
            };
            let joined = [tokens[a as usize].clone(), tokens[b as usize].clone()].concat();
            let c = match tokens.iter().position(|t| *t == joined) {
                Some(i) => i as Rank,
                None => {
                    tokens.push(joined);
                    (tokens.len() - 1) as Rank
                }
            };
            merges.push(MergeRule {
                left: a,
                right: b,
                id: c,
            });
            for (s, _) in &mut seqs {
                let mut out = Vec::with_capacity(s.len());
                let mut i = 0;
                while i < s.len() {
                    if i + 1 < s.len() && s[i] == a && s[i + 1] == b {
                        out.push(c);
                        i += 2;
                    } else {
                        out.push(s[i]);
                        i += 1;
                    }
                }
                *s = out;
            }
        }
        (tokens, merges)
    }

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn random_words(seed: u64, n: usize, alphabet: &[u8]) -> Vec<(Vec<u8>, u64)> {
        let mut state = seed;
        let mut map: std::collections::BTreeMap<Vec<u8>, u64> = Default::default();
        for _ in 0..n {
            let len = 1 + (xorshift(&mut state) % 9) as usize;
            let word: Vec<u8> = (0..len)
                .map(|_| alphabet[(xorshift(&mut state) % alphabet.len() as u64) as usize])
                .collect();
            *map.entry(word).or_insert(0) += 1 + xorshift(&mut state) % 5;
        }
        map.into_iter().collect()
    }

    fn merger_of(words: &[(Vec<u8>, u64)], target: usize) -> Merger {
        let boxed = words.iter().map(|(w, n)| (w.clone().into_boxed_slice(), *n)).collect();
        let mut m = Merger::new(boxed, target);
        m.run();
        m
    }

    #[test]
    fn matches_the_reference_on_random_words() {
        for (seed, alphabet) in [(1u64, &b"ab"[..]), (2, b"abc"), (3, b"abcdefgh"), (4, b"aaab")] {
            let words = random_words(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), 400, alphabet);
            for target in [260, 300, 400] {
                let (tokens, merges) = reference(&words, target);
                let m = merger_of(&words, target);
                assert_eq!(m.merges(), &merges[..], "seed {seed} target {target}");
                assert_eq!(m.tokens(), &tokens[..]);
            }
        }
    }

    #[test]
    fn ties_go_to_the_lowest_pair() {
        // "ab" and "cd" both occur 3 times; (a, b) has the lower ids.
        let m = merger_of(&[(b"cd".to_vec(), 3), (b"ab".to_vec(), 3)], 257);
        assert_eq!(
            m.merges()[0],
            MergeRule {
                left: b'a' as Rank,
                right: b'b' as Rank,
                id: 256
            }
        );
        // Equal counts and left ids: the lower right id wins.
        let m = merger_of(&[(b"ac".to_vec(), 2), (b"ab".to_vec(), 2)], 257);
        assert_eq!(m.merges()[0].right, b'b' as Rank);
    }

    #[test]
    fn overlapping_pairs_merge_left_to_right() {
        let m = merger_of(&[(b"aaaaa".to_vec(), 1)], 258);
        // aaaaa: (a,a) -> [aa, aa, a]; then (aa, aa) and (aa, a) tie and the lower wins.
        assert_eq!(m.tokens()[256], b"aa");
        assert_eq!(m.tokens()[257], b"aaa");
    }

    #[test]
    fn counts_past_two_to_the_thirty_one() {
        // (x, y) occurs 3 * 2^31 times through one word's count; (a, b) 2^32 times in two words.
        let big = 3u64 << 31;
        let mut counter = WordCounter::new("gpt2", &[], 0).unwrap();
        counter.add_word(b"xy", big);
        counter.add_word(b"ab", 1 << 31);
        counter.add_word(b"abab", 1 << 30);
        counter.add_word(b"q", 1);
        let mut m = counter.into_merger(259, 0).unwrap();
        m.run();
        // (x, y): 3 * 2^31; (a, b): 2^31 + 2 * 2^30 = 2^32, less, so (x, y) is first.
        assert_eq!(m.tokens()[256], b"xy");
        assert_eq!(m.tokens()[257], b"ab");
        assert_eq!(m.tokens()[258], b"abab");
        let mut counter = WordCounter::new("gpt2", &[], 0).unwrap();
        counter.add_word(b"ab", 1 << 32);
        counter.add_word(b"xy", (1 << 32) - 1);
        let mut m = counter.into_merger(257, 0).unwrap();
        m.run();
        assert_eq!(m.tokens()[256], b"ab", "a count that wraps in 32 bits would lose");
    }

    fn sample_texts() -> Vec<String> {
        let mut state = 7u64;
        const WORDS: &[&str] = &[
            "the",
            " the",
            " cat",
            " sat",
            " on",
            " mat",
            "\n",
            "  ",
            " 123",
            "4567",
            "!",
            " ünïcode",
            " 你好",
            "'s",
            " don't",
            "\t",
            " a",
            " ab",
            " abc",
            " abcd",
        ];
        (0..200)
            .map(|_| {
                let n = 1 + xorshift(&mut state) % 60;
                (0..n)
                    .map(|_| WORDS[(xorshift(&mut state) % WORDS.len() as u64) as usize])
                    .collect()
            })
            .collect()
    }

    #[test]
    fn counting_does_not_depend_on_threads_or_batches() {
        let texts = sample_texts();
        let run = |threads: usize, batch: usize| {
            with_threads(Some(threads), || {
                let mut counter = WordCounter::new("cl100k", &[], 0).unwrap();
                for chunk in texts.chunks(batch) {
                    counter.add_texts(chunk);
                }
                let mut m = counter.into_merger(400, 0).unwrap();
                m.run();
                (m.ranks(), m.merges().to_vec())
            })
        };
        let one = run(1, 1000);
        assert_eq!(one, run(2, 1000));
        assert_eq!(one, run(2, 7));
        assert_eq!(one, run(3, 13));
    }

    #[test]
    fn words_match_the_reference_on_text() {
        let texts = sample_texts();
        let splitter = Splitter::new("cl100k").unwrap();
        let mut words: std::collections::BTreeMap<Vec<u8>, u64> = Default::default();
        for t in &texts {
            splitter.for_each_piece(t, |p| *words.entry(p.as_bytes().to_vec()).or_insert(0) += 1);
        }
        let words: Vec<_> = words.into_iter().collect();
        let (tokens, merges) = reference(&words, 350);
        let (ranks, ours) = train(&texts, "cl100k", 350, &[]).unwrap();
        assert_eq!(ours, merges);
        assert_eq!(ranks.into_iter().map(|(t, _)| t).collect::<Vec<_>>(), tokens);
    }

    #[test]
    fn special_tokens_are_not_trained_on() {
        let texts = ["ab<|endoftext|>ab<|endoftext|>ab".to_string()];
        let (ranks, _) = train(&texts, "gpt2", 300, &["<|endoftext|>".to_string()]).unwrap();
        assert!(
            ranks.iter().all(|(t, _)| !t.windows(2).any(|w| w == b"<|")),
            "{ranks:?}"
        );
        // 256 bytes + "ab", then no pair is left.
        assert_eq!(ranks.len(), 257);
    }

    #[test]
    fn the_cap_drops_the_rarest_words_deterministically() {
        let mut counter = WordCounter::new("gpt2", &[], 3).unwrap();
        for (w, n) in [("aa", 5), ("bb", 1), ("cc", 5), ("dd", 2), ("ee", 1)] {
            counter.add_word(w.as_bytes(), n);
        }
        counter.enforce_cap();
        // 5 words > 3: pruned to 3 - 3/8 = 3: aa, cc, dd stay.
        assert_eq!(counter.len(), 3);
        assert_eq!(counter.dropped(), (2, 2));
        let mut kept: Vec<_> = counter.words.keys().cloned().collect();
        kept.sort();
        assert_eq!(
            kept,
            vec![
                b"aa".to_vec().into_boxed_slice(),
                b"cc".to_vec().into(),
                b"dd".to_vec().into()
            ]
        );
        // Ties among the rarest: the smaller bytes stay.
        counter.prune(2);
        let mut kept: Vec<_> = counter.words.keys().cloned().collect();
        kept.sort();
        assert_eq!(kept, vec![b"aa".to_vec().into_boxed_slice(), b"cc".to_vec().into()]);
    }

    #[test]
    fn vocab_size_below_the_minimum_says_the_minimum() {
        let err = train(&["x"], "gpt2", 256, &["<|endoftext|>".to_string()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("minimum is 257"), "{err}");
        assert!(train(&["x"], "gpt2", 257, &["<|endoftext|>".to_string()]).is_ok());
    }

    #[test]
    fn steps_stop_at_the_target() {
        let texts = sample_texts();
        let mut counter = WordCounter::new("cl100k", &[], 0).unwrap();
        counter.add_texts(&texts);
        let mut m = counter.into_merger(300, 1).unwrap();
        let mut made = 0;
        while !m.is_finished() {
            made += m.step(10);
        }
        assert_eq!(made, 299 - 256);
        assert_eq!(m.tokens().len(), 299);
    }
}
