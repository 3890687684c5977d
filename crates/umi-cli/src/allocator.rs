//! The allocator's settings per workload: jemalloc (umi-cli's `#[global_allocator]`) reads them
//! from `_RJEM_MALLOC_CONF` once, as the process starts, so a command that wants other settings
//! than the one it was started with re-executes itself with them set (same process, same
//! arguments: `exec`, Unix only).
//!
//! - Training (`umi train …`, `umi bench --train`) keeps the pages it frees
//!   (`dirty_decay_ms:-1`): each step allocates and frees gigabytes of activations (SmolLM2's
//!   attention probabilities alone are 38 MB per layer at 4 × 512 tokens), and pages handed
//!   back to the OS came back as fresh pages the kernel had to zero: `clear_page_erms` was 28 %
//!   of a 4 × 512 LoRA step's samples in perf. Kept, a step ran 1.6× faster (127–140 →
//!   216–219 tok/s, 2026-12-05); the process keeps its peak memory until it ends.
//! - Every command asks for transparent huge pages (`thp:always`: 2 MiB pages where the
//!   system allows them, `madvise` mode included), fewer TLB misses for the weights' streams.
//!
//! A `_RJEM_MALLOC_CONF` the user set is left as it is.

use std::ffi::OsString;

/// The variable jemalloc (as tikv-jemalloc-sys builds it, with the `_rjem_` prefix) reads.
const VARIABLE: &str = "_RJEM_MALLOC_CONF";
/// Inference and everything else.
const DEFAULT: &str = "thp:always";
/// Training: freed pages kept for the next step.
const TRAINING: &str = "thp:always,dirty_decay_ms:-1,muzzy_decay_ms:-1";

/// The settings for a command: [`TRAINING`] when `training`, else [`DEFAULT`].
pub fn settings(training: bool) -> &'static str {
    if training { TRAINING } else { DEFAULT }
}

/// Re-executes this process with [`settings`] for the command when `_RJEM_MALLOC_CONF` is not
/// set yet; returns (and the command runs with jemalloc's defaults) where that is not possible
/// (not Unix, no path to the executable, `exec` failed), after saying why for a failed `exec`.
pub fn configure(training: bool) {
    if std::env::var_os(VARIABLE).is_some() {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let args: Vec<OsString> = std::env::args_os().skip(1).collect();
        let error = std::process::Command::new(&exe)
            .args(args)
            .env(VARIABLE, settings(training))
            .exec();
        eprintln!(
            "note: could not restart {} with allocator settings ({error}); going on with the defaults",
            exe.display()
        );
    }
    #[cfg(not(unix))]
    let _ = training;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Training keeps freed pages; nothing else does (inference's peak memory stays near the
    /// weights'), and both ask for huge pages.
    #[test]
    fn only_training_keeps_freed_pages() {
        assert!(settings(true).contains("dirty_decay_ms:-1"));
        assert!(!settings(false).contains("decay"));
        assert!(settings(true).contains("thp:always") && settings(false).contains("thp:always"));
    }
}
