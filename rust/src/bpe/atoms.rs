//! Characters of 2 or 3 bytes that a new word's merge may start from whole ("atoms"),
//! instead of from their bytes: in scripts other than Latin, forming the characters is
//! most of the merges (about two thirds of a multilingual web sample's).
//!
//! A token `c` that is one whole character is an atom when
//! 1. BPE on `c`'s bytes alone makes `c`, and
//! 2. every merge with `c` as an operand comes later (higher priority) than each merge
//!    that forms `c`.
//!
//! Starting from `c` at one place in a word is exact when also
//! 3. no token that covers only part of `c` and crosses one of its edges occurs there
//!    (`Atoms::at` compares the bytes around with the few such *fragment* tokens).
//!
//! By 3 no merge crosses `c`'s edges before `c` is whole, so the merges that form it
//! commute with all others; by 1 they do form it; by 2 no merge with `c` is chosen
//! earlier than it would have been, since while `c` is unformed one of its own merges,
//! of lower priority, is waiting. So the merges outside `c` happen in the same order.

use crate::bpe::tokens::Tokens;
use crate::Rank;
use rustc_hash::FxHashMap;

pub(crate) struct Atoms {
    /// Code point (below 0x10000) → 1 + its index in `atoms`, 0 for none (128 KB).
    by_char: Box<[u16]>,
    atoms: Vec<Atom>,
    /// The fragments around atoms, deduplicated; `rules[0]` has none.
    rules: Vec<Guard>,
}

#[derive(Clone, Copy)]
struct Atom {
    id: Rank,
    /// The character's bytes, little-endian: compared with the text's, so that bytes
    /// that are not UTF-8 never pass for a character.
    bytes: u32,
    rule: u32,
}

/// The fragment tokens that could cover part of an atom and cross an edge of it: `heads`
/// are the bytes that, just before it, complete a token ending inside it; `tails` those
/// that, just after it, complete a token starting inside it. `before` and `after` hold
/// their bytes next to the atom, so that one bit test clears most occurrences.
#[derive(Default, Clone, PartialEq, Eq, Hash)]
struct Rule {
    before: [u64; 4],
    after: [u64; 4],
    heads: Vec<Box<[u8]>>,
    tails: Vec<Box<[u8]>>,
}

/// A `Rule` as `Atoms::at` tests it: each fragment is first compared as the (up to) 8 of
/// its bytes nearest the atom, in one masked comparison with the word's 8 bytes there,
/// instead of a call to `memcmp` per fragment (o200k's rules hold a few to dozens).
struct Guard {
    before: [u64; 4],
    after: [u64; 4],
    heads: Vec<Affix>,
    tails: Vec<Affix>,
}

struct Affix {
    /// The bytes nearest the atom, where `ending_at` (heads) or `starting_at` (tails) puts
    /// the word's; zero elsewhere.
    near: u64,
    mask: u64,
    /// All of its bytes, compared too when it has more than 8.
    full: Box<[u8]>,
}

impl Affix {
    fn head(bytes: &[u8]) -> Affix {
        let k = bytes.len().min(8);
        Affix {
            near: ending_at(bytes, bytes.len()),
            mask: u64::MAX << (8 * (8 - k)),
            full: bytes.into(),
        }
    }

    fn tail(bytes: &[u8]) -> Affix {
        let k = bytes.len().min(8);
        Affix {
            near: starting_at(bytes, 0),
            mask: u64::MAX >> (8 * (8 - k)),
            full: bytes.into(),
        }
    }
}

/// The 8 bytes of `word` that end at `i`, little-endian (the last in the top byte), zeros
/// before the word's start.
#[inline(always)]
fn ending_at(word: &[u8], i: usize) -> u64 {
    match i.checked_sub(8) {
        Some(start) => u64::from_le_bytes(word[start..i].try_into().unwrap()),
        None => word[..i]
            .iter()
            .enumerate()
            .fold(0, |v, (k, &b)| v | (b as u64) << (8 * (8 - i + k))),
    }
}

/// The 8 bytes of `word` from `i`, little-endian, zeros past its end.
#[inline(always)]
fn starting_at(word: &[u8], i: usize) -> u64 {
    match word.get(i..i + 8) {
        Some(chunk) => u64::from_le_bytes(chunk.try_into().unwrap()),
        None => word[i..]
            .iter()
            .enumerate()
            .fold(0, |v, (k, &b)| v | (b as u64) << (8 * k)),
    }
}

fn has(set: &[u64; 4], b: u8) -> bool {
    set[(b >> 6) as usize] >> (b & 63) & 1 != 0
}

fn add(set: &mut [u64; 4], b: u8) {
    set[(b >> 6) as usize] |= 1 << (b & 63);
}

fn packed(bytes: &[u8]) -> u32 {
    bytes.iter().rev().fold(0, |acc, &b| acc << 8 | b as u32)
}

