//! Hand-written scanners for the named split patterns on ASCII text.
//!
//! Most text is ASCII, where each pattern's branches reduce to a few byte classes. A
//! scanner returns the end of the piece starting at `start` (the lookahead already
//! applied), or `None` whenever a non-ASCII byte could change the answer (a Unicode
//! letter, digit, space or case fold ahead); the caller then asks the DFA. Tests compare
//! every piece with the original regex on real and adversarial text.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scanner {
    Gpt2,
    Cl100k,
    O200k,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Upper,
    Lower,
    Digit,
    /// `\s` in ASCII: tab, newline, vertical tab, form feed, carriage return, space.
    Space,
    /// Everything else in ASCII: `[^\s\p{L}\p{N}]`.
    Other,
    NonAscii,
}

#[inline]
fn class(b: u8) -> Class {
    match b {
        b'A'..=b'Z' => Class::Upper,
        b'a'..=b'z' => Class::Lower,
        b'0'..=b'9' => Class::Digit,
        b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' => Class::Space,
        0x80.. => Class::NonAscii,
        _ => Class::Other,
    }
}

/// The class of `s[i]`, `None` past the end.
#[inline]
fn at(s: &[u8], i: usize) -> Option<Class> {
    s.get(i).map(|&b| class(b))
}

#[inline]
fn is_letter(c: Option<Class>) -> bool {
    matches!(c, Some(Class::Upper | Class::Lower))
}

/// Advances over bytes of the classes `keep`; `None` if it stops at a non-ASCII byte.
#[inline]
fn run(s: &[u8], mut i: usize, keep: impl Fn(Class) -> bool) -> Option<usize> {
    while let Some(c) = at(s, i) {
        if keep(c) {
            i += 1;
        } else if c == Class::NonAscii {
            return None;
        } else {
            break;
        }
    }
    Some(i)
}

impl Scanner {
    /// The end of the piece starting at `start` (`start < s.len()`), or `None` to defer to the DFA.
    #[inline]
    pub fn next_end(self, s: &[u8], start: usize) -> Option<usize> {
        match self {
            Scanner::Gpt2 => gpt2(s, start),
            Scanner::Cl100k => cl100k(s, start),
            Scanner::O200k => o200k(s, start),
        }
    }

    /// The end of the piece starting at `start` in any text (the Unicode scanner), or
    /// `None` to defer to the DFA.
    #[inline]
    pub fn next_end_unicode(self, text: &str, start: usize) -> Option<usize> {
        match self {
            Scanner::Gpt2 => None,
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

/// A whitespace run from `start`: its end `r` and whether it holds `\r` or `\n`.
/// Then `\s+(?!\S)`: a run of two or more before a non-space gives back its last byte.
#[inline]
fn space_run(s: &[u8], start: usize) -> Option<(usize, Option<usize>)> {
    let end = run(s, start, |c| c == Class::Space)?;
    let last_newline = s[start..end]
        .iter()
        .rposition(|&b| b == b'\n' || b == b'\r')
        .map(|p| start + p);
    Some((end, last_newline))
}

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
            Some(Class::Digit) => i += 1,
            Some(Class::NonAscii) => return None,
            _ => break,
        }
    }
    Some(i)
}

/// ` ?[^\s\p{L}\p{N}]+` followed by a run of `trailing` bytes, from `start` whose next
/// byte's class is `next`: `Some(Some(end))` where this branch matches, `Some(None)` where
/// it does not, `None` to defer to the DFA.
#[inline]
fn punctuation(s: &[u8], start: usize, next: Option<Class>, trailing: fn(u8) -> bool) -> Option<Option<usize>> {
    let body = if s[start] == b' ' && next == Some(Class::Other) {
        start + 1
    } else {
        start
    };
    if class(s[body]) != Class::Other {
        return Some(None);
    }
    let end = run(s, body, |k| k == Class::Other)?;
    Some(Some(end + s[end..].iter().take_while(|&&b| trailing(b)).count()))
}

