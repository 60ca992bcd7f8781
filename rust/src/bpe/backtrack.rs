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
use crate::bpe::splits::Splits;
use crate::bpe::tokens::NO_TOKEN;
use crate::Rank;

const NONE: u32 = u32::MAX;

/// A byte trie of the tokens BPE can produce, for longest-prefix matches.
struct Trie {
    nodes: Vec<Node>,
    /// Edge labels and children; each node's edges sorted by byte.
    edge_bytes: Vec<u8>,
    edge_child: Vec<u32>,
    /// Children of the nodes with many edges (the root, common prefixes), by byte: one
    /// load instead of a scan where most of the walking happens.
    dense: Vec<[u32; 256]>,
    /// The token of each single byte (every byte is one).
    byte_token: [Rank; 256],
    /// The node reached by each two-byte prefix (NONE where no token continues it), so
    /// a walk starts two levels down with one load.
    two: Box<[u32; 1 << 16]>,
}

/// One trie node: its token (NONE if none), its index in `dense` (NONE if it has none),
/// and the range of its edges; 16 bytes, so one load finds what a step needs.
#[derive(Clone, Copy)]
struct Node {
    token: Rank,
    dense: u32,
    lo: u32,
    hi: u32,
}

/// Nodes with at least this many edges get a dense child table.
const DENSE_EDGES: u32 = 4;

/// Bits of the pair filter per pair the encoder may merge (about 6% false positives).
const FILTER_BITS_PER_PAIR: usize = 16;

impl Trie {
    fn build(tokens: &mut [(&[u8], Rank)]) -> Trie {
        // Sorting the tokens lays the trie out breadth-wise per node with edges sorted.
        tokens.sort_unstable();
        let mut trie = Trie {
            nodes: vec![Node {
                token: NONE,
                dense: NONE,
                lo: 0,
                hi: 0,
            }],
            edge_bytes: Vec::new(),
            edge_child: Vec::new(),
            dense: Vec::new(),
            byte_token: [NONE; 256],
            two: vec![NONE; 1 << 16].into_boxed_slice().try_into().unwrap(),
        };
        // Build recursively over sorted ranges: tokens sharing a prefix are contiguous.
        trie.fill(0, tokens, 0);
        for i in 0..trie.nodes.len() {
            let Node { lo, hi, .. } = trie.nodes[i];
            if hi - lo >= DENSE_EDGES {
                let mut table = [NONE; 256];
                for e in lo as usize..hi as usize {
                    table[trie.edge_bytes[e] as usize] = trie.edge_child[e];
                }
                trie.nodes[i].dense = trie.dense.len() as u32;
                trie.dense.push(table);
            }
        }
        for b in 0..256 {
            let node = trie.child(0, b as u8);
            trie.byte_token[b] = if node == NONE {
                NONE
            } else {
                trie.nodes[node as usize].token
            };
        }
        for i in 0..1 << 16 {
            trie.two[i] = trie.child(trie.child(0, (i >> 8) as u8), i as u8);
        }
        trie
    }

    /// The child of `node` by `byte`, NONE where there is none (or `node` is NONE).
    #[inline]
    fn child(&self, node: u32, byte: u8) -> u32 {
        if node == NONE {
            return NONE;
        }
        self.step(self.nodes[node as usize], byte)
    }

    /// The child of the node `n` by `byte`, NONE where there is none.
    #[inline(always)]
    fn step(&self, n: Node, byte: u8) -> u32 {
        if n.dense != NONE {
            return self.dense[n.dense as usize][byte as usize];
        }
        let labels = &self.edge_bytes[n.lo as usize..n.hi as usize];
        labels
            .iter()
            .position(|&b| b == byte)
            .map_or(NONE, |i| self.edge_child[n.lo as usize + i])
    }

    fn fill(&mut self, node: usize, tokens: &[(&[u8], Rank)], depth: usize) {
        let mut rest = tokens;
        if let Some(&(bytes, id)) = rest.first() {
            if bytes.len() == depth {
                self.nodes[node].token = id;
                rest = &rest[1..];
            }
        }
        let first_edge = self.edge_bytes.len() as u32;
        let mut groups = Vec::new();
        while let Some(&(bytes, _)) = rest.first() {
            let byte = bytes[depth];
            let end = rest.partition_point(|(b, _)| b[depth] <= byte);
            let child = self.nodes.len() as u32;
            self.nodes.push(Node {
                token: NONE,
                dense: NONE,
                lo: 0,
                hi: 0,
            });
            self.edge_bytes.push(byte);
            self.edge_child.push(child);
            groups.push((child, &rest[..end]));
            rest = &rest[end..];
        }
        self.nodes[node].lo = first_edge;
        self.nodes[node].hi = self.edge_bytes.len() as u32;
        for (child, group) in groups {
            self.fill(child as usize, group, depth + 1);
        }
    }

