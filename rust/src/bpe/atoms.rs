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
    /// Code point (below 0x10000) → `(1 + id) << rule_bits | rule` of its atom, 0 for a
    /// character that is none (256 KB): one load finds what a character's check needs,
    /// where an index into a list of atoms made it two loads, one waiting on the other.
    by_char: Box<[u32]>,
    rule_bits: u32,
    /// The fragments around atoms, deduplicated; `rules[0]` has none.
    rules: Vec<Guard>,
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
        let mut unique: FxHashMap<Rule, u32> = FxHashMap::default();
        unique.insert(Rule::default(), 0);
        let guard = |rule: &Rule| Guard {
            before: rule.before,
            after: rule.after,
            heads: rule.heads.iter().map(|h| Affix::head(h)).collect(),
            tails: rule.tails.iter().map(|t| Affix::tail(t)).collect(),
        };
        let mut guards = vec![guard(&Rule::default())];
        let mut entries = Vec::with_capacity(found.len());
        for (&(c, id, _), mut rule) in found.iter().zip(rules) {
            for list in [&mut rule.heads, &mut rule.tails] {
                list.sort_unstable();
                list.dedup();
            }
            let next = guards.len() as u32;
            let index = *unique.entry(rule).or_insert_with_key(|rule| {
                guards.push(guard(rule));
                next
            });
            entries.push((c, id, index));
        }
        // The rule's index in the low bits, 1 + the id above it: a vocabulary whose ids
        // and rules do not fit in 32 bits together (none near) goes without atoms.
        let rule_bits = u32::BITS - (guards.len() as u32 - 1).leading_zeros();
        let max_id = entries.iter().map(|&(_, id, _)| id).max()?;
        if u64::from(max_id) + 1 >= 1 << (32 - rule_bits) {
            return None;
        }
        let mut by_char = vec![0u32; 0x10000].into_boxed_slice();
        for &(c, id, rule) in &entries {
            by_char[c as usize] = (id + 1) << rule_bits | rule;
        }
        Some(Atoms {
            by_char,
            rule_bits,
            rules: guards,
        })
    }

    /// The atom at `word[i..]` (a byte of 0x80 or more) and its length, where the word's
    /// merge may start from it whole.
    #[inline(always)]
    pub(crate) fn at(&self, word: &[u8], i: usize) -> Option<(Rank, usize)> {
        // Only a well-formed character (continuation bytes where they belong, no overlong
        // form) counts: other bytes that decode to the same code point are no atom.
        let b = word[i] as u32;
        let at = |k: usize| word.get(i + k).map_or(0, |&b| b as u32);
        let continues = |b: u32| b & 0xC0 == 0x80;
        let (c, len) = match b {
            0xC2..=0xDF if continues(at(1)) => ((b & 0x1F) << 6 | (at(1) & 0x3F), 2),
            0xE0..=0xEF if continues(at(1)) && continues(at(2)) => {
                let c = (b & 0x0F) << 12 | (at(1) & 0x3F) << 6 | (at(2) & 0x3F);
                if c < 0x800 {
                    return None;
                }
                (c, 3)
            }
            _ => return None,
        };
        let entry = self.by_char[c as usize];
        if entry == 0 {
            return None;
        }
        let (id, rule) = ((entry >> self.rule_bits) - 1, entry & ((1 << self.rule_bits) - 1));
        let end = i + len;
        if rule != 0 {
            let rule = &self.rules[rule as usize];
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
        Some((id, len))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_char.iter().filter(|&&entry| entry != 0).count()
    }

    /// How many atoms some fragment may cover part of.
    #[cfg(test)]
    pub(crate) fn guarded(&self) -> usize {
        let rule = (1 << self.rule_bits) - 1;
        self.by_char.iter().filter(|&&entry| entry & rule != 0).count()
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

    /// Bytes that are no well-formed character never count as an atom, even where they
    /// decode to an atom's code point (an overlong form) or are cut short.
    #[test]
    fn only_well_formed_characters_are_atoms() {
        let mut ranks: Vec<(Vec<u8>, Rank)> = (0..=255u8).map(|b| (vec![b], b as Rank)).collect();
        ranks.push(("ж".as_bytes().to_vec(), 256));
        let enc = Encoder::from_ranks(ranks, "gpt2", vec![]).unwrap();
        let atoms = enc.atoms.as_ref().expect("ж is an atom");
        assert_eq!(atoms.at("aж".as_bytes(), 1), Some((256, 2)));
        let malformed: [&[u8]; 5] = [
            &[0xE0, 0x90, 0xB6],
            &[0xF0, 0x80, 0x90, 0xB6],
            &[0xD0],
            &[0xD0, 0x41],
            &[0xB6],
        ];
        for bytes in malformed {
            assert_eq!(atoms.at(bytes, 0), None, "{bytes:x?}");
        }
    }

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
