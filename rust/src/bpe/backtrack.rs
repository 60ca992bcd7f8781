//! Linear-time BPE for long pieces (a megabyte of one letter is one piece).
//!
//! For a vocabulary where each token's rank exceeds the ranks of the two tokens it merges
//! (true of every trained BPE), the BPE encoding of a text is the one tokenization in which
//! every adjacent pair of tokens is *compatible*: encoding the two tokens' bytes alone
//! gives back those two tokens. It is found left to right by taking the longest token
//! that matches, and backing off to shorter prefixes (and, failing those, popping the
//! previous token) when a pair is not compatible; a bitmap of dead-end positions keeps
//! the whole walk linear. (The approach follows GitHub's `bpe` crate and its write-up;
//! the code here is our own.) Tests check it against the heap-based merge.

use crate::bpe::encode::Encoder;
use crate::Rank;
use rayon::prelude::*;

const NONE: u32 = u32::MAX;

/// A byte trie of the tokens BPE can produce, for longest-prefix matches.
struct Trie {
    /// Per node: its token (NONE if none) and the range of its edges in `edges`.
    nodes: Vec<(Rank, u32, u32)>,
    /// Edge labels and children; each node's edges sorted by byte.
    edge_bytes: Vec<u8>,
    edge_child: Vec<u32>,
    /// Children of the nodes with many edges (the root, common prefixes), by byte: one
    /// load instead of a binary search where most of the walking happens.
    dense: Vec<[u32; 256]>,
    /// Per node: its index in `dense`, or NONE.
    dense_of: Vec<u32>,
    /// The node reached by each two-byte prefix (NONE where no token continues it), so
    /// a walk starts two levels down with one load.
    two: Vec<u32>,
}

/// Most entries of the per-piece cache of pair verdicts (sized to the piece below that).
const MAX_VERDICTS: usize = 1 << 16;

/// Nodes with at least this many edges get a dense child table.
const DENSE_EDGES: u32 = 4;

impl Trie {
    fn build(tokens: &mut [(&[u8], Rank)]) -> Trie {
        // Sorting the tokens lays the trie out breadth-wise per node with edges sorted.
        tokens.sort_unstable();
        let mut trie = Trie {
            nodes: vec![(NONE, 0, 0)],
            edge_bytes: Vec::new(),
            edge_child: Vec::new(),
            dense: Vec::new(),
            dense_of: Vec::new(),
            two: Vec::new(),
        };
        // Build recursively over sorted ranges: tokens sharing a prefix are contiguous.
        trie.fill(0, tokens, 0);
        for &(_, lo, hi) in &trie.nodes {
            if hi - lo >= DENSE_EDGES {
                let mut table = [NONE; 256];
                for i in lo as usize..hi as usize {
                    table[trie.edge_bytes[i] as usize] = trie.edge_child[i];
                }
                trie.dense_of.push(trie.dense.len() as u32);
                trie.dense.push(table);
            } else {
                trie.dense_of.push(NONE);
            }
        }
        trie.two = (0..1 << 16)
            .map(|i: usize| trie.child(trie.child(0, (i >> 8) as u8), i as u8))
            .collect();
        trie
    }

    /// The child of `node` by `byte`, NONE where there is none (or `node` is NONE).
    #[inline]
    fn child(&self, node: u32, byte: u8) -> u32 {
        if node == NONE {
            return NONE;
        }
        let dense = self.dense_of[node as usize];
        if dense != NONE {
            return self.dense[dense as usize][byte as usize];
        }
        let (_, lo, hi) = self.nodes[node as usize];
        let labels = &self.edge_bytes[lo as usize..hi as usize];
        labels
            .iter()
            .position(|&b| b == byte)
            .map_or(NONE, |i| self.edge_child[lo as usize + i])
    }

    fn fill(&mut self, node: usize, tokens: &[(&[u8], Rank)], depth: usize) {
        let mut rest = tokens;
        if let Some(&(bytes, id)) = rest.first() {
            if bytes.len() == depth {
                self.nodes[node].0 = id;
                rest = &rest[1..];
            }
        }
        let first_edge = self.edge_bytes.len() as u32;
        let mut groups = Vec::new();
        while let Some(&(bytes, _)) = rest.first() {
            let byte = bytes[depth];
            let end = rest.partition_point(|(b, _)| b[depth] <= byte);
            let child = self.nodes.len() as u32;
            self.nodes.push((NONE, 0, 0));
            self.edge_bytes.push(byte);
            self.edge_child.push(child);
            groups.push((child, &rest[..end]));
            rest = &rest[end..];
        }
        self.nodes[node].1 = first_edge;
        self.nodes[node].2 = self.edge_bytes.len() as u32;
        for (child, group) in groups {
            self.fill(child as usize, group, depth + 1);
        }
    }

    /// The longest token that `text` starts with.
    #[inline]
    fn longest(&self, text: &[u8]) -> Option<Rank> {
        let mut best = self.nodes[self.child(0, *text.first()?) as usize].0;
        let Some(&second) = text.get(1) else {
            return Some(best);
        };
        let mut node = self.two[(text[0] as usize) << 8 | second as usize];
        for &byte in &text[2..] {
            if node == NONE {
                break;
            }
            let token = self.nodes[node as usize].0;
            if token != NONE {
                best = token;
            }
            node = self.child(node, byte);
        }
        if node != NONE && self.nodes[node as usize].0 != NONE {
            best = self.nodes[node as usize].0;
        }
        Some(best)
    }
}