    /// The longest token that the non-empty `text` starts with.
    #[inline(always)]
    fn longest(&self, text: &[u8]) -> Rank {
        let mut best = self.byte_token[text[0] as usize];
        let Some(&second) = text.get(1) else {
            return best;
        };
        let mut node = self.two[(text[0] as usize) << 8 | second as usize];
        let mut rest = &text[2..];
        while node != NONE {
            let n = self.nodes[node as usize];
            if n.token != NONE {
                best = n.token;
            }
            let Some((&byte, tail)) = rest.split_first() else {
                break;
            };
            node = self.step(n, byte);
            rest = tail;
        }
        best
    }
}

/// Per token: what the walk reads about it, together in 20 bytes (one load; 4 bytes more
/// per id than the separate tables it replaced).
#[derive(Clone, Copy)]
struct Token {
    len: u32,
    /// The longest shorter token that is a prefix of it (NONE if none).
    shorter: Rank,
    /// The two tokens it is merged from; (id, id) for a single byte, NONE for a token
    /// that BPE does not reach from its own bytes.
    left: Rank,
    right: Rank,
    /// A bit per hash class (`class_bit`) of the tokens it merges with as the left part:
    /// a zero bit rules out a merge with no load at all.
    partners: u32,
}

/// The bit of `b`'s hash class, for `Token::partners`.
#[inline(always)]
fn class_bit(b: Rank) -> u32 {
    1 << (b.wrapping_mul(0x9E37_79B9) >> 27)
}

/// What the backtracking encoder needs beyond the encoder's merge map: per token 20 bytes,
/// per trie node 16, and tables fixed by the vocabulary's size (the filter, a quarter or
/// half a megabyte for cl100k or o200k, and 256 KB of byte merges).
pub(crate) struct LongPieces {
    trie: Trie,
    tokens: Vec<Token>,
    /// A one-hash Bloom filter over every pair of ids the encoder may merge: most pairs
    /// that `compatible` asks about merge into nothing, and the filter, a fraction of the
    /// merge map's size (2 bytes per pair: 256 KB for cl100k, 512 KB for o200k), says so
    /// without a lookup in the map.
    pairs: Box<[u64]>,
    pair_shift: u32,
    /// The merge of each two single bytes (NONE if none) by their ids (256 KB), used where
    /// `byte_table` says those are all below 256.
    byte_merges: Box<[Rank; 1 << 16]>,
    byte_table: bool,
}

