//! Fork-join for the encode paths (`encode_batch`, pretokenize's blocks), with the calling
//! thread taking part.
//!
//! A batch is a few milliseconds of work. Under rayon the caller hands it to one pool thread
//! and sleeps, and the other threads are woken one after another as the work is split; on a
//! virtual machine waking an idle CPU can take from 0.3 to several milliseconds, so the
//! second thread often joined when the batch was nearly done and 2 threads measured no
//! faster than 1. Here the caller starts on the tasks at once, every helper the job may use
//! is woken together, and the caller never waits for a helper that has not started: it
//! takes the job off the board when no task is left to claim and waits only for tasks
//! already running. A job is therefore never slower than running it on the caller alone.
//! Helpers poll briefly after a job, so back-to-back batches skip the wake-up, then park.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long an idle helper polls for the next job before it parks.
const POLL: Duration = Duration::from_micros(50);

/// One call's tasks. It lives on the caller's stack; helpers reach it only through the
/// board, and the caller returns only after taking it off the board and seeing `attached`
/// fall to zero, so no helper touches it after that.
struct Job {
    /// The task body, its lifetime erased (see above).
    task: *const (dyn Fn(usize) + Sync),
    tasks: usize,
    /// The next task to claim.
    next: AtomicUsize,
    /// Helpers working on the job now; raised only under the board's lock, while listed.
    attached: AtomicUsize,
    /// Helpers that may still attach (the caller is the job's first participant).
    seats: AtomicUsize,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Listed(*const Job);
// SAFETY: a listed job is alive and shared only through atomics and a mutex (see `Job`).
unsafe impl Send for Listed {}

#[derive(Default)]
struct Pool {
    /// Jobs that may have tasks left, oldest first.
    board: Mutex<Vec<Listed>>,
    /// Parked helpers.
    parked: Mutex<Vec<Thread>>,
    /// Helpers started so far (they never exit).
    started: Mutex<usize>,
    /// Bumped for every new job; polling helpers watch it.
    epoch: AtomicU64,
}

/// This process's pool. A child made by `fork` inherits none of its parent's helper
/// threads, so it starts a pool of its own (the parent's, a few words, is left behind).
fn pool() -> &'static Pool {
    static POOL: Mutex<Option<(u32, &'static Pool)>> = Mutex::new(None);
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    match *pool {
        Some((owner, pool)) if owner == pid => pool,
        _ => {
            let fresh: &'static Pool = Box::leak(Box::default());
            *pool = Some((pid, fresh));
            fresh
        }
    }
}

impl Pool {
    /// Starts helpers until there are `n`.
    fn ensure(&'static self, n: usize) {
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        while *started < n {
            let spawned = std::thread::Builder::new()
                .name(format!("fastgpt-encode-{started}"))
                .spawn(move || self.serve());
            if spawned.is_err() {
                break; // fewer helpers: the caller does the rest
            }
            *started += 1;
        }
    }

    /// Attaches to the oldest listed job with a task left and a free seat.
    fn attach(&self) -> Option<&Job> {
        let board = self.board.lock().unwrap_or_else(|e| e.into_inner());
        board.iter().find_map(|&Listed(job)| {
            // SAFETY: listed jobs are alive (see `Job`).
            let job = unsafe { &*job };
            let open = job.next.load(Ordering::Relaxed) < job.tasks
                && job
                    .seats
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| s.checked_sub(1))
                    .is_ok();
            open.then(|| {
                job.attached.fetch_add(1, Ordering::AcqRel);
                job
            })
        })
    }

    fn has_work(&self) -> bool {
        let board = self.board.lock().unwrap_or_else(|e| e.into_inner());
        board.iter().any(|&Listed(job)| {
            // SAFETY: listed jobs are alive.
            let job = unsafe { &*job };
            job.next.load(Ordering::Relaxed) < job.tasks && job.seats.load(Ordering::Relaxed) > 0
        })
    }

    /// A helper's life: work, poll, park.
    fn serve(&self) {
        let me = std::thread::current();
        loop {
            if let Some(job) = self.attach() {
                run_tasks(job, &mut || {});
                // The job may be gone once this lands: nothing touches it after.
                job.attached.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let seen = self.epoch.load(Ordering::Acquire);
            if self.has_work() {
                continue;
            }
            let start = Instant::now();
            while self.epoch.load(Ordering::Acquire) == seen && start.elapsed() < POLL {
                std::hint::spin_loop();
            }
            if self.epoch.load(Ordering::Acquire) != seen {
                continue;
            }
            // Listed as parked before the last look, so a job published after it unparks us.
            self.parked.lock().unwrap_or_else(|e| e.into_inner()).push(me.clone());
            if !self.has_work() {
                std::thread::park();
            }
            self.parked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|t| t.id() != me.id());
        }
    }
}

