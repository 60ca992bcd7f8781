//! Profiling harness (not a benchmark): the pre-tokenizer alone, over a text file, five
//! times; prints MB/s and the pieces found.
//! `cargo run --release --example split_profile -- cl100k|o200k|gpt2 TEXT`

use fastgpt::Splitter;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let splitter = Splitter::new(&args[1]).unwrap();
    let text = std::fs::read_to_string(&args[2]).unwrap();
    for _ in 0..5 {
        let start = std::time::Instant::now();
        let (mut pieces, mut bytes) = (0usize, 0usize);
        splitter.for_each_piece(&text, |p| {
            pieces += 1;
            bytes += p.len();
        });
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{:.1} MB/s, {pieces} pieces of {:.2} bytes",
            text.len() as f64 / secs / 1e6,
            bytes as f64 / pieces as f64
        );
    }
}
