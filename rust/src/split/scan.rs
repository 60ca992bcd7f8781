//! Hand-written scanners for the named split patterns on ASCII text.
//!
//! Most text is ASCII, where each pattern's branches reduce to a few byte classes. A
//! scanner returns the end of the piece starting at `start` (the lookahead already
//! applied), or `None` whenever a non-ASCII byte could change the answer (a Unicode
//! letter, digit, space or case fold ahead); the caller then asks the Unicode scanner.
//! Runs (letters, spaces, punctuation) are found 8 bytes at a time with u64 arithmetic
//! (SWAR), which ends most words without a mispredicted loop exit. Tests compare every
//! piece with the original regex on real and adversarial text.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scanner {
    Gpt2,
    Cl100k,
    O200k,
}

// Byte classes, as bits so that one test can accept several.
const UPPER: u8 = 1;
const LOWER: u8 = 2;
const LETTER: u8 = UPPER | LOWER;
const DIGIT: u8 = 4;
/// `\s` in ASCII: tab, newline, vertical tab, form feed, carriage return, space.
const SPACE: u8 = 8;
/// Everything else in ASCII: `[^\s\p{L}\p{N}]`.
const OTHER: u8 = 16;
const NON_ASCII: u8 = 32;
/// The class past the end of the text.
const END: u8 = 0;

static CLASS: [u8; 256] = {
    let mut table = [OTHER; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            b'A'..=b'Z' => UPPER,
            b'a'..=b'z' => LOWER,
            b'0'..=b'9' => DIGIT,
            b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' => SPACE,
            0x80.. => NON_ASCII,
            _ => OTHER,
        };
        b += 1;
    }
    table
};

#[inline(always)]
fn class(b: u8) -> u8 {
    CLASS[b as usize]
}

/// The class of `s[i]`, `END` past the end.
#[inline(always)]
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).map_or(END, |&b| class(b))
}

// SWAR: eight bytes in a u64 (little-endian, so byte k is bits 8k..8k+8); a byte set is
// reported by the high bit of each byte.
const HIGH: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

const fn splat(b: u8) -> u64 {
    0x0101_0101_0101_0101 * b as u64
}

/// The bytes of `x` that are ASCII and within `lo..=hi`.
#[inline(always)]
fn within(x: u64, lo: u8, hi: u8) -> u64 {
    // With the high bits cleared, each byte plus at most 0x80 stays below 0x100: no
    // carry crosses into the next byte, and the sum's high bit says "at least lo" (or
    // "more than hi").
    let y = x & LOW7;
    let at_least_lo = y + splat(0x80 - lo);
    let above_hi = y + splat(0x7f - hi);
    at_least_lo & !above_hi & !x & HIGH
}

#[inline(always)]
fn letters(x: u64) -> u64 {
    // Setting bit 5 folds `A..=Z` onto `a..=z` and nothing else onto them.
    within(x | splat(0x20), b'a', b'z')
}

#[inline(always)]
fn uppers(x: u64) -> u64 {
    within(x, b'A', b'Z')
}

#[inline(always)]
fn lowers(x: u64) -> u64 {
    within(x, b'a', b'z')
}

#[inline(always)]
fn digit_bytes(x: u64) -> u64 {
    within(x, b'0', b'9')
}

#[inline(always)]
fn spaces(x: u64) -> u64 {
    within(x, b'\t', b'\r') | within(x, b' ', b' ')
}

#[inline(always)]
fn others(x: u64) -> u64 {
    !x & HIGH & !(letters(x) | digit_bytes(x) | spaces(x))
}

#[inline(always)]
fn load(chunk: &[u8]) -> u64 {
    u64::from_le_bytes(chunk.try_into().expect("8 bytes"))
}

/// Advances from `i` over bytes of the classes `keep` (`swar` finds the same bytes 8 at a
/// time); `None` if it stops at a non-ASCII byte.
#[inline(always)]
fn run(s: &[u8], mut i: usize, keep: u8, swar: impl Fn(u64) -> u64) -> Option<usize> {
    while let Some(chunk) = s.get(i..i + 8) {
        let stop = !swar(load(chunk)) & HIGH;
        if stop != 0 {
            i += (stop.trailing_zeros() / 8) as usize;
            return (s[i] < 0x80).then_some(i);
        }
        i += 8;
    }
    while let Some(&b) = s.get(i) {
        let c = class(b);
        if c & keep == 0 {
            return (c != NON_ASCII).then_some(i);
        }
        i += 1;
    }
    Some(i)
}

