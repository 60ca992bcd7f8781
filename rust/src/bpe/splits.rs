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
use crate::Rank;
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

const NONE: Rank = Rank::MAX;

/// What loading needs: each token's two parts, (id, id) for single bytes, NONE for ids
/// that BPE does not reach from their own bytes; and the pairs the encoder keeps.
pub(crate) struct Splits {
    pub(crate) parts: Vec<(Rank, Rank)>,
    /// Pair key (`pair_key`) → the token the pair makes, whose id is its priority.
    pub(crate) merges: FxHashMap<u64, Rank>,
}

pub(crate) fn own_splits(encoder: &Encoder) -> Splits {
    let ranks = encoder.ranks();
    // A token's candidates, each a prefix and the rest that are both earlier tokens: hash
    // lookups only, independent per token, so spread over the pool. Longest prefix first.
    let candidates: Vec<Vec<(Rank, Rank)>> = ranks
        .par_iter()
        .map(|&(bytes, id)| {
            (1..bytes.len())
                .rev()
                .filter_map(|k| {
                    let a = encoder.token_id(&bytes[..k]).filter(|&a| a < id)?;
                    let b = encoder.token_id(&bytes[k..]).filter(|&b| b < id)?;
                    Some((a, b))
                })
                .collect()
        })
        .collect();
    let mut merges = FxHashMap::default();
    let mut late_ids = FxHashSet::default();
    loop {
        let parts = splits_in_rank_order(encoder.n_vocab(), &ranks, &candidates, &mut merges);
        // A late token is unreachable above, yet tiktoken's own algorithm makes it: all its
        // pairs join the map and the splits are found again with them (for vocabularies
        // not trained as BPE; a few rounds at most).
        let late: Vec<(&[u8], Rank)> = ranks
            .par_iter()
            .filter(|&&(bytes, id)| {
                parts[id as usize].0 == NONE
                    && bytes.len() > 1
                    && !late_ids.contains(&id)
                    && tiktoken_merge(encoder, bytes) == [id]
            })
            .copied()
            .collect();
        if late.is_empty() {
            return Splits { parts, merges };
        }
        for (bytes, id) in late {
            late_ids.insert(id);
            for k in 1..bytes.len() {
                if let (Some(a), Some(b)) = (encoder.token_id(&bytes[..k]), encoder.token_id(&bytes[k..])) {
                    merges.insert(key(a, b), id);
                }
            }
        }
    }
}

/// One pass in rank order. `merges` comes in holding the late tokens' pairs found so far
/// and goes out with every split added.
fn splits_in_rank_order(
    n: usize,
    ranks: &[(&[u8], Rank)],
    candidates: &[Vec<(Rank, Rank)>],
    merges: &mut FxHashMap<u64, Rank>,
) -> Vec<(Rank, Rank)> {
    let mut parts = vec![(NONE, NONE); n];
    for (&(bytes, id), pairs) in ranks.iter().zip(candidates) {
        if bytes.len() == 1 {
            parts[id as usize] = (id, id);
            continue;
        }
        let reached = pairs.iter().copied().find(|&(a, b)| {
            parts[a as usize].0 != NONE
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
            merges.insert(key(a, b), id);
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
