//! cl100k's and o200k's pieces of plain ASCII text, found 64 bytes at a time.
//!
//! A window of 64 bytes that begins at a piece start is classified into one bit mask per
//! byte class (letters, digits, whitespace, ...), and the starts of all its pieces come
//! from a few dozen operations on the masks, with no branch per piece. This is exact
//! because after a piece start the patterns' leftmost-first choice depends only on the
//! text from there on (they have no lookbehind), and in ASCII each choice reduces to a
//! rule over a byte's neighbours and the runs of one class it lies in:
//!
//! - a letter run is one piece (o200k: also cut where a lower-case letter meets an upper-
//!   case one), joined by the byte before it when that byte is a space or tab ending a
//!   whitespace run, or a lone punctuation byte not itself after a space;
//! - a digit run is one piece (runs of 4 or more are left to the scalar scanner);
//! - a punctuation run is one piece, joined by a space before it, with the newlines right
//!   after it;
//! - a whitespace run (less those newlines) is a piece up to its last newline, then the
//!   blanks after it less the last, then the last blank, joining what follows.
//!
//! What these rules do not cover (non-ASCII bytes, apostrophes, which may start or end a
//! contraction, a fourth digit, o200k's `/` after a newline, and the run that reaches the
//! window's end) limits the pieces taken to those before the run next to it; the caller
//! then scans on with `scan.rs`. Tests compare every piece with the original patterns.

