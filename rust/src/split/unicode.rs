//! The named split patterns on any text, by hand, for the pieces the ASCII
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

#[inline(always)]
fn flags(t: &Table, c: u32) -> u8 {
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

/// A character of the text: its code point, length in bytes and flags.
#[derive(Clone, Copy)]
struct Char {
    code: u32,
    len: usize,
    flags: u8,
}

impl Char {
    #[inline(always)]
    fn is(self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    #[inline(always)]
    fn is_newline(self) -> bool {
        self.code == u32::from(b'\r') || self.code == u32::from(b'\n')
    }
}

/// Text with its character classes, walked by byte offsets (always character boundaries).
struct Cursor<'a> {
    s: &'a [u8],
    t: &'static Table,
}

impl Cursor<'_> {
    /// The character at byte `i` and its flags; `None` at the end. The text is valid
    /// UTF-8 (it came from a `str`), so the leading byte gives the length and no
    /// continuation byte needs checking.
    #[inline(always)]
    fn at(&self, i: usize) -> Option<Char> {
        let s = self.s;
        let b0 = u32::from(*s.get(i)?);
        let cont = |k: usize| u32::from(s[i + k]) & 0x3f;
        let (code, len) = if b0 < 0x80 {
            (b0, 1)
        } else if b0 < 0xe0 {
            ((b0 & 0x1f) << 6 | cont(1), 2)
        } else if b0 < 0xf0 {
            ((b0 & 0x0f) << 12 | cont(1) << 6 | cont(2), 3)
        } else {
            ((b0 & 0x07) << 18 | cont(1) << 12 | cont(2) << 6 | cont(3), 4)
        };
        Some(Char {
            code,
            len,
            flags: flags(self.t, code),
        })
    }

    /// The end of the run of characters from `i` whose flags meet `keep`.
    #[inline(always)]
    fn run(&self, mut i: usize, keep: u8) -> usize {
        while let Some(c) = self.at(i) {
            if !c.is(keep) {
                break;
            }
            i += c.len;
        }
        i
    }

    /// `\p{N}{1,3}` from `i` (a number).
    fn numbers(&self, mut i: usize) -> usize {
        for _ in 0..3 {
            match self.at(i) {
                Some(c) if c.is(NUMBER) => i += c.len,
                _ => break,
            }
        }
        i
    }

    /// A case-insensitive contraction `'s 't 're 've 'm 'll 'd` at `i`: its length (0 if
    /// none), or `None` where a non-ASCII character follows the apostrophe.
    #[inline(always)]
    fn contraction(&self, i: usize) -> Option<usize> {
        if self.s.get(i) != Some(&b'\'') {
            return Some(0);
        }
        super::scan::contraction_at(self.s, i)
    }

    /// `\s` runs: `\s*[\r\n]` / `\s*[\r\n]+` (to the last newline), the lookahead
    /// `\s+(?!\S)` (a run of two or more before a non-space gives back its last
    /// character) and `\s` / `\s+`, from `start` (a space). A run that ends the text is
    /// taken whole, before the newline branch in cl100k (`\s++$`, `end_first`) and after
    /// it in o200k (`\s+(?!\S)`). GPT-2 has no newline branch (`newlines` false).
    fn spaces(&self, start: usize, end_first: bool, newlines: bool) -> usize {
        let (mut i, mut last_newline, mut last, mut count) = (start, None, 0, 0);
        while let Some(c) = self.at(i) {
            if !c.is(SPACE) {
                break;
            }
            if newlines && c.is_newline() {
                last_newline = Some(i);
            }
            last = c.len;
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

    /// ` ?[^\s\p{L}\p{N}]+` and then a run of the bytes `trailing`, from `start` (the
    /// character `c0`): its end, or `None` where this branch does not match.
    #[inline(always)]
    fn punctuation(&self, start: usize, c0: Char, trailing: fn(u8) -> bool) -> Option<usize> {
        const NOT_OTHER: u8 = SPACE | LETTER | NUMBER;
        let body = if !c0.is(NOT_OTHER) {
            start
        } else if c0.code == u32::from(b' ') && self.at(start + 1).is_some_and(|c| !c.is(NOT_OTHER)) {
            start + 1
        } else {
            return None;
        };
        let mut end = body;
        while let Some(c) = self.at(end) {
            if c.is(NOT_OTHER) {
                break;
            }
            end += c.len;
        }
        Some(end + self.s[end..].iter().take_while(|&&b| trailing(b)).count())
    }

    /// `[^\r\n\p{L}\p{N}]`: may prefix a word.
    #[inline(always)]
    fn prefix(c: Char) -> bool {
        !c.is(LETTER | NUMBER) && !c.is_newline()
    }
}

/// The end of the GPT-2 piece starting at `start` (never `None`: its contractions are
/// case-sensitive).
pub fn gpt2(s: &str, start: usize) -> Option<usize> {
    let cur = Cursor {
        s: s.as_bytes(),
        t: table(),
    };
    let c0 = cur.at(start)?;
    // `'(?:[sdmt]|ll|ve|re)`
    if c0.code == u32::from(b'\'') {
        let n = super::scan::contraction_case_sensitive(cur.s, start);
        if n > 0 {
            return Some(start + n);
        }
    }
    // ` ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++`: the class of the first character after
    // an optional space decides the branch.
    let (body, c) = match cur.at(start + c0.len) {
        Some(c1) if c0.code == u32::from(b' ') && !c1.is(SPACE) => (start + 1, c1),
        _ => (start, c0),
    };
    let end = if c.is(LETTER) {
        cur.run(body + c.len, LETTER)
    } else if c.is(NUMBER) {
        cur.run(body + c.len, NUMBER)
    } else if !c.is(SPACE) {
        let mut end = body + c.len;
        while let Some(c) = cur.at(end).filter(|c| !c.is(SPACE | LETTER | NUMBER)) {
            end += c.len;
        }
        end
    } else {
        // `\s++$|\s+(?!\S)|\s`
        cur.spaces(start, true, false)
    };
    Some(end)
}

/// The end of the cl100k piece starting at `start`, or `None` to ask the DFA.
#[inline(always)]
pub fn cl100k(s: &str, start: usize) -> Option<usize> {
    let cur = Cursor {
        s: s.as_bytes(),
        t: table(),
    };
    let c0 = cur.at(start)?;
    // `'(?i:[sdmt]|ll|ve|re)`
    let n = cur.contraction(start)?;
    if n > 0 {
        return Some(start + n);
    }
    // `[^\r\n\p{L}\p{N}]?+\p{L}++`
    if c0.is(LETTER) {
        return Some(cur.run(start + c0.len, LETTER));
    }
    if c0.is(NUMBER) {
        return Some(cur.numbers(start));
    }
    let next = start + c0.len;
    if Cursor::prefix(c0) {
        if let Some(c1) = cur.at(next).filter(|c| c.is(LETTER)) {
            return Some(cur.run(next + c1.len, LETTER));
        }
    }
    // ` ?[^\s\p{L}\p{N}]++[\r\n]*+`
    if let Some(end) = cur.punctuation(start, c0, |b| b == b'\r' || b == b'\n') {
        return Some(end);
    }
    Some(cur.spaces(start, true, true))
}

/// The end of the o200k piece starting at `start`, or `None` to ask the DFA.
#[inline(always)]
pub fn o200k(s: &str, start: usize) -> Option<usize> {
    let cur = Cursor {
        s: s.as_bytes(),
        t: table(),
    };
    let c0 = cur.at(start)?;
    let next = start + c0.len;
    let has_prefix = Cursor::prefix(c0);
    // The two letter branches, each first with the optional prefix, then without. (Plain
    // `if`s: `or_else` chains were left as calls once the splitter loop had three copies.)
    let mut word = None;
    if has_prefix {
        word = word_lower(&cur, next);
    }
    if word.is_none() {
        word = word_lower(&cur, start);
    }
    if word.is_none() && has_prefix {
        word = word_upper(&cur, next);
    }
    if word.is_none() {
        word = word_upper(&cur, start);
    }
    if let Some(end) = word {
        return Some(end + cur.contraction(end)?);
    }
    if c0.is(NUMBER) {
        return Some(cur.numbers(start));
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n/]*`
    if let Some(end) = cur.punctuation(start, c0, |b| matches!(b, b'\r' | b'\n' | b'/')) {
        return Some(end);
    }
    Some(cur.spaces(start, false, true))
}

/// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+` from `i`, as a backtracking
/// engine finds it: the upper-ish run, backed off to its last character that is also
/// lower-ish unless a lower-ish character follows it; then the lower-ish run.
#[inline(always)]
fn word_lower(cur: &Cursor, i: usize) -> Option<usize> {
    let (mut j, mut last_both) = (i, None);
    while let Some(c) = cur.at(j) {
        if !c.is(UPPERISH) {
            if c.is(LOWERISH) {
                return Some(cur.run(j + c.len, LOWERISH));
            }
            break;
        }
        j += c.len;
        if c.is(LOWERISH) {
            last_both = Some(j);
        }
    }
    // The run's last lower-ish character is followed by one that is not lower-ish.
    last_both
}

/// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*` from `i`.
#[inline(always)]
fn word_upper(cur: &Cursor, i: usize) -> Option<usize> {
    let j = cur.run(i, UPPERISH);
    (j > i).then(|| cur.run(j, LOWERISH))
}
