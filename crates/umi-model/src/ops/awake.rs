//! Keeps rayon's other workers awake while the CPU kernels run many short parallel products.
//!
//! A decode step of SmolLM2 is ~200 parallel regions of 20–100 µs each (the layers' products
//! and attention), separated by short serial work (norms, rotary embedding, residuals). Between
//! two regions rayon's idle workers spin ~32 rounds of `sched_yield`, then sleep on a futex;
//! the next region wakes them, and on a virtual machine that wake-up takes about as long as a
//! region, so the first worker has done most of a product alone by then. Decoding 6 sampled
//! SmolLM2 Q8_0 sequences together ran 310 tok/s on 1 thread and only 370 on 2 (1.2×), with
//! `futex` wake-ups and `sched_yield` 18 % of the samples in `perf` (2026-12-05); with the
//! workers kept awake, 450–520 tok/s on 2 threads.
//!
//! [`keep_awake`], called as each kernel starts, puts one *spinner* job on each other worker:
//! it runs whatever work rayon has (stealing as an idle worker would, through
//! [`rayon::yield_now`]) and otherwise polls: `HOT_POLLS` times on the core after the last
//! job it ran, then yielding the core to the OS between polls (`sched_yield`: at once back when
//! nothing else wants the core), until no kernel has started for [`LINGER`].
//! The workers are then awake when the next region starts, as llama.cpp's threads are between
//! its operations; after the last kernel they spin [`LINGER`] more and go back to rayon's sleep.

// (in the browser there is no thread pool: keep_awake does nothing there)
#![cfg_attr(target_arch = "wasm32", allow(dead_code, unused_imports))]

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long spinners wait for a next kernel before they end.
pub const LINGER: Duration = Duration::from_millis(2);

/// Polls a spinner makes without leaving the core after it last ran a job (each a look for
/// rayon work and a clock read, well under a microsecond: together meant to outlast the serial
/// work between two kernels of a decode step), before it polls with a `sched_yield` between. On a virtual machine a `sched_yield` is a system call of several
/// microseconds: a worker inside one when the next kernel started joined it late, and the
/// other thread did more of the work. With every poll a `sched_yield`, the second thread was
/// idle (`__schedule`, `sched_yield`) for 18 % of a 6-sequence SmolLM2 Q8_0 decode step
/// (perf, 2026-12-07).
const HOT_POLLS: u32 = 1000;

/// Spinners running (or queued) now.
static SPINNERS: AtomicUsize = AtomicUsize::new(0);
/// [`Awake`] guards alive now: while any is, spinners do not end.
static HOLDS: AtomicUsize = AtomicUsize::new(0);
/// When a kernel last started: nanoseconds since [`epoch`].
static LAST_KERNEL: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Whether this thread is inside a spinner (a spinner stolen by a spinner ends at once).
    static SPINNING: Cell<bool> = const { Cell::new(false) };
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Marks a kernel's start and, on a rayon worker of a pool with more than one thread, makes
/// sure a spinner runs on each other worker (see the module's documentation). Cheap when they
/// already do: one clock read and two atomic operations.
pub fn keep_awake() {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let Some(me) = rayon::current_thread_index() else {
            return;
        };
        let others = rayon::current_num_threads().saturating_sub(1);
        if others == 0 {
            return;
        }
        LAST_KERNEL.store(now_ns(), Ordering::Relaxed);
        let mut running = SPINNERS.load(Ordering::Relaxed);
        while running < others {
            match SPINNERS.compare_exchange_weak(
                running,
                running + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    rayon::spawn(move || spin(me));
                    running += 1;
                }
                Err(now) => running = now,
            }
        }
    }
}

/// Keeps the other workers awake until it is dropped ([`hold`]).
#[must_use = "the workers stay awake only while the guard lives"]
pub struct Awake(());