#[inline(always)]
fn pair_hash(a: Rank, b: Rank) -> u64 {
    ((a as u64) << 32 | b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Whether encoding the bytes of tokens `a` then `b` with the merges ranked below `limit`
/// gives back `[a, b]`. Walking down the right spine of `a`'s merge tree and the left spine
/// of `b`'s, latest-made token first, no merge across the two may come before the merge
/// that ends that state (ties go to the leftmost pair, as in BPE). `parts` gives a token's
/// two parts ((t, t) for a single byte); `merges_below(x, y, limit, leaves)` says whether
/// `x` and `y` (both single bytes when `leaves`) merge with a priority below `limit`.
#[inline(always)]
pub(crate) fn compatible(
    mut a: Rank,
    mut b: Rank,
    mut limit: u32,
    parts: impl Fn(Rank) -> (Rank, Rank),
    merges_below: impl Fn(Rank, Rank, u32, bool) -> bool,
) -> bool {
    let (mut pa, mut pb) = (parts(a), parts(b));
    loop {
        let (a_leaf, b_leaf) = (pa.0 == a, pb.0 == b);
        if merges_below(a, b, limit, a_leaf && b_leaf) {
            return false;
        }
        if a_leaf && b_leaf {
            return true;
        }
        if !a_leaf && (b_leaf || a > b) {
            limit = a;
            a = pa.1;
            pa = parts(a);
        } else {
            // On equal ranks the merge across is left of `b`'s own and goes first.
            limit = b + 1;
            b = pb.0;
            pb = parts(b);
        }
    }
}

impl LongPieces {
    /// The tables for `encoder`, whose tokens' own splits are `splits`.
    pub(crate) fn build(encoder: &Encoder, splits: &Splits) -> LongPieces {
        let n = encoder.n_vocab();
        let ranks = encoder.ranks();
        let unused = Token {
            len: 0,
            shorter: NONE,
            left: NONE,
            right: NONE,
            partners: 0,
        };
        let mut tokens = vec![unused; n];
        let mut reachable: Vec<(&[u8], Rank)> = Vec::with_capacity(ranks.len());
        let mut pair_list: Vec<(Rank, Rank)> = Vec::with_capacity(ranks.len());
        for &(bytes, id) in &ranks {
            let token = &mut tokens[id as usize];
            token.len = bytes.len() as u32;
            let (left, right) = splits.parts[id as usize];
            if left != NONE {
                (token.left, token.right) = (left, right);
                reachable.push((bytes, id));
                if left != id {
                    pair_list.push((left, right));
                }
            } else {
                // A token that its own bytes do not reach through its split: the encoder
                // may keep any pair that makes it (see `Encoder::from_ranks`), so the
                // filter holds them all. With the splits above, that covers every pair
                // the encoder's map can hold, whatever else it drops.
                let made = splits.prefixes.of(id).iter().filter(|&&(_, b)| b != NO_TOKEN);
                pair_list.extend(made);
            }
        }
        for &(_, id) in &reachable {
            tokens[id as usize].shorter = splits
                .prefixes
                .of(id)
                .iter()
                .map(|&(a, _)| a)
                .find(|&a| splits.parts[a as usize].0 != NONE)
                .unwrap_or(NONE);
        }
        let bits = (pair_list.len() * FILTER_BITS_PER_PAIR)
            .next_power_of_two()
            .max(64)
            .trailing_zeros();
        let mut pairs = vec![0u64; 1 << (bits - 6)].into_boxed_slice();
        let pair_shift = 64 - bits;
        for &(a, b) in &pair_list {
            let h = (pair_hash(a, b) >> pair_shift) as usize;
            pairs[h >> 6] |= 1 << (h & 63);
            tokens[a as usize].partners |= class_bit(b);
        }
        // Two single bytes merge into their two-byte token, if any, whose split they are
        // (BPE on two bytes has no other way), with its id as the priority. Indexed by
        // the bytes' ids, which tiktoken's vocabularies keep below 256; any other
        // vocabulary leaves it unused. Fixed in size, as is the trie's `two`, so that an
        // index of two bytes needs no bounds check (4% of random letters' instructions).
        let byte_table = ranks.iter().all(|&(bytes, id)| bytes.len() != 1 || id < 256);
        let mut byte_merges: Box<[Rank; 1 << 16]> = vec![NONE; 1 << 16].into_boxed_slice().try_into().unwrap();
        if byte_table {
            for &(bytes, id) in &ranks {
                let Token { left, right, .. } = tokens[id as usize];
                if bytes.len() == 2 && left != NONE {
                    byte_merges[(left as usize) << 8 | right as usize] = id;
                }
            }
        }
        LongPieces {
            trie: Trie::build(&mut reachable),
            tokens,
            pairs,
            pair_shift,
            byte_merges,
            byte_table,
        }
    }

    /// Whether `a` and `b` merge with a priority below `limit` (the filter first).
    #[inline(always)]
    fn merges_below(&self, encoder: &Encoder, a: Rank, b: Rank, limit: u32) -> bool {
        let h = (pair_hash(a, b) >> self.pair_shift) as usize;
        self.pairs[h >> 6] >> (h & 63) & 1 == 1 && encoder.merge_rank(a, b).is_some_and(|r| r < limit)
    }

    /// A token's two parts, for `compatible`.
    #[inline(always)]
    fn parts(&self, t: Rank) -> (Rank, Rank) {
        let t = self.tokens[t as usize];
        (t.left, t.right)
    }

    /// Whether `a` and `b` (both single bytes when `leaves`) merge with a priority below
    /// `limit`, for `compatible`.
    #[inline(always)]
    fn merges_before(&self, encoder: &Encoder, a: Rank, b: Rank, limit: u32, leaves: bool) -> bool {
        if leaves && self.byte_table {
            // Both are bytes' ids, below 256 (`byte_table`): the mask changes nothing but
            // lets the compiler drop the bounds check.
            self.byte_merges[((a as usize) << 8 | b as usize) & 0xFFFF] < limit
        } else {
            self.tokens[a as usize].partners & class_bit(b) != 0 && self.merges_below(encoder, a, b, limit)
        }
    }

    /// Whether encoding the bytes of `a` then `b` gives back `[a, b]` (see `compatible`).
    #[inline]
    fn compatible(&self, encoder: &Encoder, a: Rank, b: Rank) -> bool {
        let merges = |a, b, limit, leaves| self.merges_before(encoder, a, b, limit, leaves);
        compatible(a, b, NONE, |t| self.parts(t), merges)
    }

    /// `compatible` for the joins of a long piece's parts (`Encoder::join`), out of line
    /// and with closures of its own: where the walk's were called from there too, they
    /// were no longer inlined into the walk, and one letter repeated took 15-45% longer.
    #[inline(never)]
    pub(crate) fn compatible_at_cut(&self, encoder: &Encoder, a: Rank, b: Rank) -> bool {
        let merges = |a, b, limit, leaves| self.merges_before(encoder, a, b, limit, leaves);
        compatible(a, b, NONE, |t| self.parts(t), merges)
    }

    /// Asks the CPU for what `compatible(a, b)` reads first: the two tokens' entries and
    /// the filter's word for their pair.
    #[inline]
    pub(crate) fn prefetch_compatible(&self, a: Rank, b: Rank) {
        crate::memory::prefetch(self.tokens.as_ptr().wrapping_add(a as usize));
        crate::memory::prefetch(self.tokens.as_ptr().wrapping_add(b as usize));
        let h = (pair_hash(a, b) >> self.pair_shift) as usize;
        crate::memory::prefetch(self.pairs.as_ptr().wrapping_add(h >> 6));
    }

    /// The length in bytes of the token `t`, one that BPE reaches.
    #[inline]
    pub(crate) fn token_len(&self, t: Rank) -> usize {
        self.tokens[t as usize].len as usize
    }

    /// Appends the BPE encoding of `text` to `out`; `false` (with `out` unchanged) if the
    /// walk backs off past the start, which a vocabulary of trained merges never makes it do.
    pub(crate) fn encode(&self, encoder: &Encoder, text: &[u8], out: &mut Vec<Rank>) -> bool {
        let base = out.len();
        if text.is_empty() {
            return true;
        }
        let mut alive = vec![u64::MAX; text.len() / 64 + 1];
        // No cache of verdicts: with the pair filters a verdict costs about what probing
        // a cache for it did (a 4K-entry one was hit by 9% of random letters' pairs and
        // 36% of random CJK's; both ran faster without it).
        out.reserve(text.len() / 2);
        let mut pos = 0;
        let mut token = self.trie.longest(text);
        loop {
            let last = if out.len() > base { out.last().copied() } else { None };
            let t = self.tokens[token as usize];
            let end = pos + t.len as usize;
            if alive[end / 64] >> (end % 64) & 1 == 1 && last.is_none_or(|l| self.compatible(encoder, l, token)) {
                out.push(token);
                pos = end;
                if pos == text.len() {
                    return true;
                }
                token = self.trie.longest(&text[pos..]);
                continue;
            }
            if t.shorter != NONE {
                token = t.shorter;
                continue;
            }
            // No token fits here after `last`: `pos` is a dead end; back off.
            alive[pos / 64] &= !(1 << (pos % 64));
            let Some(last) = last else {
                out.truncate(base);
                return false;
            };
            out.pop();
            pos -= self.tokens[last as usize].len as usize;
            token = last;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpe::TestRng;
    use rustc_hash::FxHashMap;

    /// Vocabularies grown by joining random tokens over a small alphabet (as BPE training
    /// does, but in random order), so that many pairs merge and the walk backs off often.
    fn grown(seed: u64) -> (Encoder, FxHashMap<Vec<u8>, Rank>) {
        let mut rng = TestRng(seed);
        let mut next = |m: usize| rng.below(m);
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let mut ids: FxHashMap<Vec<u8>, Rank> = tokens.iter().cloned().zip(0..).collect();
        let alphabet = b"abcd";
        while tokens.len() < 256 + 150 {
            let pick = |k: usize| match k {
                0..4 => vec![alphabet[k]],
                _ => tokens[256 + k - 4].clone(),
            };
            let joined = [pick(next(tokens.len() - 252)), pick(next(tokens.len() - 252))].concat();
            if joined.len() > 10 || ids.contains_key(&joined) {
                continue;
            }
            // Keep it only if BPE on its own bytes makes it, as training guarantees.
            let id = tokens.len() as Rank;
            ids.insert(joined.clone(), id);
            if naive(&ids, &joined) == [id] {
                tokens.push(joined);
            } else {
                ids.remove(&joined);
            }
        }
        let ranks = tokens.into_iter().zip(0..).collect();
        (Encoder::from_ranks(ranks, "gpt2", vec![]).unwrap(), ids)
    }

    /// tiktoken's algorithm, transcribed naively: merge the lowest-ranked adjacent pair,
    /// leftmost first, while some concatenation is a token.
    fn naive(ids: &FxHashMap<Vec<u8>, Rank>, piece: &[u8]) -> Vec<Rank> {
        let mut parts: Vec<Vec<u8>> = piece.iter().map(|&b| vec![b]).collect();
        while let Some((_, i)) = (0..parts.len().saturating_sub(1))
            .filter_map(|i| {
                ids.get(&[parts[i].clone(), parts[i + 1].clone()].concat())
                    .map(|&r| (r, i))
            })
            .min()
        {
            let right = parts.remove(i + 1);
            parts[i].extend(right);
        }
        parts.iter().map(|p| ids[p]).collect()
    }

    #[test]
    fn filters_keep_every_merge_the_encoder_knows() {
        for seed in [1, 2, 3] {
            let (enc, _) = grown(seed);
            let long = enc.long_pieces.as_ref().unwrap();
            assert!(long.byte_table);
            let reachable: Vec<Rank> = (0..enc.n_vocab() as Rank)
                .filter(|&t| long.tokens[t as usize].left != NONE)
                .collect();
            let mut merging = 0;
            for &a in &reachable {
                for &b in &reachable {
                    let rank = enc.merge_rank(a, b);
                    if a < 256 && b < 256 {
                        assert_eq!(long.byte_merges[(a as usize) << 8 | b as usize], rank.unwrap_or(NONE));
                    }
                    if rank.is_some() {
                        merging += 1;
                        let h = (pair_hash(a, b) >> long.pair_shift) as usize;
                        assert!(long.pairs[h >> 6] >> (h & 63) & 1 == 1, "pair {a} {b}");
                        assert!(long.tokens[a as usize].partners & class_bit(b) != 0, "pair {a} {b}");
                    }
                }
            }
            assert!(merging >= 150, "{merging} merging pairs");
        }
    }

    /// Long pieces are merged in parts of up to 32 bytes, joined where the tokens on the two
    /// sides of a cut are compatible and merged again across it where they are not (over
    /// small alphabets, most cuts; with capitals, parts end before one); one of 3000 bytes
    /// passes to the walk part way.
    #[test]
    fn parts_joined_agree_with_naive_bpe_on_grown_vocabularies() {
        let mut rng = TestRng(7);
        for seed in [1, 2, 3, 4] {
            let (enc, ids) = grown(seed);
            for len in [65usize, 100, 1000, 3000] {
                for alphabet in [&b"ab"[..], b"abcd", b"abcdx", b"abcdAB"] {
                    let piece = rng.bytes(len, alphabet);
                    let text = std::str::from_utf8(&piece).unwrap();
                    assert_eq!(enc.encode_ordinary(text), naive(&ids, &piece), "piece {text:?}");
                }
            }
        }
    }

    #[test]
    fn backtracking_agrees_with_naive_bpe_on_grown_vocabularies() {
        let mut rng = TestRng(5);
        for seed in [1, 2, 3, 4] {
            let (enc, ids) = grown(seed);
            let long = enc.long_pieces.as_ref().unwrap();
            for len in [65usize, 200, 1000] {
                for alphabet in [&b"ab"[..], b"abcd", b"abcdx"] {
                    let piece = rng.bytes(len, alphabet);
                    let mut ours = Vec::new();
                    assert!(long.encode(&enc, &piece, &mut ours));
                    assert_eq!(ours, naive(&ids, &piece), "piece {:?}", String::from_utf8_lossy(&piece));
                }
            }
        }
    }
}
