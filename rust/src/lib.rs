//! fastgpt's Rust core: byte-level BPE encoding and training and the file formats
//! around it. Pure Rust; the Python bindings live in `py.rs`, behind the `python` feature.

pub mod arrow_c;
pub mod binfile;
pub mod bpe;
pub mod error;
pub mod memory;
pub mod split;
pub mod workers;

#[cfg(feature = "python")]
mod py;

pub use bpe::encode::{Allowed, Encoder};
pub use bpe::train::{Merger, WordCounter};
pub use error::{Error, Result};
pub use split::Splitter;

/// A token id. In tiktoken's vocabularies it is also the merge rank.
pub type Rank = u32;

use rayon::ThreadPool;
use std::sync::{Arc, Mutex, OnceLock};

/// Runs `f` on a pool of `threads` workers (rayon's global pool, sized to the cores, for
/// `None` or 0). Pools are kept per size, so repeated calls do not respawn threads.
pub fn with_threads<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> R {
    type Pools = Mutex<Vec<(usize, Arc<ThreadPool>)>>;
    static POOLS: OnceLock<Pools> = OnceLock::new();
    let n = match threads {
        None | Some(0) => return f(),
        Some(n) => n,
    };
    let pool = {
        let mut pools = POOLS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match pools.iter().find(|(size, _)| *size == n) {
            Some((_, pool)) => pool.clone(),
            None => {
                let pool = Arc::new(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(n)
                        .build()
                        .expect("spawn threads"),
                );
                pools.push((n, pool.clone()));
                pool
            }
        }
    };
    pool.install(f)
}
