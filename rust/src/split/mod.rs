//! Pre-tokenization: splitting text into pieces before BPE.
//!
//! The standard patterns (GPT-2, cl100k, o200k) use the lookahead `\s+(?!\S)`, which a
//! DFA cannot run. Each is rewritten here without the lookahead, replacing
//! `\s+(?!\S)|\s+` (or tiktoken's `\s++$|\s+(?!\S)|\s`) by a plain `\s+`, and the lookahead
//! is applied after each match: a run of two or more whitespace characters that the `\s+`
//! branch matched, and that stops before a non-space character, gives back its last
//! character, which then starts the next piece (" world"). The rewritten patterns run on
//! regex-automata's lazy DFA with leftmost-first semantics, the same preference order a
//! backtracking engine follows; tests check every piece against fancy-regex running the
//! original pattern. In practice the named patterns run on hand-written scanners first
//! (`block.rs` for cl100k's and o200k's plain ASCII 64 bytes at a time, `scan.rs` for
//! ASCII a piece at a time, `unicode.rs` for the rest), which leave to the DFA only a
//! case-insensitive contraction before a non-ASCII character. Custom patterns run on the
//! DFA when they can and on fancy-regex (lookaround, possessive quantifiers) otherwise.

mod block;
pub(crate) mod scan;
mod unicode;

use crate::error::{Error, Result};
use regex_automata::{meta::Regex, Anchored, Input};
use scan::Scanner;

/// tiktoken's r50k/p50k pattern (GPT-2, GPT-3).
pub const GPT2_PATTERN: &str = r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s";
/// The same split as written in GPT-2's encoder and Hugging Face's ByteLevel pre-tokenizer.
pub const GPT2_PATTERN_HF: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// tiktoken's cl100k_base pattern (GPT-3.5, GPT-4).
pub const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";
/// tiktoken's o200k_base pattern (GPT-4o).
pub const O200K_PATTERN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"|\s*[\r\n]+",
    r"|\s+(?!\S)",
    r"|\s+"
);

// The lookahead-free rewrites, each ending in the plain `\s+` branch.
const GPT2_DFA: &str = r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";
const CL100K_DFA: &str =
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s+$|\s*[\r\n]|\s+";
const O200K_DFA: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"|\s*[\r\n]+",
    r"|\s+"
);

/// The named patterns: (name, aliases, original regex, DFA rewrite, newline-aware, ASCII scanner).
/// In cl100k and o200k an earlier branch takes every whitespace run holding a newline,
/// so the plain `\s+` branch never ends in one; in GPT-2 it may.
type Named = (
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
    bool,
    Scanner,
);
const NAMED: [Named; 3] = [
    (
        "gpt2",
        &["r50k", "r50k_base", "p50k", "p50k_base", "gpt-2"],
        GPT2_PATTERN,
        GPT2_DFA,
        false,
        Scanner::Gpt2,
    ),
    (
        "cl100k",
        &["cl100k_base"],
        CL100K_PATTERN,
        CL100K_DFA,
        true,
        Scanner::Cl100k,
    ),
    ("o200k", &["o200k_base"], O200K_PATTERN, O200K_DFA, true, Scanner::O200k),
];

/// The names `Splitter::new` accepts, for error messages and `--help`.
pub fn pattern_names() -> Vec<&'static str> {
    NAMED.iter().map(|(name, ..)| *name).collect()
}

enum Engine {
    /// A named pattern: the ASCII scanner, else its rewrite searched anchored at the piece start.
    Named {
        regex: Regex,
        newline_aware: bool,
        scanner: Scanner,
    },
    /// A custom pattern without lookaround.
    Dfa(Regex),
    /// A custom pattern that needs backtracking.
    Backtrack(fancy_regex::Regex),
}

/// Splits text into pre-tokens with one pattern.
pub struct Splitter {
    name: Option<&'static str>,
    pattern: String,
    engine: Engine,
}