/// Whether `b` continues a UTF-8 character rather than starting one.
pub(crate) fn is_continuation(b: u8) -> bool {
    b & 0xC0 == 0x80
}

impl Atoms {
    /// The atoms of a vocabulary, `None` if it has none. `merges` gives every merge as
    /// (left, right, priority); `pair` the merge of two ids as (priority, product).
    pub(crate) fn build(
        tokens: &Tokens,
        byte_ids: &[Rank; 256],
        merges: impl Iterator<Item = (Rank, Rank, u32)>,
        pair: impl Fn(Rank, Rank) -> Option<(u32, Rank)>,
    ) -> Option<Atoms> {
        // Condition 1, and the last priority of the merges that form each character.
        let mut found: Vec<(char, Rank, u32)> = tokens
            .iter()
            .filter(|(bytes, _)| matches!(bytes.len(), 2 | 3))
            .filter_map(|(bytes, id)| {
                let mut chars = std::str::from_utf8(bytes).ok()?.chars();
                let c = chars.next().filter(|_| chars.next().is_none())?;
                let (ids, last) = naive_merge(bytes, byte_ids, &pair);
                (ids[..] == [id]).then_some((c, id, last))
            })
            .collect();
        // Condition 2.
        let mut first_use = vec![u32::MAX; tokens.id_bound()];
        for (a, b, priority) in merges {
            for id in [a, b] {
                if let Some(slot) = first_use.get_mut(id as usize) {
                    *slot = (*slot).min(priority);
                }
            }
        }
        found.retain(|&(_, id, last)| first_use[id as usize] > last);
        if found.is_empty() {
            return None;
        }
        // Condition 3's fragments, by the proper prefixes and suffixes of the atoms' bytes.
        let encoded: Vec<Vec<u8>> = found.iter().map(|&(c, ..)| c.to_string().into_bytes()).collect();
        let mut by_prefix: FxHashMap<&[u8], Vec<usize>> = FxHashMap::default();
        let mut by_suffix: FxHashMap<&[u8], Vec<usize>> = FxHashMap::default();
        for (k, bytes) in encoded.iter().enumerate() {
            for cut in 1..bytes.len() {
                by_prefix.entry(&bytes[..cut]).or_default().push(k);
                by_suffix.entry(&bytes[cut..]).or_default().push(k);
            }
        }
        let mut rules = vec![Rule::default(); found.len()];
        for (token, _) in tokens.iter().filter(|(bytes, _)| bytes.len() >= 2) {
            // A token ending inside an atom ends with the atom's first bytes: a lead byte
            // and continuation bytes, begun by its last byte that is no continuation.
            if let Some(q) = token.iter().rposition(|&b| !is_continuation(b)).filter(|&q| q > 0) {
                for &k in by_prefix.get(&token[q..]).into_iter().flatten() {
                    add(&mut rules[k].before, token[q - 1]);
                    rules[k].heads.push(token[..q].into());
                }
            }
            // A token starting inside an atom starts with its last bytes, continuations.
            let leading = token.iter().take(3).take_while(|&&b| is_continuation(b)).count();
            for cut in (1..=leading).filter(|&cut| cut < token.len()) {
                for &k in by_suffix.get(&token[..cut]).into_iter().flatten() {
                    add(&mut rules[k].after, token[cut]);
                    rules[k].tails.push(token[cut..].into());
                }
            }
        }
        let mut by_char = vec![0u16; 0x10000].into_boxed_slice();
        let mut unique: FxHashMap<Rule, u32> = FxHashMap::default();
        unique.insert(Rule::default(), 0);
        let guard = |rule: &Rule| Guard {
            before: rule.before,
            after: rule.after,
            heads: rule.heads.iter().map(|h| Affix::head(h)).collect(),
            tails: rule.tails.iter().map(|t| Affix::tail(t)).collect(),
        };
        let mut atoms = Atoms {
            by_char: Box::new([]),
            atoms: Vec::with_capacity(found.len()),
            rules: vec![guard(&Rule::default())],
        };
        for ((&(c, id, _), bytes), mut rule) in found.iter().zip(&encoded).zip(rules) {
            for list in [&mut rule.heads, &mut rule.tails] {
                list.sort_unstable();
                list.dedup();
            }
            let next = atoms.rules.len() as u32;
            let index = *unique.entry(rule).or_insert_with_key(|rule| {
                atoms.rules.push(guard(rule));
                next
            });
            atoms.atoms.push(Atom {
                id,
                bytes: packed(bytes),
                rule: index,
            });
            // At most 63,488 characters of 2 or 3 bytes: the index fits.
            by_char[c as usize] = atoms.atoms.len() as u16;
        }
        atoms.by_char = by_char;
        Some(atoms)
    }