/// Claims and runs tasks until none is left, calling `after()` after each; a panic is kept
/// for the caller.
fn run_tasks(job: &Job, after: &mut dyn FnMut()) {
    // SAFETY: the task outlives every participant (see `Job`).
    let task = unsafe { &*job.task };
    loop {
        let i = job.next.fetch_add(1, Ordering::AcqRel);
        if i >= job.tasks {
            return;
        }
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| task(i))) {
            job.panic.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(panic);
        }
        after();
    }
}

/// The number of threads `threads` means: `None` or 0 is every core.
pub fn resolve(threads: Option<usize>) -> usize {
    match threads {
        None | Some(0) => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Some(n) => n,
    }
}

/// Runs `task(i)` for every `i` in `0..tasks` on the caller and up to `threads - 1` helpers,
/// returning when all have run; a task's panic is raised again here after that.
pub fn for_each(threads: usize, tasks: usize, task: impl Fn(usize) + Sync) {
    for_each_between(threads, tasks, task, || {});
}

/// `for_each`, with `between()` called on the caller after each task it runs and while it
/// waits for the helpers' last tasks. A panic in `between` is raised only after the wait
/// (the job lives on this stack), and `between` is not called again after one.
fn for_each_between(threads: usize, tasks: usize, task: impl Fn(usize) + Sync, mut between: impl FnMut()) {
    let helpers = threads.saturating_sub(1).min(tasks.saturating_sub(1));
    if helpers == 0 {
        return (0..tasks).for_each(|i| {
            task(i);
            between();
        });
    }
    let pool = pool();
    pool.ensure(helpers);
    let task: &(dyn Fn(usize) + Sync) = &task;
    let job = Job {
        // SAFETY: only the lifetime is erased; the job never outlives this call (see `Job`).
        task: unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(task) },
        tasks,
        next: AtomicUsize::new(0),
        attached: AtomicUsize::new(0),
        seats: AtomicUsize::new(helpers),
        panic: Mutex::new(None),
    };
    let mut between_panic = None;
    let mut between = || {
        if between_panic.is_none() {
            between_panic = catch_unwind(AssertUnwindSafe(&mut between)).err();
        }
    };
    let listed = Listed(&job);
    pool.board.lock().unwrap_or_else(|e| e.into_inner()).push(listed);
    pool.epoch.fetch_add(1, Ordering::AcqRel);
    // Wake at once every parked helper the job can seat (polling ones see the epoch).
    let woken: Vec<Thread> = {
        let mut parked = pool.parked.lock().unwrap_or_else(|e| e.into_inner());
        let keep = parked.len().saturating_sub(helpers);
        parked.drain(keep..).collect()
    };
    woken.iter().for_each(Thread::unpark);
    run_tasks(&job, &mut between);
    pool.board
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|&l| l != listed);
    // Only helpers already inside `run_tasks` remain, each finishing the task it claimed.
    let mut spins = 0u32;
    while job.attached.load(Ordering::Acquire) != 0 {
        between();
        if spins < 1 << 12 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
    if let Some(panic) = job.panic.into_inner().unwrap_or_else(|e| e.into_inner()) {
        resume_unwind(panic);
    }
    if let Some(panic) = between_panic {
        resume_unwind(panic);
    }
}

/// `(0..tasks).map(task).collect()`, computed as `for_each` does.
pub fn map<T: Send>(threads: usize, tasks: usize, task: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let mut out: Vec<Option<T>> = (0..tasks).map(|_| None).collect();
    map_into(threads, tasks, task, |i, value| out[i] = Some(value));
    out.into_iter().map(|value| value.expect("every task ran")).collect()
}

