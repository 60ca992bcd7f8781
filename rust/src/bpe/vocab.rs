//! tiktoken rank files: `base64(token) rank` per line.

use crate::error::{Error, Result};
use crate::Rank;
use base64::{engine::general_purpose::STANDARD, Engine as _};
use rustc_hash::FxHashMap;

/// Parses a rank file's contents. `source` names the file in errors, which also give the
/// line number. Ranks must be unique and run from 0 without gaps, tokens must be unique.
pub fn parse_tiktoken(data: &[u8], source: &str) -> Result<Vec<(Vec<u8>, Rank)>> {
    let bad = |line: usize, what: String| Error::Invalid(format!("{source}, line {line}: {what}"));
    let mut ranks = Vec::new();
    let mut line_of_rank: FxHashMap<Rank, usize> = FxHashMap::default();
    let mut line_of_token: FxHashMap<Vec<u8>, usize> = FxHashMap::default();
    for (i, raw) in data.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = std::str::from_utf8(line).map_err(|_| bad(line_no, "not UTF-8 text".into()))?;
        let mut fields = text.split_ascii_whitespace();
        let (Some(token), Some(rank), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(bad(line_no, format!("expected `<base64 token> <rank>`, got {text:?}")));
        };
        let token = STANDARD
            .decode(token)
            .map_err(|e| bad(line_no, format!("invalid base64 {token:?}: {e}")))?;
        let rank: Rank = rank
            .parse()
            .map_err(|_| bad(line_no, format!("rank {rank:?} is not a non-negative integer")))?;
        if let Some(first) = line_of_rank.insert(rank, line_no) {
            return Err(bad(line_no, format!("duplicate rank {rank} (first on line {first})")));
        }
        if let Some(first) = line_of_token.insert(token.clone(), line_no) {
            return Err(bad(
                line_no,
                format!("duplicate token {token:?} (first on line {first})"),
            ));
        }
        ranks.push((token, rank));
    }
    if ranks.is_empty() {
        return Err(Error::Invalid(format!("{source}: no ranks in the file")));
    }
    if let Some(missing) = (0..ranks.len() as Rank).find(|r| !line_of_rank.contains_key(r)) {
        let max = ranks.iter().map(|(_, r)| *r).max().unwrap_or(0);
        return Err(Error::Invalid(format!(
            "{source}: rank {missing} is missing (ranks must run from 0 to {} without gaps; the largest is {max})",
            ranks.len() - 1
        )));
    }
    Ok(ranks)
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
        assert_eq!(
            parsed,
            vec![(b"a".to_vec(), 0), (b"b".to_vec(), 1), (b" the".to_vec(), 2)]
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = |data: &[u8]| parse_tiktoken(data, "v.tiktoken").unwrap_err().to_string();
        assert!(err(b"YQ== 0\n!!! 1\n").starts_with("v.tiktoken, line 2: invalid base64"));
        assert!(err(b"YQ== 0\nYg== 0\n").contains("line 2: duplicate rank 0 (first on line 1)"));
        assert!(err(b"YQ== 0\nYQ== 1\n").contains("line 2: duplicate token"));
        assert!(err(b"YQ== 0\nYg== 2\n").contains("rank 1 is missing"));
        assert!(err(b"YQ== x\n").contains("line 1: rank \"x\""));
        assert!(err(b"YQ==\n").contains("line 1: expected"));
        assert!(err(b"").contains("no ranks"));
    }
}
