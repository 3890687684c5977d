//! Shared helpers for umi's end-to-end tests: where the repository's assets, the installed
//! default model and `../shared/data` are, and float comparison with tolerances.

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `assets/` in the repository.
pub fn assets() -> PathBuf {
    repo_root().join("assets")
}

/// The default model installed by `scripts/setup.sh`, or `None` when it is absent and the run
/// does not require it. Set `UMI_REQUIRE_WEIGHTS=1` (CI does) to turn absence into a failure.
pub fn default_model() -> Option<PathBuf> {
    let path = repo_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("UMI_REQUIRE_WEIGHTS").is_err(),
        "UMI_REQUIRE_WEIGHTS is set but {} is missing: run scripts/setup.sh",
        path.display()
    );
    eprintln!(
        "skipping: {} is missing (run scripts/setup.sh)",
        path.display()
    );
    None
}

/// Asserts `|got - want| <= atol + rtol·|want|` elementwise, reporting the worst element.
pub fn assert_close(got: &[f32], want: &[f64], rtol: f64, atol: f64, what: &str) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} vs {}",
        got.len(),
        want.len()
    );
    let mut worst = (0usize, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let excess = (g as f64 - w).abs() - (atol + rtol * w.abs());
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    assert!(
        worst.1 <= 0.0,
        "{what}: element {} is {} but the reference is {} (rtol {rtol}, atol {atol})",
        worst.0,
        got[worst.0],
        want[worst.0]
    );
}

/// `../shared/data` beside the repository (CI places it there).
pub fn shared_data() -> PathBuf {
    repo_root().join("../shared/data")
}