/// o200k's letters in ASCII, `[A-Z]*[a-z]*` from `i` (which holds a letter); `None` if
/// it stops at a non-ASCII byte.
#[inline(always)]
fn upper_then_lower(s: &[u8], i: usize) -> Option<usize> {
    if let Some(chunk) = s.get(i..i + 8) {
        let x = load(chunk);
        let not_upper = !uppers(x) & HIGH;
        if not_upper != 0 {
            // The first byte that is not upper, and from it the first that is not lower.
            let from = not_upper.trailing_zeros() & !7;
            let not_lower = !lowers(x) & HIGH & (u64::MAX << from);
            if not_lower != 0 {
                let end = i + (not_lower.trailing_zeros() / 8) as usize;
                return (s[end] < 0x80).then_some(end);
            }
            return run(s, i + 8, LOWER, lowers);
        }
    }
    let upper_end = run(s, i, UPPER, uppers)?;
    run(s, upper_end, LOWER, lowers)
}

impl Scanner {
    /// The end of the piece starting at `start` in any text (the Unicode scanner), or
    /// `None` to defer to the DFA.
    #[cfg(test)]
    pub fn next_end_unicode(self, text: &str, start: usize) -> Option<usize> {
        match self {
            Scanner::Gpt2 => super::unicode::gpt2(text, start),
            Scanner::Cl100k => super::unicode::cl100k(text, start),
            Scanner::O200k => super::unicode::o200k(text, start),
        }
    }
}

/// The length of a contraction after an apostrophe at `i` among `'s 't 'd 'm 'll 've 're`,
/// matching case-insensitively when `fold`; `None` when a non-ASCII byte could fold to one
/// (`ſ` is a case variant of `s`).
#[inline]
fn contraction(s: &[u8], i: usize, fold: bool) -> Option<usize> {
    let lower = |j: usize| s.get(j).map(|&b| if fold { b.to_ascii_lowercase() } else { b });
    if fold && s.get(i + 1).is_some_and(|&b| b >= 0x80) {
        return None;
    }
    Some(match lower(i + 1) {
        Some(b's' | b'd' | b'm' | b't') => 2,
        Some(b'l') if lower(i + 2) == Some(b'l') => 3,
        Some(b'v' | b'r') if lower(i + 2) == Some(b'e') => 3,
        Some(b'l' | b'v' | b'r') if fold && s.get(i + 2).is_some_and(|&b| b >= 0x80) => return None,
        _ => 0,
    })
}

/// A whitespace run from `start` (a space): its end and where its last `\r` or `\n` is.
#[inline(always)]
fn space_run(s: &[u8], start: usize) -> Option<(usize, Option<usize>)> {
    // A single space or newline before a word, a digit or punctuation.
    if s.get(start + 1)
        .is_some_and(|&b| class(b) & (LETTER | DIGIT | OTHER) != 0)
    {
        let newline = s[start] == b'\n' || s[start] == b'\r';
        return Some((start + 1, newline.then_some(start)));
    }
    // Most runs end within 8 bytes: their end and last newline come from one chunk.
    if let Some(chunk) = s.get(start..start + 8) {
        let x = load(chunk);
        let stop = !spaces(x) & HIGH;
        if stop != 0 {
            let run_bits = stop.trailing_zeros() & !7;
            let end = start + (run_bits / 8) as usize;
            if s[end] >= 0x80 {
                return None;
            }
            let newlines = newline_bytes(x) & !(u64::MAX << run_bits);
            let last_newline = (newlines != 0).then(|| start + (63 - newlines.leading_zeros() as usize) / 8);
            return Some((end, last_newline));
        }
    }
    long_space_run(s, start)
}

