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
//!   blanks after it less the last, then the last blank, joining what follows;
//! - an apostrophe followed by `s`, `d`, `m`, `t`, `ll`, `ve` or `re` (any case) is a
//!   contraction: in cl100k a piece of its own where the apostrophe starts a piece, in o200k
//!   the end of the letters right before it; the letters after it start the next piece.
//!
//! What these rules do not cover (non-ASCII bytes, a contraction too near the window's
//! end to read, a fourth digit, o200k's `/` after a newline, and the run that reaches the
//! window's end) limits the pieces taken to those before the run next to it; the caller
//! then scans on with `scan.rs`. Tests compare every piece with the original patterns.

/// The class masks of a window: bit `i` is byte `i`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Classes {
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

/// An instruction set that classifies a window. A value is proof that the CPU has it:
/// the wider sets are only made by `detect`, so their `classify` may use them.
pub(crate) trait Classify: Copy {
    fn classify(self, w: &[u8; 64]) -> Classes;
}

/// What every CPU of the target has: SSE2 on x86_64, plain code elsewhere.
#[derive(Clone, Copy)]
pub(crate) struct Basic;

impl Classify for Basic {
    #[inline(always)]
    fn classify(self, w: &[u8; 64]) -> Classes {
        #[cfg(target_arch = "x86_64")]
        return classify_sse2(w);
        #[cfg(not(target_arch = "x86_64"))]
        return classify_portable(w);
    }
}

/// AVX2: the window in two loads instead of SSE2's four.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Avx2(());

/// AVX-512 (BW): the window in one load, each class's mask straight from one compare.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Avx512(());

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    pub(crate) fn detect() -> Option<Self> {
        is_x86_feature_detected!("avx2").then_some(Avx2(()))
    }
}

#[cfg(target_arch = "x86_64")]
impl Avx512 {
    pub(crate) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")).then_some(Avx512(()))
    }
}

#[cfg(target_arch = "x86_64")]
impl Classify for Avx2 {
    #[inline(always)]
    fn classify(self, w: &[u8; 64]) -> Classes {
        // SAFETY: an `Avx2` is only made where the CPU has AVX2.
        unsafe { classify_avx2(w) }
    }
}

#[cfg(target_arch = "x86_64")]
impl Classify for Avx512 {
    #[inline(always)]
    fn classify(self, w: &[u8; 64]) -> Classes {
        // SAFETY: an `Avx512` is only made where the CPU has AVX-512 F and BW.
        unsafe { classify_avx512(w) }
    }
}