/// What the backtracking encoder needs beyond the encoder's merge map.
pub(crate) struct LongPieces {
    trie: Trie,
    /// Per id: the two tokens it is merged from; (id, id) for a single byte.
    split: Vec<(Rank, Rank)>,
    /// Per id: the longest shorter token that is a prefix of it.
    shorter: Vec<Rank>,
    len: Vec<u32>,
}

impl LongPieces {
    pub(crate) fn build(encoder: &Encoder) -> LongPieces {
        let n = encoder.n_vocab();
        let ranks = encoder.ranks();
        // Each token's split is BPE on its own bytes: independent, so spread over the pool.
        let splits: Vec<Option<(Rank, Rank)>> = ranks
            .par_iter()
            .map(|&(bytes, id)| match bytes.len() {
                1 => Some((id, id)),
                _ => encoder.split_of(bytes, id),
            })
            .collect();
        let mut split = vec![(NONE, NONE); n];
        let mut len = vec![0u32; n];
        let mut reachable: Vec<(&[u8], Rank)> = Vec::with_capacity(ranks.len());
        for (&(bytes, id), s) in ranks.iter().zip(splits) {
            len[id as usize] = bytes.len() as u32;
            if let Some(s) = s {
                split[id as usize] = s;
                reachable.push((bytes, id));
            }
        }
        let shorter_of: Vec<(Rank, Rank)> = reachable
            .par_iter()
            .map(|&(bytes, id)| {
                let shorter = (1..bytes.len())
                    .rev()
                    .find_map(|k| encoder.token_id(&bytes[..k]).filter(|&t| split[t as usize].0 != NONE))
                    .unwrap_or(NONE);
                (id, shorter)
            })
            .collect();
        let mut shorter = vec![NONE; n];
        for (id, s) in shorter_of {
            shorter[id as usize] = s;
        }
        LongPieces {
            trie: Trie::build(&mut reachable),
            split,
            shorter,
            len,
        }
    }

    /// Each token BPE reaches from its own bytes (not single bytes), with its two parts.
    pub(crate) fn splits(&self) -> impl Iterator<Item = (Rank, Rank, Rank)> + '_ {
        (0..self.split.len() as Rank).filter_map(|id| match self.split[id as usize] {
            (NONE, _) => None,
            (a, _) if a == id => None,
            (a, b) => Some((id, a, b)),
        })
    }

    /// Whether encoding the bytes of `a` then `b` gives back `[a, b]`: walking down the
    /// right spine of `a`'s merge tree and the left spine of `b`'s, latest-made token
    /// first, no merge across the two may come before the merge that ends that state
    /// (ties go to the leftmost pair, as in BPE).
    #[inline]
    fn compatible(&self, encoder: &Encoder, mut a: Rank, mut b: Rank) -> bool {
        let mut limit = NONE;
        loop {
            if encoder.merge_rank(a, b).is_some_and(|r| r < limit) {
                return false;
            }
            let (a_leaf, b_leaf) = (self.split[a as usize].0 == a, self.split[b as usize].0 == b);
            if a_leaf && b_leaf {
                return true;
            }
            if !a_leaf && (b_leaf || a > b) {
                limit = a;
                a = self.split[a as usize].1;
            } else {
                // On equal ranks the merge across is left of `b`'s own and goes first.
                limit = b + 1;
                b = self.split[b as usize].0;
            }
        }
    }

    /// Appends the BPE encoding of `text` to `out`; `false` (with `out` unchanged) if the
    /// walk backs off past the start, which a vocabulary of trained merges never makes it do.
    pub(crate) fn encode(&self, encoder: &Encoder, text: &[u8], out: &mut Vec<Rank>) -> bool {
        let base = out.len();
        let mut alive = vec![u64::MAX; text.len() / 64 + 1];
        // Long pieces repeat token pairs: remember recent verdicts in a small direct-mapped
        // table (key, verdict), cheaper than a growing hash map.
        let bits = (text.len() / 4)
            .clamp(64, MAX_VERDICTS)
            .next_power_of_two()
            .trailing_zeros();
        let mut verdicts = vec![(u64::MAX, false); 1 << bits];
        let mut compatible = |a: Rank, b: Rank| {
            let key = (a as u64) << 32 | b as u64;
            let slot = &mut verdicts[(key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize];
            if slot.0 != key {
                *slot = (key, self.compatible(encoder, a, b));
            }
            slot.1
        };
        out.reserve(text.len() / 2);
        let mut pos = 0;
        let mut next = self.trie.longest(text);
        while let Some(mut token) = next {
            let last = out[base..].last().copied();
            loop {
                let end = pos + self.len[token as usize] as usize;
                if alive[end / 64] >> (end % 64) & 1 == 1 && last.is_none_or(|l| compatible(l, token)) {
                    out.push(token);
                    pos = end;
                    next = if pos < text.len() {
                        self.trie.longest(&text[pos..])
                    } else {
                        None
                    };
                    break;
                }
                match self.shorter[token as usize] {
                    NONE => {
                        // No token fits here after `last`: `pos` is a dead end; back off.
                        alive[pos / 64] &= !(1 << (pos % 64));
                        let Some(last) = last else {
                            out.truncate(base);
                            return false;
                        };
                        out.pop();
                        pos -= self.len[last as usize] as usize;
                        next = Some(last);
                        break;
                    }
                    shorter => token = shorter,
                }
            }
        }
        true
    }
}