/// The class masks of a window: bit `i` is byte `i`.
struct Classes {
    letter: u64,
    upper: u64,
    digit: u64,
    space: u64,
    newline: u64,
    /// `' '` only: the optional prefix of a punctuation piece.
    blank_space: u64,
    apostrophe: u64,
    slash: u64,
    non_ascii: u64,
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn classify(w: &[u8; 64]) -> Classes {
    use std::arch::x86_64::*;
    let mut m = [0u64; 9];
    // SAFETY: SSE2 is part of x86_64; each load reads 16 of the window's 64 bytes.
    unsafe {
        let set = |b: u8| _mm_set1_epi8(b as i8);
        // Bytes in `lo..=lo + n`: the difference from `lo`, unsigned, is at most `n`.
        let within = |v: __m128i, lo: u8, n: u8| {
            let d = _mm_sub_epi8(v, set(lo));
            _mm_cmpeq_epi8(_mm_min_epu8(d, set(n)), d)
        };
        for k in 0..4 {
            let v = _mm_loadu_si128(w.as_ptr().add(16 * k).cast());
            let eq = |b: u8| _mm_cmpeq_epi8(v, set(b));
            let bits = [
                // Setting bit 5 folds A-Z onto a-z and nothing else onto them.
                within(_mm_or_si128(v, set(0x20)), b'a', 25),
                within(v, b'A', 25),
                within(v, b'0', 9),
                _mm_or_si128(within(v, b'\t', 4), eq(b' ')),
                _mm_or_si128(eq(b'\n'), eq(b'\r')),
                eq(b' '),
                eq(b'\''),
                eq(b'/'),
                v,
            ];
            for (mask, b) in m.iter_mut().zip(bits) {
                *mask |= (_mm_movemask_epi8(b) as u16 as u64) << (16 * k);
            }
        }
    }
    let [letter, upper, digit, space, newline, blank_space, apostrophe, slash, non_ascii] = m;
    Classes {
        letter,
        upper,
        digit,
        space,
        newline,
        blank_space,
        apostrophe,
        slash,
        non_ascii,
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn classify(w: &[u8; 64]) -> Classes {
    let mask = |f: &dyn Fn(u8) -> bool| w.iter().enumerate().fold(0u64, |m, (i, &b)| m | (f(b) as u64) << i);
    Classes {
        letter: mask(&|b| b.is_ascii_alphabetic()),
        upper: mask(&|b| b.is_ascii_uppercase()),
        digit: mask(&|b| b.is_ascii_digit()),
        space: mask(&|b| matches!(b, b'\t'..=b'\r' | b' ')),
        newline: mask(&|b| b == b'\n' || b == b'\r'),
        blank_space: mask(&|b| b == b' '),
        apostrophe: mask(&|b| b == b'\''),
        slash: mask(&|b| b == b'/'),
        non_ascii: mask(&|b| b >= 0x80),
    }
}

/// The bits of `seeds` moved down (to earlier bytes) through `through`, as far as it goes
/// unbroken: a Kogge-Stone fill.
#[inline(always)]
fn fill_down(seeds: u64, mut through: u64) -> u64 {
    let mut f = seeds;
    for shift in [1, 2, 4, 8, 16, 32] {
        f |= (f >> shift) & through;
        through &= through >> shift;
    }
    f
}

/// The highest set bit of `x` at or below `at`; `x` has bit 0 set.
#[inline(always)]
fn highest_at_or_below(x: u64, at: u32) -> u32 {
    63 - (x & (u64::MAX >> (63 - at))).leading_zeros()
}

/// The piece starts of `window` (which begins at one) that are certain, bit 0 included;
/// the bytes that the rules above do not cover; whether the first of those is not ASCII.
/// `o200k` selects o200k's rules, else cl100k's.
#[inline(always)]
pub(crate) fn starts(window: &[u8; 64], o200k: bool) -> (u64, u64, bool) {
    let c = classify(window);
    let (letter, digit, space, newline) = (c.letter, c.digit, c.space, c.newline);
    let other = !(letter | digit | space);
    let before = |x: u64| x << 1; // bit i: byte i - 1 is in x
    let after = |x: u64| x >> 1; // bit i: byte i + 1 is in x
    let mut uncovered =
        c.non_ascii | c.apostrophe | (digit & before(digit) & before(before(digit)) & before(before(before(digit))));
    if o200k {
        uncovered |= c.slash & before(newline);
    }
    let run_start = |x: u64| x & !before(x);
    let (letter_runs, digit_runs, other_runs) = (run_start(letter), run_start(digit), run_start(other));
    // o200k cuts letter runs where a lower-case letter meets an upper-case one, whatever
    // follows: for the limit below, those cuts start runs of their own.
    let case_cuts = if o200k { c.upper & before(letter & !c.upper) } else { 0 };
    let runs = letter_runs | case_cuts | digit_runs | other_runs | run_start(space) | 1;
    // Pieces are taken only before the run that reaches the window's end, and before the
    // run next to the first uncovered byte.
    let mut limit = highest_at_or_below(runs, 63);
    if uncovered != 0 {
        limit = match uncovered.trailing_zeros() {
            0 => 0,
            u => limit.min(highest_at_or_below(runs, u - 1)),
        };
    }
    // Punctuation: a run joined by a space before it; a lone byte before letters joins them.
    let spaced = other_runs & before(c.blank_space);
    let joins_letters = other_runs & !after(other) & !spaced & after(letter);
    // Whitespace: the newlines right after punctuation belong to its piece.
    let seeds = newline & before(other);
    let taken = ((newline.wrapping_add(seeds)) ^ newline) & newline;
    let rest = space & !taken;
    let rest_newlines = newline & rest;
    // A newline with another later in its run does not end a piece.
    let last_newlines = rest_newlines & !after(fill_down(rest_newlines, rest));
    let last_space = space & !after(space);
    let joins_next = last_space & !newline;
    let joined_letters = letter_runs & before(joins_next | joins_letters);
    let starts = (letter_runs & !joined_letters)
        | digit_runs
        | (other_runs & !spaced)
        | run_start(rest)
        | (before(last_newlines) & rest)
        | joins_next
        | case_cuts
        | 1;
    let below = if limit == 0 { 1 } else { (1u64 << limit) - 1 };
    let first_non_ascii = uncovered & uncovered.wrapping_neg() & c.non_ascii != 0;
    (starts & below, uncovered, first_non_ascii)
}
