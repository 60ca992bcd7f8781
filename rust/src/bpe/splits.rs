//! Each token's own split, found at load without pricing every pair of the vocabulary.
//!
//! In tiktoken's model a token's rank is the priority of any merge that makes it. BPE on a
//! token's own bytes, with the merges ranked before it, ends in two parts whose merge is
//! the token, or in more (the token is unreachable that way). Going through the tokens in
//! rank order, the parts of every earlier token are known, so whether a candidate pair of
//! a token (a prefix and the rest, both tokens) is the one BPE ends in is the walk of
//! `backtrack::compatible` over the merges found so far: no merge across the two may come
//! first. Only the pairs that are some token's split enter the map, which is all the
//! encoder keeps (`Encoder::from_ranks` says why), plus every pair of a *late* token: one
//! its own bytes reach only through a part ranked after it (none in OpenAI's vocabularies).

use crate::bpe::backtrack::compatible;
use crate::bpe::encode::{pair_key as key, Encoder};
use crate::bpe::tokens::NO_TOKEN;
use crate::Rank;
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

const NONE: Rank = Rank::MAX;

/// What loading needs: each token's two parts ((id, id) for single bytes, NONE for ids
/// that BPE does not reach from their own bytes), the pairs the encoder keeps, and each
/// token's prefix pairs (`Tokens::prefix_pairs`).
pub(crate) struct Splits {
    pub(crate) parts: Vec<(Rank, Rank)>,
    /// Pair key (`pair_key`) → the token the pair makes, whose id is its priority.
    pub(crate) merges: FxHashMap<u64, Rank>,
    pub(crate) prefixes: PrefixPairs,
}

/// Every token's prefix pairs (`Tokens::prefix_pairs`), by id.
pub(crate) struct PrefixPairs {
    /// Token `id`'s are `pairs[starts[id]..starts[id + 1]]`.
    pairs: Vec<(Rank, Rank)>,
    starts: Vec<u32>,
}

impl PrefixPairs {
    /// Each token that is a proper prefix of token `id`, longest first, with the token
    /// that is the rest (`NO_TOKEN` if none).
    pub(crate) fn of(&self, id: Rank) -> &[(Rank, Rank)] {
        &self.pairs[self.starts[id as usize] as usize..self.starts[id as usize + 1] as usize]
    }
}

pub(crate) fn own_splits(encoder: &Encoder) -> Splits {
    let ranks = encoder.ranks();
    let mut splits = Splits {
        parts: Vec::new(),
        merges: FxHashMap::default(),
        prefixes: all_prefix_pairs(encoder, &ranks),
    };
    // Every pair of each late token found so far.
    let mut late_pairs = FxHashMap::default();
    let mut late_ids = FxHashSet::default();
    loop {
        splits.merges.clone_from(&late_pairs);
        splits.parts = splits_in_rank_order(encoder.n_vocab(), &ranks, &mut splits);
        // A late token is unreachable above, yet tiktoken's own algorithm makes it: all its
        // pairs join the map and the splits are found again with them (for vocabularies
        // not trained as BPE; a few rounds at most).
        let late: Vec<Rank> = ranks
            .par_iter()
            .filter(|&&(bytes, id)| {
                splits.parts[id as usize].0 == NONE
                    && bytes.len() > 1
                    && !late_ids.contains(&id)
                    && tiktoken_merge(encoder, bytes) == [id]
            })
            .map(|&(_, id)| id)
            .collect();
        if late.is_empty() {
            return splits;
        }
        for id in late {
            late_ids.insert(id);
            for &(a, b) in splits.prefixes.of(id) {
                if b != NO_TOKEN {
                    late_pairs.insert(key(a, b), id);
                }
            }
        }
    }
}

const CHUNK: usize = 4096;

/// Every token's prefix pairs, found in parallel chunks (hash lookups only) and laid out
/// by id.
fn all_prefix_pairs(encoder: &Encoder, ranks: &[(&[u8], Rank)]) -> PrefixPairs {
    let chunks: Vec<(Vec<_>, Vec<u32>)> = ranks
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut pairs = Vec::with_capacity(chunk.len() * 4);
            let counts = chunk
                .iter()
                .map(|&(bytes, _)| {
                    let before = pairs.len();
                    if bytes.len() > 1 {
                        encoder.tokens().prefix_pairs(bytes, &mut pairs);
                    }
                    (pairs.len() - before) as u32
                })
                .collect();
            (pairs, counts)
        })
        .collect();
    let mut starts = vec![0u32; encoder.n_vocab() + 1];
    let mut pairs = Vec::with_capacity(chunks.iter().map(|(p, _)| p.len()).sum());
    for ((chunk_pairs, counts), chunk) in chunks.into_iter().zip(ranks.chunks(CHUNK)) {
        pairs.extend_from_slice(&chunk_pairs);
        for (&(_, id), count) in chunk.iter().zip(counts) {
            starts[id as usize + 1] = count;
        }
    }
    // The chunks are in id order: counts by id summed up are the starts.
    for i in 0..encoder.n_vocab() {
        starts[i + 1] += starts[i];
    }
    PrefixPairs { pairs, starts }
}

/// One pass in rank order. `splits.merges` comes in holding the late tokens' pairs found
/// so far and goes out with every split added.
fn splits_in_rank_order(n: usize, ranks: &[(&[u8], Rank)], splits: &mut Splits) -> Vec<(Rank, Rank)> {
    let mut parts = vec![(NONE, NONE); n];
    for &(bytes, id) in ranks {
        if bytes.len() == 1 {
            parts[id as usize] = (id, id);
            continue;
        }
        let merges = &splits.merges;
        let reached = splits.prefixes.of(id).iter().copied().find(|&(a, b)| {
            a < id
                && b < id
                && parts[a as usize].0 != NONE
                && parts[b as usize].0 != NONE
                && compatible(
                    a,
                    b,
                    id,
                    |t| parts[t as usize],
                    |x, y, limit, _| merges.get(&key(x, y)).is_some_and(|&t| t < limit),
                )
        });
        if let Some((a, b)) = reached {
            parts[id as usize] = (a, b);
            splits.merges.insert(key(a, b), id);
        }
    }
    parts
}

/// tiktoken's algorithm on byte ranges, the reference for late tokens: merge the adjacent
/// pair whose concatenation has the lowest rank, leftmost first, while there is one.
fn tiktoken_merge(encoder: &Encoder, bytes: &[u8]) -> Vec<Rank> {
    let mut ends: Vec<usize> = (1..=bytes.len()).collect();
    loop {
        let best = (0..ends.len() - 1)
            .filter_map(|i| {
                let start = if i == 0 { 0 } else { ends[i - 1] };
                Some((encoder.token_id(&bytes[start..ends[i + 1]])?, i))
            })
            .min();
        let Some((_, i)) = best else { break };
        ends.remove(i);
    }
    let mut start = 0;
    ends.iter()
        .map(|&end| {
            let id = encoder.token_id(&bytes[start..end]).expect("every part is a token");
            start = end;
            id
        })
        .collect()
}