impl Splitter {
    /// `spec` is a pattern name (`gpt2`, `cl100k`, `o200k` or an alias such as
    /// `cl100k_base`) or a regular expression. A regex equal to a named pattern gets
    /// that pattern's fast path.
    pub fn new(spec: &str) -> Result<Self> {
        for (name, aliases, original, dfa, newline_aware, scanner) in NAMED {
            let by_name = spec == name || aliases.contains(&spec);
            let by_regex = spec == original || (name == "gpt2" && spec == GPT2_PATTERN_HF);
            if by_name || by_regex {
                let regex = Regex::new(dfa).map_err(|e| Error::Pattern(e.to_string()))?;
                return Ok(Splitter {
                    name: Some(name),
                    pattern: original.to_string(),
                    engine: Engine::Named {
                        regex,
                        newline_aware,
                        scanner,
                    },
                });
            }
        }
        let names = pattern_names().join(", ");
        // A bare word is a mistyped name, not a useful regex (it would only match itself).
        if !spec.is_empty() && spec.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(Error::Pattern(format!(
                "unknown pattern name {spec:?}; known names: {names} (or pass a regex)"
            )));
        }
        let engine = match Regex::new(spec) {
            Ok(regex) => Engine::Dfa(regex),
            Err(_) => Engine::Backtrack(fancy_regex::Regex::new(spec).map_err(|e| {
                Error::Pattern(format!(
                    "invalid pattern {spec:?}: not a pattern name ({names}) and not a valid regex: {e}"
                ))
            })?),
        };
        Ok(Splitter {
            name: None,
            pattern: spec.to_string(),
            engine,
        })
    }

    /// The canonical name of a named pattern, `None` for a custom regex.
    pub fn name(&self) -> Option<&'static str> {
        self.name
    }

    /// The regex this splitter implements (the original, lookahead form for named patterns).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Calls `f` on each piece of `text`, in order. Text that a custom pattern does not
    /// match is skipped, as tiktoken skips it.
    pub fn for_each_piece<'t>(&self, text: &'t str, mut f: impl FnMut(&'t str)) {
        match &self.engine {
            Engine::Named {
                regex,
                newline_aware,
                scanner,
            } => {
                // One loop per pattern, so that the scanners inline into it.
                let nl = *newline_aware;
                match scanner {
                    Scanner::Gpt2 => named_pieces::<Gpt2>(text, regex, nl, None::<(bool, block::Basic)>, f),
                    Scanner::Cl100k => block_pieces::<Cl100k>(text, regex, nl, false, f),
                    Scanner::O200k => block_pieces::<O200k>(text, regex, nl, true, f),
                }
            }
            Engine::Dfa(regex) => regex.find_iter(text).for_each(|m| f(&text[m.range()])),
            Engine::Backtrack(regex) => {
                // fancy-regex reports backtrack-limit overflows as errors; the text is then
                // resumed one character later, so encoding never fails on hostile input.
                let mut start = 0;
                while start < text.len() {
                    match regex.find_from_pos(text, start) {
                        Ok(Some(m)) if m.end() > m.start() => {
                            f(m.as_str());
                            start = m.end();
                        }
                        Ok(Some(m)) => start = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8),
                        Ok(None) => break,
                        Err(_) => start += text[start..].chars().next().map_or(1, char::len_utf8),
                    }
                }
            }
        }
    }

    /// The pieces of `text`, collected (for tests and small inputs).
    pub fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut pieces = Vec::new();
        self.for_each_piece(text, |p| pieces.push(p));
        pieces
    }
}

/// A named pattern's piece scanners, as a type: a type's functions inline into each copy
/// of the loop, where the scanners passed as closures were left as calls once there were
/// three copies (6% of the splitter's speed on multilingual text).
trait Rules {
    /// The end of the piece at `start` by the ASCII scanner, if it covers it.
    fn ascii(s: &[u8], start: usize) -> Option<usize>;
    /// The end of the piece at `start` by the Unicode scanner, if it covers it.
    fn unicode(s: &str, start: usize) -> Option<usize>;
}

macro_rules! rules {
    ($($name:ident => $scanners:ident),*) => {$(
        struct $name;
        impl Rules for $name {
            #[inline(always)]
            fn ascii(s: &[u8], start: usize) -> Option<usize> {
                scan::$scanners(s, start)
            }
            #[inline(always)]
            fn unicode(s: &str, start: usize) -> Option<usize> {
                unicode::$scanners(s, start)
            }
        }
    )*};
}
rules!(Gpt2 => gpt2, Cl100k => cl100k, O200k => o200k);

