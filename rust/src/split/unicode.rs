//! The cl100k and o200k split patterns on any text, by hand, for the pieces the ASCII
//! scanner (`scan.rs`) leaves: characters are classified with a table built from the
//! Unicode classes the patterns name (as regex-syntax defines them, which is what
//! tiktoken's regex engine uses), and each branch is followed in the order a backtracking
//! engine tries it. `None` is returned only where a case-insensitive contraction meets a
//! non-ASCII character; the caller then asks the DFA. Tests compare every piece with the
//! original regex on adversarial Unicode text.

use regex_syntax::hir::{Class, HirKind};
use std::sync::OnceLock;

/// `\p{L}`
const LETTER: u8 = 1;
/// `\p{N}`
const NUMBER: u8 = 2;
/// `\s` (Unicode White_Space)
const SPACE: u8 = 4;
/// o200k's `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`
const UPPERISH: u8 = 8;
/// o200k's `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`
const LOWERISH: u8 = 16;

struct Table {
    /// Flags of every character below U+10000 (64 KB).
    bmp: Box<[u8]>,
    /// The rest: sorted, disjoint ranges (first, last, flags).
    astral: Vec<(u32, u32, u8)>,
}

fn class_ranges(class: &str) -> Vec<(u32, u32)> {
    let hir = regex_syntax::Parser::new().parse(class).expect("a valid Unicode class");
    match hir.kind() {
        HirKind::Class(Class::Unicode(c)) => c.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)).collect(),
        _ => unreachable!("{class} is a Unicode class"),
    }
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut bmp = vec![0u8; 0x10000].into_boxed_slice();
        let mut astral_flags: Vec<(u32, u32, u8)> = Vec::new();
        for (flag, class) in [
            (LETTER, r"\p{L}"),
            (NUMBER, r"\p{N}"),
            (SPACE, r"\s"),
            (UPPERISH, r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]"),
            (LOWERISH, r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"),
        ] {
            for (lo, hi) in class_ranges(class) {
                for c in lo..=hi.min(0xffff) {
                    bmp[c as usize] |= flag;
                }
                if hi >= 0x10000 {
                    astral_flags.push((lo.max(0x10000), hi, flag));
                }
            }
        }
        // Cut the astral ranges at every boundary so that each piece has one set of flags.
        let mut cuts: Vec<u32> = astral_flags.iter().flat_map(|&(lo, hi, _)| [lo, hi + 1]).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut astral = Vec::new();
        for w in cuts.windows(2) {
            let (lo, hi) = (w[0], w[1] - 1);
            let flags = astral_flags
                .iter()
                .filter(|&&(a, b, _)| a <= lo && hi <= b)
                .fold(0, |f, &(_, _, g)| f | g);
            if flags != 0 {
                astral.push((lo, hi, flags));
            }
        }
        Table { bmp, astral }
    })
}

#[inline]
fn flags(t: &Table, c: char) -> u8 {
    let c = c as u32;
    if c < 0x10000 {
        return t.bmp[c as usize];
    }
    match t.astral.binary_search_by(|&(lo, hi, _)| {
        if hi < c {
            std::cmp::Ordering::Less
        } else if lo > c {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    }) {
        Ok(i) => t.astral[i].2,
        Err(_) => 0,
    }
}

/// Text with its character classes, walked by byte offsets.
struct Cursor<'a> {
    s: &'a str,
    t: &'static Table,
}

