//! Profiling harness (not a benchmark): encodes a text file with a tiktoken rank file the
//! way the encode suite's first-sight rounds do, each round on a fresh thread (so an empty
//! word cache) warmed on the file's last 64 KB, then timing 128 KB of documents of 64 KB
//! (DOC=BYTES: of that size); all of the file in turn. FRESH=1 loads a new encoder for
//! every round, as the suite does; EVICT=1 reads 64 MB before each timed encode, as a
//! gc.collect() in between would; EVICT_LOAD=1 (with FRESH) reads it between the load and
//! the warm-up instead, as the suite's collection after a load does.
//! `cargo run --release --example encode_profile -- RANKS.tiktoken cl100k|o200k TEXT [ROUNDS]`

use fastgpt::bpe::vocab::parse_tiktoken;
use fastgpt::Encoder;

/// This thread's CPU time in seconds: other processes' load does not count.
fn cpu_time() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// With PERF_CTL and PERF_ACK set to the fifos of `perf record --control
/// fifo:CTL,ACK -D -1`, only the timed encodes are recorded (each command waits for
/// perf's acknowledgement, so that the window is exact).
fn perf_control(command: &[u8]) {
    use std::io::{Read, Write};
    if let (Ok(ctl), Ok(ack)) = (std::env::var("PERF_CTL"), std::env::var("PERF_ACK")) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(ctl)
            .unwrap()
            .write_all(command)
            .unwrap();
        let mut reply = [0u8; 5];
        std::fs::File::open(ack).unwrap().read_exact(&mut reply).unwrap();
    }
}

#[inline(never)]
fn evict(junk: &[u8]) {
    std::hint::black_box(junk.iter().map(|&b| b as u64).sum::<u64>());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let load = || {
        Encoder::from_tokens(
            parse_tiktoken(&std::fs::read(&args[1]).unwrap(), &args[1]).unwrap(),
            &args[2],
            vec![],
        )
        .unwrap()
    };
    // FRESH: a new encoder per round, as the suite loads one (its tables just built).
    let fresh = std::env::var("FRESH").is_ok();
    let mut enc = Some(load());
    let text = std::fs::read_to_string(&args[3]).unwrap();
    let rounds: usize = args.get(4).map_or(1, |r| r.parse().unwrap());
    let mut cut = text.len() - (64 << 10);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let (body, warm) = text.split_at(cut);
    // DOC: the document size in bytes (64 KB by default); each round is 128 KB of them.
    let doc: usize = std::env::var("DOC").map_or(64 << 10, |d| d.parse().unwrap());
    let mut docs = Vec::new();
    let mut start = 0;
    while start < body.len() {
        let mut end = (start + doc).min(body.len());
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        docs.push(&body[start..end]);
        start = end;
    }
    // 64 MB read through under EVICT or EVICT_LOAD (allocated once, so that
    // page faults stay out of a profile).
    let evicts = std::env::var("EVICT").is_ok() || std::env::var("EVICT_LOAD").is_ok();
    let junk = vec![1u8; if evicts { 64 << 20 } else { 0 }];
    for _ in 0..rounds {
        let (mut secs, mut tokens) = (0.0, 0);
        // 128 KB of documents per fresh thread, as in one round of the suite.
        for pair in docs.chunks((128 << 10) / doc) {
            if fresh {
                drop(enc.take()); // the old one goes first, as in the suite
                enc = Some(load());
            }
            let enc = enc.as_ref().unwrap();
            if fresh && std::env::var("EVICT_LOAD").is_ok() {
                evict(&junk);
            }
            let (s, n) = std::thread::scope(|s| {
                s.spawn(|| {
                    enc.encode_ordinary(warm);
                    if std::env::var("REPEAT").is_ok() {
                        for d in pair {
                            enc.encode_ordinary(d);
                        }
                    }
                    // What other work between encodes (a Python gc.collect()) does to the
                    // CPU's caches.
                    if std::env::var("EVICT").is_ok() {
                        evict(&junk);
                    }
                    perf_control(b"enable\n");
                    let t = cpu_time();
                    let n: usize = pair.iter().map(|d| enc.encode_ordinary(d).len()).sum();
                    let t = cpu_time() - t;
                    perf_control(b"disable\n");
                    (t, n)
                })
                .join()
                .unwrap()
            });
            secs += s;
            tokens += n;
        }
        println!("{:.1} MB/s, {tokens} tokens", body.len() as f64 / secs / 1e6);
    }
}