/// `named_pieces` for cl100k (`o200k` false) or o200k, with `block` windows classified by
/// the widest instruction set the CPU has. The whole loop is compiled once per set, so that
/// the set's code inlines into it (a call per window cost more than the wider loads saved).
#[inline(always)]
fn block_pieces<'t, R: Rules>(text: &'t str, regex: &Regex, newline_aware: bool, o200k: bool, f: impl FnMut(&'t str)) {
    #[cfg(target_arch = "x86_64")]
    {
        // `named_pieces` compiled with an instruction set's features enabled.
        macro_rules! compiled_with {
            ($name:ident, $features:literal, $isa:ty) => {
                /// # Safety
                /// The CPU has the features (as the `isa` in `block` proves).
                #[target_feature(enable = $features)]
                unsafe fn $name<'t, R: Rules>(
                    text: &'t str,
                    regex: &Regex,
                    newline_aware: bool,
                    block: Option<(bool, $isa)>,
                    f: impl FnMut(&'t str),
                ) {
                    named_pieces::<R>(text, regex, newline_aware, block, f)
                }
            };
        }
        compiled_with!(avx512, "avx512f,avx512bw", block::Avx512);
        compiled_with!(avx2, "avx2", block::Avx2);
        // A text under 64 bytes has no window to classify: it skips the detection.
        if text.len() >= 64 {
            if let Some(isa) = block::Avx512::detect() {
                // SAFETY: `detect` found AVX-512 F and BW.
                return unsafe { avx512::<R>(text, regex, newline_aware, Some((o200k, isa)), f) };
            }
            if let Some(isa) = block::Avx2::detect() {
                // SAFETY: `detect` found AVX2.
                return unsafe { avx2::<R>(text, regex, newline_aware, Some((o200k, isa)), f) };
            }
        }
    }
    named_pieces::<R>(text, regex, newline_aware, Some((o200k, block::Basic)), f)
}

/// How far ahead of a window its text is fetched.
const PREFETCH_AHEAD: usize = 512;

/// The pieces of a named pattern: 64 bytes at a time where `block` (cl100k's or o200k's
/// rules, `Some((o200k, instruction set))`) covers them; else the ASCII scanner, else the
/// Unicode one, else the pattern's rewrite searched anchored at the piece start.
#[inline(always)]
fn named_pieces<'t, R: Rules>(
    text: &'t str,
    regex: &Regex,
    newline_aware: bool,
    block: Option<(bool, impl block::Classify)>,
    mut f: impl FnMut(&'t str),
) {
    let bytes = text.as_bytes();
    let mut start = 0;
    // Pieces before this are scanned one by one: the last window held bytes up to here
    // that its rules do not cover.
    let mut scan_until = 0;
    while start < text.len() {
        if let (Some((o200k, isa)), Some(window)) = (block, bytes.get(start..start + 64)) {
            if start >= scan_until {
                // Where each window starts depends on the one before, so the CPU cannot
                // load ahead on its own: text not yet in cache stalled every window (a
                // third of the splitter's time on first sight of 64 KB of prose).
                crate::memory::prefetch(bytes.as_ptr().wrapping_add(start + PREFETCH_AHEAD));
                let (starts, uncovered, non_ascii) = block::starts(isa, window.try_into().unwrap(), o200k);
                let (mut from, mut rest) = (0, starts & !1);
                while rest != 0 {
                    let to = rest.trailing_zeros() as usize;
                    // SAFETY: the starts taken lie before the window's first uncovered
                    // byte, and every byte before it is ASCII, so both ends are in
                    // `window` and on character boundaries (checking them per piece cost
                    // a third of this loop).
                    debug_assert!(bytes[start..start + to].is_ascii());
                    f(unsafe { text.get_unchecked(start + from..start + to) });
                    (from, rest) = (to, rest & (rest - 1));
                }
                if uncovered != 0 {
                    scan_until = start + 64 - uncovered.leading_zeros() as usize;
                    // Text that is mostly not ASCII: the next windows would be wasted too.
                    if from == 0 && non_ascii {
                        scan_until = scan_until.max(start + 256);
                    }
                }
                start += from;
                if from > 0 {
                    continue;
                }
            }
        }
        // (A match, not `or_else`: the combinator was left as a call with the scanner in it.)
        if let Some(end) = match R::ascii(bytes, start) {
            None => R::unicode(text, start),
            end => end,
        } {
            f(&text[start..end]);
            start = end;
            continue;
        }
        let input = Input::new(text).range(start..).anchored(Anchored::Yes);
        let end = match regex.search(&input) {
            Some(m) if m.end() > start => trim_lookahead(text, start, m.end(), newline_aware),
            // The named patterns match at every position; stay total regardless.
            _ => start + text[start..].chars().next().map_or(1, char::len_utf8),
        };
        f(&text[start..end]);
        start = end;
    }
}