/// `space_run` for a run that fills its first chunk: 8 bytes at a time, keeping the
/// last newline of each chunk's part of the run, then byte by byte.
#[inline(always)]
fn long_space_run(s: &[u8], start: usize) -> Option<(usize, Option<usize>)> {
    let (mut i, mut last_newline) = (start, None);
    while let Some(chunk) = s.get(i..i + 8) {
        let x = load(chunk);
        let stop = !spaces(x) & HIGH;
        let run_bits = stop.trailing_zeros() & !7;
        let newlines = newline_bytes(x) & !u64::MAX.checked_shl(run_bits).unwrap_or(0);
        if newlines != 0 {
            last_newline = Some(i + (63 - newlines.leading_zeros() as usize) / 8);
        }
        if stop != 0 {
            return (x >> run_bits & 0x80 == 0).then_some((i + (run_bits / 8) as usize, last_newline));
        }
        i += 8;
    }
    while let Some(&b) = s.get(i) {
        match class(b) {
            SPACE => {
                if b == b'\n' || b == b'\r' {
                    last_newline = Some(i);
                }
                i += 1;
            }
            NON_ASCII => return None,
            _ => break,
        }
    }
    Some((i, last_newline))
}

/// `\s+(?!\S)`: a run of two or more before a non-space gives back its last byte.
#[inline]
fn lookahead_trim(s: &[u8], start: usize, end: usize) -> usize {
    if end < s.len() && end - start >= 2 {
        end - 1
    } else {
        end
    }
}

/// `\p{N}{1,3}`: up to three digits; `None` if a non-ASCII byte (maybe a digit) could extend it.
#[inline]
fn digits(s: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    while i < start + 3 {
        match at(s, i) {
            DIGIT => i += 1,
            NON_ASCII => return None,
            _ => break,
        }
    }
    Some(i)
}

/// ` ?[^\s\p{L}\p{N}]+` followed by a run of `trailing` bytes (`trailing_bytes` finds
/// them 8 at a time), from `start` whose next byte's class is `next`: `Some(Some(end))`
/// where this branch matches, `Some(None)` where it does not, `None` to defer.
#[inline(always)]
fn punctuation(
    s: &[u8],
    start: usize,
    next: u8,
    trailing: fn(u8) -> bool,
    trailing_bytes: impl Fn(u64) -> u64,
) -> Option<Option<usize>> {
    let body = if s[start] == b' ' && next == OTHER {
        start + 1
    } else {
        start
    };
    if class(s[body]) != OTHER {
        return Some(None);
    }
    // One punctuation byte before a word, a digit or a space (", ", "(x").
    if s.get(body + 1)
        .is_some_and(|&b| b == b' ' || class(b) & (LETTER | DIGIT) != 0)
    {
        return Some(Some(body + 1));
    }
    // Both runs within one chunk (")\n", ":"), as in `upper_then_lower`.
    if let Some(chunk) = s.get(body..body + 8) {
        let x = load(chunk);
        let not_other = !others(x) & HIGH;
        if not_other != 0 {
            let from = not_other.trailing_zeros() & !7;
            if x >> from & 0x80 != 0 {
                return None;
            }
            let not_trailing = !trailing_bytes(x) & HIGH & (u64::MAX << from);
            if not_trailing != 0 {
                return Some(Some(body + (not_trailing.trailing_zeros() / 8) as usize));
            }
        }
    }
    let end = run(s, body + 1, OTHER, others)?;
    Some(Some(end + s[end..].iter().take_while(|&&b| trailing(b)).count()))
}

/// `[\r\n]`, 8 bytes at a time.
#[inline(always)]
fn newline_bytes(x: u64) -> u64 {
    within(x, b'\n', b'\n') | within(x, b'\r', b'\r')
}

