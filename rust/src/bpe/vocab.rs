//! tiktoken rank files: `base64(token) rank` per line.

use crate::bpe::tokens::{Refused, Tokens};
use crate::error::{Error, Result};
use crate::Rank;
use base64::{engine::general_purpose::STANDARD, Engine as _};

/// Parses a rank file's contents. `source` names the file in errors, which also give the
/// line number. Ranks must be unique and run from 0 without gaps, tokens must be unique.
pub fn parse_tiktoken(data: &[u8], source: &str) -> Result<Tokens> {
    let bad = |line: usize, what: String| Error::Invalid(format!("{source}, line {line}: {what}"));
    // A rank of a line or more past the count of lines means some rank below it is
    // missing: it is kept aside for the message, and never sizes a table.
    let lines = data.split(|&b| b == b'\n').count();
    let mut tokens = Tokens::with_capacity(lines, data.len() * 3 / 4);
    let mut line_of_rank = vec![0u32; lines];
    let mut beyond: Option<Rank> = None;
    let mut token = Vec::with_capacity(256);
    for (i, raw) in data.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = std::str::from_utf8(line).map_err(|_| bad(line_no, "not UTF-8 text".into()))?;
        let mut fields = text.split_ascii_whitespace();
        let (Some(encoded), Some(rank), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(bad(line_no, format!("expected `<base64 token> <rank>`, got {text:?}")));
        };
        token.clear();
        STANDARD
            .decode_vec(encoded, &mut token)
            .map_err(|e| bad(line_no, format!("invalid base64 {encoded:?}: {e}")))?;
        let rank: Rank = rank
            .parse()
            .map_err(|_| bad(line_no, format!("rank {rank:?} is not a non-negative integer")))?;
        let Some(first) = line_of_rank.get_mut(rank as usize) else {
            beyond = beyond.max(Some(rank));
            continue;
        };
        if *first != 0 {
            return Err(bad(line_no, format!("duplicate rank {rank} (first on line {first})")));
        }
        *first = line_no as u32;
        tokens.insert(rank, &token).map_err(|refused| match refused {
            Refused::Empty => bad(line_no, "empty token".into()),
            Refused::SameBytes(other) => bad(
                line_no,
                format!(
                    "duplicate token {token:?} (first on line {})",
                    line_of_rank[other as usize]
                ),
            ),
            Refused::IdTaken => unreachable!("ranks are checked unique above"),
        })?;
    }
    if tokens.is_empty() && beyond.is_none() {
        return Err(Error::Invalid(format!("{source}: no ranks in the file")));
    }
    let count = tokens.len() + beyond.is_some() as usize;
    if let Some(missing) = (0..count as Rank).find(|&r| tokens.get(r).is_none()) {
        let max = beyond.unwrap_or(tokens.id_bound() as Rank - 1);
        return Err(Error::Invalid(format!(
            "{source}: rank {missing} is missing (ranks must run from 0 to {} without gaps; the largest is {max})",
            count - 1
        )));
    }
    Ok(tokens)
}

/// Writes ranks in tiktoken's format, in rank order.
pub fn write_tiktoken(ranks: &[(&[u8], Rank)]) -> Vec<u8> {
    let mut sorted: Vec<_> = ranks.to_vec();
    sorted.sort_unstable_by_key(|&(_, r)| r);
    let mut out = Vec::with_capacity(sorted.len() * 16);
    for (token, rank) in sorted {
        out.extend_from_slice(STANDARD.encode(token).as_bytes());
        out.push(b' ');
        out.extend_from_slice(rank.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let ranks: Vec<(&[u8], Rank)> = vec![(b"b", 1), (b"a", 0), (b" the", 2)];
        let parsed = parse_tiktoken(&write_tiktoken(&ranks), "x").unwrap();
        let parsed: Vec<_> = parsed.iter().collect();
        assert_eq!(parsed, vec![(&b"a"[..], 0), (&b"b"[..], 1), (&b" the"[..], 2)]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = |data: &[u8]| parse_tiktoken(data, "v.tiktoken").err().unwrap().to_string();
        assert!(err(b"YQ== 0\n!!! 1\n").starts_with("v.tiktoken, line 2: invalid base64"));
        assert!(err(b"YQ== 0\nYg== 0\n").contains("line 2: duplicate rank 0 (first on line 1)"));
        assert!(err(b"YQ== 0\nYQ== 1\n").contains("line 2: duplicate token"));
        assert!(err(b"YQ== 0\nYg== 2\n").contains("rank 1 is missing"));
        assert!(err(b"YQ== x\n").contains("line 1: rank \"x\""));
        assert!(err(b"YQ==\n").contains("line 1: expected"));
        assert!(err(b"").contains("no ranks"));
    }
}
