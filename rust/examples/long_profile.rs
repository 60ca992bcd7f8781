//! Profiling harness (not a benchmark) for the long-piece encoder: times encoding of the
//! issue 10 worst cases that are one single piece (1 MB of random ASCII letters, 1 MB of
//! random CJK ideographs), each round on a fresh text so no cache helps.
//! `cargo run --release --example long_profile -- RANKS.tiktoken cl100k|o200k letters|cjk [ROUNDS]`

use fastgpt::bpe::vocab::parse_tiktoken;
use fastgpt::Encoder;

/// This thread's CPU time in seconds: other processes' load does not count.
fn cpu_time() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A small deterministic generator (xorshift64*), so runs compare like with like.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) * n) >> 32
    }
}

fn text(kind: &str, seed: u64) -> String {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    match kind {
        "letters" => {
            let letters = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
            (0..1 << 20).map(|_| letters[rng.below(52) as usize] as char).collect()
        }
        "cjk" => (0..(1 << 20) / 3)
            .map(|_| char::from_u32(0x4E00 + rng.below(0x9FFF - 0x4E00 + 1) as u32).unwrap())
            .collect(),
        _ => panic!("kind is letters or cjk"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ranks = parse_tiktoken(&std::fs::read(&args[1]).unwrap(), &args[1]).unwrap();
    let t = std::time::Instant::now();
    let enc = Encoder::from_tokens(ranks, &args[2], vec![]).unwrap();
    eprintln!("load {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    // As the suite warms an instance on prose before its worst cases: a thread's first
    // call makes its word cache.
    enc.encode_ordinary(&"The first call on a thread makes its word cache. ".repeat(100));
    let rounds: u64 = args.get(4).map_or(5, |r| r.parse().unwrap());
    let (mut secs, mut bytes, mut best) = (0.0, 0, 0.0f64);
    for round in 0..rounds {
        let text = text(&args[3], round + 1);
        let t = cpu_time();
        let n = enc.encode_ordinary(&text).len();
        let s = cpu_time() - t;
        let rate = text.len() as f64 / s / 1e6;
        if std::env::var("QUIET").is_err() {
            println!("{rate:.1} MB/s, {n} tokens");
        }
        best = best.max(rate);
        secs += s;
        bytes += text.len();
    }
    println!("mean {:.1} MB/s, best {best:.1} MB/s", bytes as f64 / secs / 1e6);
}