/// Runs `task(i)` for every `i` in `0..tasks` as `for_each` does, and hands each result to
/// `take(i, result)` on the caller, in the order they finish, as soon as the caller is free:
/// between its own tasks and while it waits for the helpers. Work the caller must do alone
/// (building Python objects under the GIL) thus overlaps the helpers' tasks.
pub fn map_into<T: Send>(
    threads: usize,
    tasks: usize,
    task: impl Fn(usize) -> T + Sync,
    mut take: impl FnMut(usize, T),
) {
    // Each slot is written once, by its task, then `done` is raised; a lock per slot keeps
    // that safe for any `T: Send`.
    let slots: Vec<Mutex<Option<T>>> = (0..tasks).map(|_| Mutex::new(None)).collect();
    let done: Vec<AtomicBool> = (0..tasks).map(|_| AtomicBool::new(false)).collect();
    // Results not yet taken start at `first`.
    let mut first = 0;
    let mut taken = vec![false; tasks];
    let mut take_ready = || {
        for i in first..tasks {
            if !taken[i] && done[i].load(Ordering::Acquire) {
                taken[i] = true;
                let value = slots[i].lock().unwrap_or_else(|e| e.into_inner()).take();
                take(i, value.expect("a done task left its result"));
            }
        }
        while first < tasks && taken[first] {
            first += 1;
        }
    };
    for_each_between(
        threads,
        tasks,
        |i| {
            let value = task(i);
            *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
            done[i].store(true, Ordering::Release);
        },
        &mut take_ready,
    );
    take_ready();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_task_runs_once_in_order_of_results() {
        for threads in [1, 2, 3, 8] {
            for tasks in [0usize, 1, 2, 5, 100] {
                let runs = AtomicUsize::new(0);
                let out = map(threads, tasks, |i| {
                    runs.fetch_add(1, Ordering::Relaxed);
                    i * 7
                });
                assert_eq!(out, (0..tasks).map(|i| i * 7).collect::<Vec<_>>());
                assert_eq!(runs.load(Ordering::Relaxed), tasks);
            }
        }
    }

    #[test]
    fn results_are_taken_on_the_caller_once_each() {
        let caller = std::thread::current().id();
        for threads in [1, 2, 4] {
            for tasks in [0usize, 1, 3, 64] {
                let mut seen = vec![0u32; tasks];
                map_into(
                    threads,
                    tasks,
                    |i| {
                        std::thread::sleep(Duration::from_micros((i % 5) as u64 * 50));
                        i * 3
                    },
                    |i, value| {
                        assert_eq!(std::thread::current().id(), caller);
                        assert_eq!(value, i * 3);
                        seen[i] += 1;
                    },
                );
                assert!(
                    seen.iter().all(|&n| n == 1),
                    "{threads} threads, {tasks} tasks: {seen:?}"
                );
            }
        }
    }

    #[test]
    fn a_panic_while_taking_is_raised_after_every_task_ran() {
        let runs = AtomicUsize::new(0);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            map_into(
                2,
                40,
                |i| {
                    runs.fetch_add(1, Ordering::Relaxed);
                    i
                },
                |i, _| assert!(i != 2, "taking 2 fails"),
            )
        }));
        assert!(caught.is_err());
        assert_eq!(runs.load(Ordering::Relaxed), 40);
    }

    #[test]
    fn concurrent_and_nested_calls_finish() {
        let total = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let sums = map(3, 8, |i| map(2, 4, |j| (i * 4 + j) as u64).iter().sum::<u64>());
                        total.fetch_add(sums.iter().sum(), Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 50 * (0..32u64).sum::<u64>());
    }

    #[test]
    fn a_panicking_task_is_raised_after_the_others_ran() {
        let runs = AtomicUsize::new(0);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            for_each(2, 40, |i| {
                runs.fetch_add(1, Ordering::Relaxed);
                assert!(i != 3, "task 3 fails");
            })
        }));
        assert!(caught.is_err());
        assert_eq!(runs.load(Ordering::Relaxed), 40);
        assert_eq!(map(2, 10, |i| i).len(), 10);
    }

    #[test]
    fn a_caller_never_waits_for_busy_helpers() {
        // Every helper is asleep in a long task of another job: a small job must then be
        // done by its caller alone, long before those tasks end.
        std::thread::scope(|s| {
            s.spawn(|| for_each(16, 16, |_| std::thread::sleep(Duration::from_millis(600))));
            std::thread::sleep(Duration::from_millis(50));
            let start = Instant::now();
            let sum: usize = map(4, 200, |i| i).iter().sum();
            assert_eq!(sum, (0..200).sum::<usize>());
            assert!(start.elapsed() < Duration::from_millis(400), "{:?}", start.elapsed());
        });
    }
}