impl Cursor<'_> {
    /// The character at byte `i` and its flags; `None` at the end.
    #[inline]
    fn at(&self, i: usize) -> Option<(char, u8)> {
        let c = self.s[i..].chars().next()?;
        Some((c, flags(self.t, c)))
    }

    /// The end of the run of characters from `i` whose flags meet `keep`.
    #[inline]
    fn run(&self, mut i: usize, keep: impl Fn(char, u8) -> bool) -> usize {
        while let Some((c, f)) = self.at(i) {
            if !keep(c, f) {
                break;
            }
            i += c.len_utf8();
        }
        i
    }

    /// `\p{N}{1,3}` from `i` (a number).
    fn numbers(&self, mut i: usize) -> usize {
        for _ in 0..3 {
            match self.at(i) {
                Some((c, f)) if f & NUMBER != 0 => i += c.len_utf8(),
                _ => break,
            }
        }
        i
    }

    /// A case-insensitive contraction `'s 't 're 've 'm 'll 'd` at `i`: its length (0 if
    /// none), or `None` where a non-ASCII character follows the apostrophe.
    fn contraction(&self, i: usize) -> Option<usize> {
        let b = self.s.as_bytes();
        if b.get(i) != Some(&b'\'') {
            return Some(0);
        }
        super::scan::contraction_at(b, i)
    }

    /// `\s` runs: `\s*[\r\n]` / `\s*[\r\n]+` (to the last newline), the lookahead
    /// `\s+(?!\S)` (a run of two or more before a non-space gives back its last
    /// character) and `\s` / `\s+`, from `start` (a space). A run that ends the text is
    /// taken whole, before the newline branch in cl100k (`\s++$`, `end_first`) and after
    /// it in o200k (`\s+(?!\S)`).
    fn spaces(&self, start: usize, end_first: bool) -> usize {
        let (mut i, mut last_newline, mut last, mut count) = (start, None, 0, 0);
        while let Some((c, f)) = self.at(i) {
            if f & SPACE == 0 {
                break;
            }
            if c == '\r' || c == '\n' {
                last_newline = Some(i);
            }
            last = c.len_utf8();
            count += 1;
            i += last;
        }
        let at_end = i == self.s.len();
        if at_end && end_first {
            i
        } else if let Some(nl) = last_newline {
            nl + 1
        } else if at_end {
            i
        } else if count >= 2 {
            i - last
        } else {
            i
        }
    }

    /// ` ?[^\s\p{L}\p{N}]+` and then a run of the bytes `trailing`, from `start`:
    /// its end, or `None` where this branch does not match.
    fn punctuation(&self, start: usize, trailing: fn(u8) -> bool) -> Option<usize> {
        let other = |_: char, f: u8| f & (SPACE | LETTER | NUMBER) == 0;
        let body = match self.at(start)? {
            (' ', _) if self.at(start + 1).is_some_and(|(c, f)| other(c, f)) => start + 1,
            (c, f) if other(c, f) => start,
            _ => return None,
        };
        let end = self.run(body, other);
        Some(end + self.s.as_bytes()[end..].iter().take_while(|&&b| trailing(b)).count())
    }

    /// `[^\r\n\p{L}\p{N}]`: may prefix a word.
    #[inline]
    fn prefix(c: char, f: u8) -> bool {
        f & (LETTER | NUMBER) == 0 && c != '\r' && c != '\n'
    }
}

/// The end of the cl100k piece starting at `start`, or `None` to ask the DFA.
pub fn cl100k(s: &str, start: usize) -> Option<usize> {
    let cur = Cursor { s, t: table() };
    let (c0, f0) = cur.at(start)?;
    // `'(?i:[sdmt]|ll|ve|re)`
    let n = cur.contraction(start)?;
    if n > 0 {
        return Some(start + n);
    }
    let letters = |i| cur.run(i, |_, f| f & LETTER != 0);
    // `[^\r\n\p{L}\p{N}]?+\p{L}++`
    if f0 & LETTER != 0 {
        return Some(letters(start));
    }
    if f0 & NUMBER != 0 {
        return Some(cur.numbers(start));
    }
    let next = start + c0.len_utf8();
    if Cursor::prefix(c0, f0) && cur.at(next).is_some_and(|(_, f)| f & LETTER != 0) {
        return Some(letters(next));
    }
    // ` ?[^\s\p{L}\p{N}]++[\r\n]*+`
    if let Some(end) = cur.punctuation(start, |b| b == b'\r' || b == b'\n') {
        return Some(end);
    }
    Some(cur.spaces(start, true))
}

/// The end of the o200k piece starting at `start`, or `None` to ask the DFA.
pub fn o200k(s: &str, start: usize) -> Option<usize> {
    let cur = Cursor { s, t: table() };
    let (c0, f0) = cur.at(start)?;
    let next = start + c0.len_utf8();
    let has_prefix = Cursor::prefix(c0, f0);
    // The two letter branches, each first with the optional prefix, then without.
    for branch in [word_lower, word_upper] {
        for from in [has_prefix.then_some(next), Some(start)].into_iter().flatten() {
            if let Some(end) = branch(&cur, from) {
                return Some(end + cur.contraction(end)?);
            }
        }
    }
    if f0 & NUMBER != 0 {
        return Some(cur.numbers(start));
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n/]*`
    if let Some(end) = cur.punctuation(start, |b| matches!(b, b'\r' | b'\n' | b'/')) {
        return Some(end);
    }
    Some(cur.spaces(start, false))
}

/// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+` from `i`, as a backtracking
/// engine finds it: the upper-ish run, backed off to its last character that is also
/// lower-ish unless a lower-ish character follows it; then the lower-ish run.
fn word_lower(cur: &Cursor, i: usize) -> Option<usize> {
    let (mut j, mut last_both) = (i, None);
    while let Some((c, f)) = cur.at(j) {
        if f & UPPERISH == 0 {
            break;
        }
        if f & LOWERISH != 0 {
            last_both = Some(j + c.len_utf8());
        }
        j += c.len_utf8();
    }
    if cur.at(j).is_some_and(|(_, f)| f & LOWERISH != 0) {
        return Some(cur.run(j, |_, f| f & LOWERISH != 0));
    }
    // The run's last lower-ish character is followed by one that is not lower-ish.
    last_both
}

/// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*` from `i`.
fn word_upper(cur: &Cursor, i: usize) -> Option<usize> {
    let j = cur.run(i, |_, f| f & UPPERISH != 0);
    (j > i).then(|| cur.run(j, |_, f| f & LOWERISH != 0))
}
