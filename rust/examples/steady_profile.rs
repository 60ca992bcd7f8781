//! Profiling harness (not a benchmark): encodes a text file's first BYTES bytes (256 KB by
//! default) cut into 4 KB documents, once to fill the caches, then 5 times in each of 7
//! timed rounds; prints the best round's MB/s. Text seen before, with the tables in the
//! CPU's caches: the cost of splitting and looking up pieces, without that of first sight
//! (`encode_profile`).
//! `cargo run --release --example steady_profile -- RANKS.tiktoken cl100k|o200k TEXT`

use fastgpt::bpe::vocab::parse_tiktoken;
use fastgpt::Encoder;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ranks = std::fs::read(&args[1]).unwrap();
    let encoder = Encoder::from_tokens(parse_tiktoken(&ranks, &args[1]).unwrap(), &args[2], vec![]).unwrap();
    let text = std::fs::read_to_string(&args[3]).unwrap();
    let total: usize = std::env::var("BYTES").map_or(256 << 10, |b| b.parse().unwrap());
    let mut docs = Vec::new();
    let mut start = 0;
    while start < total.min(text.len()) {
        let mut end = (start + 4096).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        docs.push(&text[start..end]);
        start = end;
    }
    let bytes: usize = docs.iter().map(|d| d.len()).sum();
    let mut tokens: usize = docs.iter().map(|d| encoder.encode_ordinary(d).len()).sum();
    let mut best = f64::MAX;
    for _ in 0..7 {
        let started = std::time::Instant::now();
        for _ in 0..5 {
            for doc in &docs {
                tokens += std::hint::black_box(encoder.encode_ordinary(doc)).len();
            }
        }
        best = best.min(started.elapsed().as_secs_f64() / 5.0);
    }
    println!("{:.1} MB/s, {} tokens a pass", bytes as f64 / best / 1e6, tokens / 36);
}