/// Keeps rayon's other workers awake (as [`keep_awake`] does) until the returned guard is
/// dropped, not only [`LINGER`] after each kernel: for work whose parallel regions are
/// separated by serial stretches longer than that, or are not umi's kernels. A training step
/// is: burn's matrix products (the `gemm` crate splits each over rayon) between element-wise
/// operations and autodiff bookkeeping on one thread; with the workers left to sleep there,
/// the second thread was asleep for a third of a SmolLM2 LoRA step (1 × 512 tokens) and most
/// products ran on one thread (2026-12-06). Call it on a rayon worker (elsewhere it holds
/// nothing); guards nest. In the browser (no thread pool, and no clock `std` can read) it does
/// nothing.
pub fn hold() -> Awake {
    #[cfg(not(target_arch = "wasm32"))]
    {
        HOLDS.fetch_add(1, Ordering::AcqRel);
        keep_awake();
    }
    Awake(())
}

impl Drop for Awake {
    fn drop(&mut self) {
        #[cfg(not(target_arch = "wasm32"))]
        {
            LAST_KERNEL.store(now_ns(), Ordering::Relaxed);
            HOLDS.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A spinner: runs rayon's pending jobs or spins until no kernel started for [`LINGER`]. Ends
/// at once on the thread that asked for it (that thread has a kernel to run, and a spinner it
/// waited in would never end) or inside another spinner.
#[cfg(not(target_arch = "wasm32"))]
fn spin(owner: usize) {
    let nested = SPINNING.with(|s| s.replace(true));
    if !nested && rayon::current_thread_index() != Some(owner) {
        let linger = LINGER.as_nanos() as u64;
        let mut idle_polls = 0;
        loop {
            match rayon::yield_now() {
                Some(rayon::Yield::Executed) => {
                    idle_polls = 0;
                    continue;
                }
                Some(rayon::Yield::Idle) => {}
                None => break,
            }
            if HOLDS.load(Ordering::Acquire) == 0
                && now_ns().saturating_sub(LAST_KERNEL.load(Ordering::Relaxed)) > linger
            {
                break;
            }
            idle_polls += 1;
            if idle_polls <= HOT_POLLS {
                std::hint::spin_loop();
            } else {
                // then yield the core to the OS between polls: free when the core has nothing
                // else to run (it returns at once), and a pool larger than the cores, or a
                // busy machine, does not lose its workers' time to spinners
                std::thread::yield_now();
            }
        }
    }
    SPINNING.with(|s| s.set(nested));
    SPINNERS.fetch_sub(1, Ordering::AcqRel);
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::time::{Duration, Instant};

    use super::{LINGER, SPINNERS};
    use crate::qmatmul::{QFormat, QMatrix};

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::SplitMix64::new(seed, "awake test");
        (0..n).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect()
    }

    /// Products run from a pool's worker (where spinners start) equal those run from outside
    /// any pool (where none do), for 2 and 3 threads, and the spinners end once the products
    /// stop: no thread is left spinning and nothing waits forever.
    #[test]
    fn products_on_a_pools_workers_are_unchanged_and_spinners_end() {
        let (rows, cols) = (96, 128);
        let w = QMatrix::from_rows(QFormat::Q8_0, &values(rows * cols, 1), rows, cols)
            .expect("a Q8_0 matrix");
        let inputs: Vec<(usize, Vec<f32>)> = [1, 3, 6, 9]
            .into_iter()
            .map(|tokens| (tokens, values(tokens * cols, tokens as u64 + 10)))
            .collect();
        let outside: Vec<Vec<f32>> = inputs.iter().map(|(t, x)| w.matmul(x, *t)).collect();
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool");
            let inside: Vec<Vec<f32>> = pool.install(|| {
                (0..50)
                    .flat_map(|_| inputs.iter().map(|(t, x)| w.matmul(x, *t)))
                    .collect()
            });
            for (i, product) in inside.iter().enumerate() {
                assert_eq!(
                    product,
                    &outside[i % inputs.len()],
                    "{threads} threads, product {i}"
                );
            }
            // spinners of other tests' pools may run too: wait for all to end
            let start = Instant::now();
            while SPINNERS.load(std::sync::atomic::Ordering::Acquire) > 0 {
                assert!(
                    start.elapsed() < LINGER * 500,
                    "spinners still running {:?} after the last product",
                    start.elapsed()
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}