    /// The atom at `word[i..]` (a byte of 0x80 or more) and its length, where the word's
    /// merge may start from it whole.
    #[inline(always)]
    pub(crate) fn at(&self, word: &[u8], i: usize) -> Option<(Rank, usize)> {
        let b = word[i] as u32;
        let at = |k: usize| word.get(i + k).map_or(0, |&b| b as u32);
        let (c, len) = match b {
            0xC2..=0xDF => ((b & 0x1F) << 6 | (at(1) & 0x3F), 2),
            0xE0..=0xEF => ((b & 0x0F) << 12 | (at(1) & 0x3F) << 6 | (at(2) & 0x3F), 3),
            _ => return None,
        };
        let k = self.by_char[c as usize];
        if k == 0 {
            return None;
        }
        let atom = self.atoms[k as usize - 1];
        let end = i + len;
        if end > word.len() || packed(&word[i..end]) != atom.bytes {
            return None;
        }
        if atom.rule != 0 {
            let rule = &self.rules[atom.rule as usize];
            if i > 0 && has(&rule.before, word[i - 1]) {
                let near = ending_at(word, i);
                let ends_with = |h: &Affix| {
                    near & h.mask == h.near && h.full.len() <= i && (h.full.len() <= 8 || word[..i].ends_with(&h.full))
                };
                if rule.heads.iter().any(ends_with) {
                    return None;
                }
            }
            if end < word.len() && has(&rule.after, word[end]) {
                let near = starting_at(word, end);
                let starts_with = |t: &Affix| {
                    near & t.mask == t.near
                        && t.full.len() <= word.len() - end
                        && (t.full.len() <= 8 || word[end..].starts_with(&t.full))
                };
                if rule.tails.iter().any(starts_with) {
                    return None;
                }
            }
        }
        Some((atom.id, len))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.atoms.len()
    }

    /// How many atoms some fragment may cover part of.
    #[cfg(test)]
    pub(crate) fn guarded(&self) -> usize {
        self.atoms.iter().filter(|atom| atom.rule != 0).count()
    }
}

/// BPE on a few bytes, plainly: the ids, and the highest priority of the merges made.
fn naive_merge(
    bytes: &[u8],
    byte_ids: &[Rank; 256],
    pair: impl Fn(Rank, Rank) -> Option<(u32, Rank)>,
) -> (Vec<Rank>, u32) {
    let mut ids: Vec<Rank> = bytes.iter().map(|&b| byte_ids[b as usize]).collect();
    let mut last = 0;
    loop {
        let best = (0..ids.len().saturating_sub(1))
            .filter_map(|i| pair(ids[i], ids[i + 1]).map(|(priority, id)| (priority, i, id)))
            .min();
        let Some((priority, i, id)) = best else {
            return (ids, last);
        };
        last = last.max(priority);
        ids[i] = id;
        ids.remove(i + 1);
    }
}

#[cfg(test)]
mod tests {
    use crate::bpe::encode::Encoder;
    use crate::Rank;

    /// A fragment of more than 8 bytes beside an atom is compared in full: only its far
    /// bytes tell the word where it may cover the atom's edge from the one where it may not.
    #[test]
    fn long_fragments_are_compared_in_full() {
        let mut ranks: Vec<(Vec<u8>, Rank)> = (0..=255u8).map(|b| (vec![b], b as Rank)).collect();
        let zhe = "ж".as_bytes();
        // "ж" by its own merge; a token ending inside it after 9 letters, and one starting
        // inside it before 9 letters.
        let head = [&b"Xabcdefgh"[..], &zhe[..1]].concat();
        let tail = [&zhe[1..], &b"abcdefghi"[..]].concat();
        let (nul_head, nul_tail) = ([&b"\0q"[..], &zhe[..1]].concat(), [&zhe[1..], &b"q\0"[..]].concat());
        for (i, token) in [zhe.to_vec(), head, tail, nul_head, nul_tail].into_iter().enumerate() {
            ranks.push((token, 256 + i as Rank));
        }
        let enc = Encoder::from_ranks(ranks, "gpt2", vec![]).unwrap();
        let atoms = enc.atoms.as_ref().expect("ж is an atom");
        let at = |word: &str, i: usize| atoms.at(word.as_bytes(), i);
        assert_eq!(at("Yabcdefghж", 9), Some((256, 2)));
        assert_eq!(at("Xabcdefghж", 9), None);
        assert_eq!(at("жabcdefghZ", 0), Some((256, 2)));
        assert_eq!(at("жabcdefghi", 0), None);
        // Nothing before the word's start counts as a fragment's bytes, zeros included.
        assert_eq!(at("abcdefghж", 8), Some((256, 2)));
        assert_eq!(at("qж", 1), Some((256, 2)));
        assert_eq!(at("\0qж", 2), None);
        assert_eq!(at("жq", 0), Some((256, 2)));
        assert_eq!(at("жq\0", 0), None);
    }
}