/// The masks from `n`-byte lanes' worth of byte-class vectors, shared by SSE2 and AVX2:
/// each class is `mask(v)` of a compare, `k` the lane's index.
#[cfg(target_arch = "x86_64")]
macro_rules! classify_lanes {
    ($w:expr, $lanes:expr, $width:expr, $load:ident, $set:ident, $sub:ident, $min:ident, $eq:ident, $or:ident, $movemask:ident, $ty:ty) => {{
        let mut m = [0u64; 9];
        for k in 0..$lanes {
            let v = $load($w.as_ptr().add($width * k).cast());
            // Bytes in `lo..=lo + n`: the difference from `lo`, unsigned, is at most `n`.
            let within = |v, lo: u8, n: u8| {
                let d = $sub(v, $set(lo as i8));
                $eq($min(d, $set(n as i8)), d)
            };
            let eq = |b: u8| $eq(v, $set(b as i8));
            let bits = [
                // Setting bit 5 folds A-Z onto a-z and nothing else onto them.
                within($or(v, $set(0x20)), b'a', 25),
                within(v, b'A', 25),
                within(v, b'0', 9),
                $or(within(v, b'\t', 4), eq(b' ')),
                $or(eq(b'\n'), eq(b'\r')),
                eq(b' '),
                eq(b'\''),
                eq(b'/'),
                v,
            ];
            for (mask, b) in m.iter_mut().zip(bits) {
                *mask |= ($movemask(b) as $ty as u64) << ($width * k);
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
    }};
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn classify_sse2(w: &[u8; 64]) -> Classes {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of x86_64; each load reads 16 of the window's 64 bytes.
    unsafe {
        classify_lanes!(
            w,
            4,
            16,
            _mm_loadu_si128,
            _mm_set1_epi8,
            _mm_sub_epi8,
            _mm_min_epu8,
            _mm_cmpeq_epi8,
            _mm_or_si128,
            _mm_movemask_epi8,
            u16
        )
    }
}

/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn classify_avx2(w: &[u8; 64]) -> Classes {
    use std::arch::x86_64::*;
    // SAFETY: each load reads 32 of the window's 64 bytes.
    unsafe {
        classify_lanes!(
            w,
            2,
            32,
            _mm256_loadu_si256,
            _mm256_set1_epi8,
            _mm256_sub_epi8,
            _mm256_min_epu8,
            _mm256_cmpeq_epi8,
            _mm256_or_si256,
            _mm256_movemask_epi8,
            u32
        )
    }
}

/// # Safety
/// The CPU has AVX-512 F and BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn classify_avx512(w: &[u8; 64]) -> Classes {
    use std::arch::x86_64::*;
    // SAFETY: the load reads the window's 64 bytes.
    let v = unsafe { _mm512_loadu_si512(w.as_ptr().cast()) };
    let set = |b: u8| _mm512_set1_epi8(b as i8);
    let eq = |b: u8| _mm512_cmpeq_epi8_mask(v, set(b));
    // Bytes in `lo..=lo + n`: the difference from `lo`, unsigned, is at most `n`.
    let within = |v: __m512i, lo: u8, n: u8| _mm512_cmple_epu8_mask(_mm512_sub_epi8(v, set(lo)), set(n));
    Classes {
        letter: within(_mm512_or_si512(v, set(0x20)), b'a', 25),
        upper: within(v, b'A', 25),
        digit: within(v, b'0', 9),
        space: within(v, b'\t', 4) | eq(b' '),
        newline: eq(b'\n') | eq(b'\r'),
        blank_space: eq(b' '),
        apostrophe: eq(b'\''),
        slash: eq(b'/'),
        non_ascii: _mm512_movepi8_mask(v),
    }
}

/// The masks one byte at a time: the reference the others are tested against, and the
/// code for targets other than x86_64.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn classify_portable(w: &[u8; 64]) -> Classes {
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
pub(crate) fn starts(isa: impl Classify, window: &[u8; 64], o200k: bool) -> (u64, u64, bool) {
    let c = isa.classify(window);
    let (letter, digit, space, newline) = (c.letter, c.digit, c.space, c.newline);
    let other = !(letter | digit | space);
    let before = |x: u64| x << 1; // bit i: byte i - 1 is in x
    let after = |x: u64| x >> 1; // bit i: byte i + 1 is in x
    let mut uncovered = c.non_ascii | (digit & before(digit) & before(before(digit)) & before(before(before(digit))));
    if o200k {
        uncovered |= c.slash & before(newline);
    }
    let run_start = |x: u64| x & !before(x);
    let (letter_runs, digit_runs, other_runs) = (run_start(letter), run_start(digit), run_start(other));
    // Punctuation: a run joined by a space before it.
    let spaced = other_runs & before(c.blank_space);
    // Contractions: `'` and `s`, `d`, `m`, `t`, `ll`, `ve` or `re` (any case). cl100k takes
    // one as a piece of its own where the apostrophe starts a piece; o200k adds it to the
    // letters right before it. Either way the letters after it start the next piece; any
    // other apostrophe is punctuation like the rest.
    let (mut inside_contractions, mut after_contractions) = (0, 0);
    let mut quotes = c.apostrophe & after(letter) & if o200k { before(letter) } else { other_runs & !spaced };
    // Too close to the window's end to read the letters it may take.
    let edge = u64::MAX << 61;
    uncovered |= quotes & edge;
    quotes &= !edge;
    while quotes != 0 {
        let i = quotes.trailing_zeros();
        quotes &= quotes - 1;
        // o200k: a word takes one contraction; an apostrophe right after it starts a piece.
        if o200k && after_contractions & (1 << i) != 0 {
            continue;
        }
        let n = match (window[i as usize + 1] | 0x20, window[i as usize + 2] | 0x20) {
            (b's' | b'd' | b'm' | b't', _) => 2,
            (b'l', b'l') | (b'v' | b'r', b'e') => 3,
            _ => continue,
        };
        let contraction = ((1u64 << n) - 1) << i;
        inside_contractions |= if o200k { contraction } else { contraction & !(1 << i) };
        after_contractions |= 1 << (i + n);
    }
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
    // A lone punctuation byte before letters joins them.
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
    let starts = ((letter_runs & !joined_letters)
        | digit_runs
        | (other_runs & !spaced)
        | run_start(rest)
        | (before(last_newlines) & rest)
        | joins_next
        | case_cuts)
        & !inside_contractions
        | (after_contractions & letter)
        | 1;
    let below = if limit == 0 { 1 } else { (1u64 << limit) - 1 };
    let first_non_ascii = uncovered & uncovered.wrapping_neg() & c.non_ascii != 0;
    (starts & below, uncovered, first_non_ascii)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpe::TestRng;

    /// Every instruction set this CPU has gives the portable code's masks, on windows
    /// of every byte value and of the bytes near each class's edges.
    #[test]
    fn every_instruction_set_classifies_as_the_portable_code() {
        let edges: Vec<u8> = b"\t\n\x0b\x0c\r\x08\x0e\x1f !&'(./09:@AZ[`az{\x7f"
            .iter()
            .copied()
            .chain([0x80, 0xc3, 0xff])
            .collect();
        let mut rng = TestRng(7);
        let mut windows: Vec<[u8; 64]> = (0..4).map(|k| std::array::from_fn(|i| (64 * k + i) as u8)).collect();
        for _ in 0..2000 {
            windows.push(std::array::from_fn(|_| edges[rng.below(edges.len())]));
        }
        for w in &windows {
            let want = classify_portable(w);
            assert_eq!(Basic.classify(w), want);
            #[cfg(target_arch = "x86_64")]
            {
                if let Some(isa) = Avx2::detect() {
                    assert_eq!(isa.classify(w), want);
                }
                if let Some(isa) = Avx512::detect() {
                    assert_eq!(isa.classify(w), want);
                }
            }
        }
    }
}
