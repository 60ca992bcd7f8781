//! Profiling harness (not a benchmark) for loading a tiktoken rank file: times
//! `parse_tiktoken` and `Encoder::from_tokens` separately, wall clock, median of the rounds.
//! `cargo run --release --example load_profile -- RANKS.tiktoken cl100k|o200k [ROUNDS]`

use fastgpt::bpe::vocab::parse_tiktoken;
use fastgpt::Encoder;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = std::fs::read(&args[1]).expect("rank file");
    let rounds: usize = args.get(3).map_or(5, |r| r.parse().expect("rounds"));
    let (mut parse, mut build) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let tokens = parse_tiktoken(&data, &args[1]).expect("rank file");
        parse.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let encoder = Encoder::from_tokens(tokens, &args[2], vec![]).expect("encoder");
        build.push(t.elapsed().as_secs_f64());
        drop(encoder);
    }
    println!(
        "parse {:.1} ms, from_tokens {:.1} ms",
        median(parse) * 1e3,
        median(build) * 1e3
    );
}
