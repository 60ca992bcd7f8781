//! Profiling harness (not a benchmark), wall-clock times: on one warm encoder, the documents
//! as sequential calls and as `encode_batch` on 1 and 2 threads; then on a fresh encoder per
//! round (warmed on WARM.txt), one batch on 1 or 2 threads, and the same batch again.
//! `cargo run --release --example batch_profile -- RANKS.tiktoken cl100k|o200k DOCS.txt WARM.txt`
//! DOCS.txt: documents separated by a NUL byte.

use fastgpt::bpe::vocab::parse_tiktoken;
use fastgpt::{Allowed, Encoder};

/// CPU time of all the process's threads, in seconds.
fn process_cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ranks = std::fs::read(&args[1]).unwrap();
    let load = || Encoder::from_tokens(parse_tiktoken(&ranks, &args[1]).unwrap(), &args[2], vec![]).unwrap();
    let docs_text = std::fs::read_to_string(&args[3]).unwrap();
    let docs: Vec<&str> = docs_text.split('\0').collect();
    let warm = std::fs::read_to_string(&args[4]).unwrap();
    let enc0 = load();
    for _ in 0..5 {
        let start = std::time::Instant::now();
        let n: usize = docs.iter().map(|d| enc0.encode_ordinary(d).len()).sum();
        let seq = start.elapsed().as_secs_f64();
        let mut line = format!("sequential calls {:.2} ms ({n})", seq * 1e3);
        for threads in [1, 2] {
            let start = std::time::Instant::now();
            enc0.encode_batch_threads(&docs, &Allowed::None, Some(threads));
            line += &format!(
                ", batch {threads} threads {:.2} ms",
                start.elapsed().as_secs_f64() * 1e3
            );
        }
        println!("{line}");
    }
    for _ in 0..3 {
        for threads in [1, 2] {
            let enc = load();
            enc.encode_ordinary(&warm);
            let (start, cpu) = (std::time::Instant::now(), process_cpu());
            let out = enc.encode_batch_threads(&docs, &Allowed::None, Some(threads));
            let (secs, cpu) = (start.elapsed().as_secs_f64(), process_cpu() - cpu);
            let tokens: usize = out.iter().map(Vec::len).sum();
            let start = std::time::Instant::now();
            enc.encode_batch_threads(&docs, &Allowed::None, Some(threads));
            let again = start.elapsed().as_secs_f64();
            println!(
                "{threads} threads: {:.2} ms (cpu {:.2} ms), again {:.2} ms, {tokens} tokens",
                secs * 1e3,
                cpu * 1e3,
                again * 1e3
            );
        }
    }
}