pub(crate) fn gpt2(s: &[u8], start: usize) -> Option<usize> {
    let b = s[start];
    let c = class(b);
    if c & LETTER != 0 {
        return run(s, start + 1, LETTER, letters);
    }
    if b == b'\'' {
        let n = contraction(s, start, false)?;
        if n > 0 {
            return Some(start + n);
        }
    }
    // ` ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+`
    let (body, body_class) = if b == b' ' {
        match at(s, start + 1) {
            SPACE | END => (start, SPACE),
            NON_ASCII => return None,
            k => (start + 1, k),
        }
    } else {
        (start, c)
    };
    match body_class {
        UPPER | LOWER => run(s, body + 1, LETTER, letters),
        DIGIT => run(s, body + 1, DIGIT, digit_bytes),
        // Mostly one byte before a word, a digit or a space.
        OTHER if at(s, body + 1) & (LETTER | DIGIT | SPACE) != 0 => Some(body + 1),
        OTHER => run(s, body + 1, OTHER, others),
        SPACE => {
            let (end, _) = space_run(s, start)?;
            Some(lookahead_trim(s, start, end))
        }
        _ => None,
    }
}

#[inline(always)]
pub(crate) fn cl100k(s: &[u8], start: usize) -> Option<usize> {
    let b = s[start];
    let c = class(b);
    if c & LETTER != 0 {
        return run(s, start + 1, LETTER, letters);
    }
    if c == DIGIT {
        return digits(s, start);
    }
    if c == NON_ASCII {
        return None;
    }
    if b == b'\'' {
        let n = contraction(s, start, true)?;
        if n > 0 {
            return Some(start + n);
        }
    }
    // A space or punctuation.
    let next = at(s, start + 1);
    if next == NON_ASCII {
        return None;
    }
    let newline = b == b'\n' || b == b'\r';
    // `[^\r\n\p{L}\p{N}]?\p{L}+`: one non-newline, non-alphanumeric byte before letters.
    if !newline && next & LETTER != 0 {
        return run(s, start + 2, LETTER, letters);
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    if let Some(end) = punctuation(s, start, next, |b| b == b'\r' || b == b'\n', newline_bytes)? {
        return Some(end);
    }
    // `\s++$ | \s*[\r\n] | \s+(?!\S) | \s`
    let (end, last_newline) = space_run(s, start)?;
    Some(if end == s.len() {
        end
    } else if let Some(nl) = last_newline {
        nl + 1
    } else {
        lookahead_trim(s, start, end)
    })
}

#[inline(always)]
pub(crate) fn o200k(s: &[u8], start: usize) -> Option<usize> {
    let b = s[start];
    let c = class(b);
    // Both letter branches reduce, in ASCII, to prefix? Upper* Lower* (not empty) and an
    // optional case-insensitive contraction.
    if c & LETTER != 0 {
        return o200k_word(s, start);
    }
    if c == DIGIT {
        return digits(s, start);
    }
    if c == NON_ASCII {
        return None;
    }
    // A space or punctuation.
    let next = at(s, start + 1);
    if next == NON_ASCII {
        return None;
    }
    let newline = b == b'\n' || b == b'\r';
    if !newline && next & LETTER != 0 {
        return o200k_word(s, start + 1);
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n/]*`
    let newline_or_slash = |x| newline_bytes(x) | within(x, b'/', b'/');
    if let Some(end) = punctuation(s, start, next, |b| matches!(b, b'\r' | b'\n' | b'/'), newline_or_slash)? {
        return Some(end);
    }
    // `\s*[\r\n]+ | \s+(?!\S) | \s+`
    let (end, last_newline) = space_run(s, start)?;
    Some(match last_newline {
        Some(nl) => nl + 1,
        None => lookahead_trim(s, start, end),
    })
}

/// o200k's letters from `from` (a letter) and the contraction after them.
#[inline(always)]
fn o200k_word(s: &[u8], from: usize) -> Option<usize> {
    let end = upper_then_lower(s, from)?;
    if s.get(end) == Some(&b'\'') {
        return Some(end + contraction(s, end, true)?);
    }
    Some(end)
}

/// A case-insensitive contraction at the apostrophe `s[i]` (see `contraction`).
#[inline]
pub(crate) fn contraction_at(s: &[u8], i: usize) -> Option<usize> {
    contraction(s, i, true)
}

/// GPT-2's case-sensitive contraction at the apostrophe `s[i]` (see `contraction`).
#[inline]
pub(crate) fn contraction_case_sensitive(s: &[u8], i: usize) -> usize {
    contraction(s, i, false).unwrap_or(0)
}