/// Applies `\s+(?!\S)` to a match `text[start..end]` of the rewritten pattern: when the
/// plain `\s+` branch matched two or more characters before a non-space character, the
/// last one is given back.
#[inline]
fn trim_lookahead(text: &str, start: usize, end: usize, newline_aware: bool) -> usize {
    if end == text.len() {
        return end;
    }
    let Some(last) = text[start..end].chars().next_back() else {
        return end;
    };
    let plain_ws_branch = last.is_whitespace() && !(newline_aware && (last == '\r' || last == '\n'));
    if plain_ws_branch && end - start > last.len_utf8() {
        end - last.len_utf8()
    } else {
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(pattern: &str, text: &str) -> Vec<String> {
        let re = fancy_regex::Regex::new(pattern).unwrap();
        re.find_iter(text).map(|m| m.unwrap().as_str().to_string()).collect()
    }

    /// Every piece of each text, for each named pattern, equals fancy-regex's running the
    /// original pattern.
    fn assert_named_patterns_match(texts: &[String]) {
        for (name, _, original, ..) in NAMED {
            let splitter = Splitter::new(name).unwrap();
            let re = fancy_regex::Regex::new(original).unwrap();
            for text in texts {
                let expected: Vec<&str> = re.find_iter(text).map(|m| m.unwrap().as_str()).collect();
                assert_eq!(splitter.split(text), expected, "pattern {name} on {text:?}");
            }
        }
    }

    const SAMPLES: &[&str] = &[
        "Hello world",
        "  leading spaces and trailing   ",
        "a\n\nb\r\n\r\n  c\t\td \n x",
        "I'm they're WE'LL it'S don't 'Ll",
        "12345 digits 1 22 333 4444",
        "emoji 🎉🎉 and CJK 你好世界 and Ωμέγα",
        "x = foo(bar)/2; // comment\n\tindent();\n",
        "   \n",
        "\u{a0}nbsp\u{a0} \u{3000}wide",
        "combining e\u{301}\u{301} marks and ǅ titlecase ſ long s",
        "",
        " ",
        "trailing newline\n",
        "a  /path//to\n\n/x",
    ];

    #[test]
    fn named_patterns_match_the_backtracking_reference() {
        for (name, _, original, ..) in NAMED {
            let splitter = Splitter::new(name).unwrap();
            for text in SAMPLES {
                let ours: Vec<String> = splitter.split(text).into_iter().map(String::from).collect();
                assert_eq!(ours, reference(original, text), "pattern {name} on {text:?}");
            }
        }
    }

    #[test]
    fn random_fragment_texts_match_the_backtracking_reference() {
        const FRAGMENTS: &[&str] = &[
            "a", "Z", "ab", "CD", "Hello", "wORLD", "'", "'s", "'S", "'ll", "'LL", "'re", "'Ve", "'d", "'M", "'t",
            "'x", "'ſ", " ", "  ", "\t", "\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\u{a0}", "\u{3000}", "\u{85}",
            "0", "12", "1234", "\u{663}", "!", "(", "//", "/", "...", "-", "_", "\x00", "é", "É", "ǅ", "\u{301}", "ß",
            "你好", "🎉", "ſ", "\u{2b0}", "K",
        ];
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut texts = Vec::new();
        for _ in 0..3000 {
            let mut text = String::new();
            state ^= state << 13;
            let len = (state >> 58) as usize;
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push_str(FRAGMENTS[(state % FRAGMENTS.len() as u64) as usize]);
            }
            texts.push(text);
        }
        assert_named_patterns_match(&texts);
    }

    /// Random texts from Unicode fragments chosen to reach every branch of the Unicode
    /// scanner: marks (alone, after letters, after punctuation), modifier and other
    /// letters, titlecase, letters and digits beyond U+FFFF, Unicode spaces and numbers.
    fn unicode_texts(count: usize, seed: u64) -> Vec<String> {
        const FRAGMENTS: &[&str] = &[
            "a",
            "Z",
            "Hello",
            "wORLD",
            "'",
            "'s",
            "'S",
            "'ll",
            "'ſ",
            "'Ł",
            "'\u{301}",
            " ",
            "  ",
            "\t",
            "\n",
            "\r\n",
            "\u{a0}",
            "\u{3000}",
            "\u{85}",
            "\u{2028}",
            "\u{200b}",
            "\u{1680}",
            "0",
            "12",
            "1234",
            "\u{663}",
            "\u{bd}",
            "\u{2167}",
            "\u{1d7ce}",
            "!",
            "//",
            "/",
            "...",
            "é",
            "É",
            "ǅ",
            "ǅa",
            "\u{301}",
            "\u{301}\u{301}",
            "e\u{301}",
            "E\u{301}x",
            "ß",
            "你好",
            "中A",
            "A中",
            "🎉",
            "ſ",
            "\u{2b0}",
            "\u{2b0}A",
            "A\u{2b0}",
            "ᾈ",
            "𝐀",
            "𝐀𝐚",
            "𝐚",
            "Ω",
            "ω",
            "Ωμέγα",
            "ΑΒΓ",
            "Привет",
            "ПРИВЕТ",
            "ا",
            "مرحبا",
            "\u{5d0}",
            "ー",
            "カタカナ",
            "ｶ",
            "ｱ",
            "\u{e01}",
            "\u{e31}",
            "\u{93f}",
            "नमस्ते",
            "\u{ff10}",
            "\u{ff21}",
            "\u{ff41}",
            "¡",
            "«",
            "»",
            "—",
            "…",
            "\u{feff}",
            "\x00",
        ];
        let mut state = seed;
        (0..count)
            .map(|_| {
                state ^= state << 13;
                let len = (state >> 59) as usize + 1;
                (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        FRAGMENTS[(state % FRAGMENTS.len() as u64) as usize]
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn unicode_scanner_matches_the_backtracking_reference() {
        let texts = unicode_texts(30000, 0x2545_f491_4f6c_dd1d);
        for (name, _, original, dfa, newline_aware, scanner) in NAMED {
            let re = fancy_regex::Regex::new(original).unwrap();
            let dfa = Regex::new(dfa).unwrap();
            let splitter = Splitter::new(name).unwrap();
            for text in texts.iter().map(String::as_str).chain(SAMPLES.iter().copied()) {
                let expected: Vec<&str> = re.find_iter(text).map(|m| m.unwrap().as_str()).collect();
                // Through the splitter (ASCII scanner, then Unicode scanner, then the DFA)...
                assert_eq!(splitter.split(text), expected, "{name} on {text:?}");
                // ...and the Unicode scanner alone on every piece, ASCII ones included.
                let (mut ours, mut start, mut deferred) = (Vec::new(), 0, 0);
                while start < text.len() {
                    let end = scanner.next_end_unicode(text, start).unwrap_or_else(|| {
                        deferred += 1;
                        let m = dfa
                            .search(&Input::new(text).range(start..).anchored(Anchored::Yes))
                            .unwrap();
                        trim_lookahead(text, start, m.end(), newline_aware)
                    });
                    ours.push(&text[start..end]);
                    start = end;
                }
                assert_eq!(ours, expected, "{name} (Unicode scanner alone) on {text:?}");
                assert!(deferred <= text.matches('\'').count());
            }
        }
    }

    /// The ASCII scanner reads runs 8 bytes at a time: runs of every length around a
    /// multiple of 8, each ended by the end of the text, an ASCII byte of another class or a
    /// non-ASCII character, so that every stop falls at every offset of a chunk and in the
    /// byte-by-byte tail.
    #[test]
    fn runs_across_8_byte_chunks_match_the_backtracking_reference() {
        const LEADS: &[&str] = &["", " ", "(", "\t", "\n", "A", "'", "é"];
        const UNITS: &[&str] = &[
            "a", "Z", "Ab", "aB", "1", " ", "\n", "\r\n", "!", "/", "\t", "\n/", ":\n", " \n", "9a",
        ];
        const ENDS: &[&str] = &[
            "", "é", "É", " ", "  ", "x", "X", "'s", "'ſ", "'LL", "\n", "1", "!", "ſ", "\u{301}", "你", "\u{a0}",
        ];
        for (name, _, original, ..) in NAMED {
            let splitter = Splitter::new(name).unwrap();
            let re = fancy_regex::Regex::new(original).unwrap();
            for lead in LEADS {
                for unit in UNITS {
                    for n in 0..=20 {
                        for end in ENDS {
                            let text = format!("{lead}{}{end}", unit.repeat(n));
                            let expected: Vec<&str> = re.find_iter(&text).map(|m| m.unwrap().as_str()).collect();
                            assert_eq!(splitter.split(&text), expected, "pattern {name} on {text:?}");
                        }
                    }
                }
            }
        }
    }

    /// Long texts, mostly ASCII of every class that the 64-byte windows' rules tell apart,
    /// so that windows meet every rule at every offset and at their edges, and hand over
    /// to the scanners (non-ASCII, contractions at a window's end, long digit runs, `/` after
    /// a newline).
    #[test]
    fn windows_of_64_bytes_match_the_backtracking_reference() {
        const FRAGMENTS: &[&str] = &[
            "a",
            "Z",
            "word",
            "Word",
            "WORD",
            "camelCase",
            "HTTPServer",
            " ",
            " ",
            "  ",
            "   ",
            "\t",
            "\n",
            "\n\n",
            "\r\n",
            " \n",
            "\n ",
            "\n  ",
            "\x0b",
            "\x0c",
            ".",
            ",",
            "(",
            ")",
            "...",
            "\"",
            ";",
            "=",
            "_",
            "-",
            "/",
            "//",
            "1",
            "12",
            "123",
            "1234",
            "0.5",
            "'",
            "'s",
            "'T",
            "'ll",
            "'LL",
            "'lL",
            "'re",
            "'Ve",
            "'d",
            "'M",
            "'l",
            "'v",
            "'R",
            "'x",
            "''",
            "ll",
            "e",
            "s",
            "é",
            "\u{a0}",
            "你",
            "\x00",
            "\x7f",
            "#",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let texts: Vec<String> = (0..3000)
            .map(|_| {
                let (mut text, len) = (String::new(), 64 + (next() % 400) as usize);
                while text.len() < len {
                    text.push_str(FRAGMENTS[(next() % FRAGMENTS.len() as u64) as usize]);
                }
                text
            })
            .collect();
        assert_named_patterns_match(&texts);
    }

    #[test]
    fn pieces_cover_the_text() {
        for name in pattern_names() {
            let splitter = Splitter::new(name).unwrap();
            for text in SAMPLES {
                assert_eq!(splitter.split(text).concat(), *text);
            }
        }
    }

    #[test]
    fn regex_equal_to_a_named_pattern_gets_its_name() {
        assert_eq!(Splitter::new(CL100K_PATTERN).unwrap().name(), Some("cl100k"));
        assert_eq!(Splitter::new(GPT2_PATTERN_HF).unwrap().name(), Some("gpt2"));
        assert_eq!(Splitter::new("r50k_base").unwrap().name(), Some("gpt2"));
    }

    #[test]
    fn custom_patterns() {
        let dfa = Splitter::new(r"\w+").unwrap();
        assert_eq!(dfa.split("ab, cd"), vec!["ab", "cd"]);
        let fancy = Splitter::new(r"\s+(?!\S)|\S+").unwrap();
        let pieces: Vec<String> = fancy.split("a  b").into_iter().map(String::from).collect();
        assert_eq!(pieces, vec!["a", " ", "b"]);
    }

    #[test]
    fn bad_patterns_say_why() {
        let err = Splitter::new("(unclosed").err().unwrap().to_string();
        assert!(
            err.contains("gpt2, cl100k, o200k") && err.contains("(unclosed"),
            "{err}"
        );
    }
}