fn gpt2(s: &[u8], start: usize) -> Option<usize> {
    let c = class(s[start]);
    if s[start] == b'\'' {
        let n = contraction(s, start, false)?;
        if n > 0 {
            return Some(start + n);
        }
    }
    // ` ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+`
    let (body, body_class) = if s[start] == b' ' {
        match at(s, start + 1) {
            Some(Class::Space) | None => (start, Class::Space),
            Some(Class::NonAscii) => return None,
            Some(k) => (start + 1, k),
        }
    } else {
        (start, c)
    };
    match body_class {
        Class::Upper | Class::Lower => run(s, body, |k| matches!(k, Class::Upper | Class::Lower)),
        Class::Digit => run(s, body, |k| k == Class::Digit),
        Class::Other => run(s, body, |k| k == Class::Other),
        Class::Space => {
            let (end, _) = space_run(s, start)?;
            Some(lookahead_trim(s, start, end))
        }
        Class::NonAscii => None,
    }
}

fn cl100k(s: &[u8], start: usize) -> Option<usize> {
    let c = class(s[start]);
    if s[start] == b'\'' {
        let n = contraction(s, start, true)?;
        if n > 0 {
            return Some(start + n);
        }
    }
    match c {
        Class::NonAscii => None,
        Class::Upper | Class::Lower => run(s, start, |k| matches!(k, Class::Upper | Class::Lower)),
        Class::Digit => digits(s, start),
        Class::Space | Class::Other => {
            let next = at(s, start + 1);
            if next == Some(Class::NonAscii) {
                return None;
            }
            let newline = s[start] == b'\n' || s[start] == b'\r';
            // `[^\r\n\p{L}\p{N}]?\p{L}+`: one non-newline, non-alphanumeric byte before letters.
            if !newline && is_letter(next) {
                return run(s, start + 1, |k| matches!(k, Class::Upper | Class::Lower));
            }
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            if let Some(end) = punctuation(s, start, next, |b| b == b'\r' || b == b'\n')? {
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
    }
}

fn o200k(s: &[u8], start: usize) -> Option<usize> {
    let c = class(s[start]);
    match c {
        Class::NonAscii => None,
        Class::Digit => digits(s, start),
        _ => {
            let next = at(s, start + 1);
            let newline = s[start] == b'\n' || s[start] == b'\r';
            // Both letter branches reduce, in ASCII, to prefix? Upper* Lower* (not empty)
            // and an optional case-insensitive contraction.
            let letters_from = match c {
                Class::Upper | Class::Lower => Some(start),
                _ if !newline && is_letter(next) => Some(start + 1),
                _ if !newline && next == Some(Class::NonAscii) => return None,
                _ => None,
            };
            if let Some(from) = letters_from {
                let upper_end = run(s, from, |k| k == Class::Upper)?;
                let end = run(s, upper_end, |k| k == Class::Lower)?;
                if s.get(end) == Some(&b'\'') {
                    let n = contraction_o200k(s, end)?;
                    return Some(end + n);
                }
                return Some(end);
            }
            if next == Some(Class::NonAscii) {
                return None;
            }
            // ` ?[^\s\p{L}\p{N}]+[\r\n/]*`
            if let Some(end) = punctuation(s, start, next, |b| matches!(b, b'\r' | b'\n' | b'/'))? {
                return Some(end);
            }
            // `\s*[\r\n]+ | \s+(?!\S) | \s+`
            let (end, last_newline) = space_run(s, start)?;
            Some(match last_newline {
                Some(nl) => nl + 1,
                None => lookahead_trim(s, start, end),
            })
        }
    }
}

/// A case-insensitive contraction at the apostrophe `s[i]` (see `contraction`).
#[inline]
pub(crate) fn contraction_at(s: &[u8], i: usize) -> Option<usize> {
    contraction(s, i, true)
}

/// o200k's `(?i:'s|'t|'re|'ve|'m|'ll|'d)?` after the letters: the same set as cl100k's.
#[inline]
fn contraction_o200k(s: &[u8], i: usize) -> Option<usize> {
    contraction(s, i, true)
}
