//! What the `umi train` and `umi eval` tests share: the tiny model, the OOD train file and the loss curve a
//! run writes. Each test binary uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The α-UMi OOD train file of `../shared/data`, or `None` (with a line saying the test is
/// skipped) when this checkout has no shared data.
pub fn ood_train() -> Option<PathBuf> {
    let path =
        repo().join("../shared/data/alpha-umi-toolbench/ood-train/out_of_domain_train300.json");
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} is missing", path.display());
        None
    }
}

/// A fresh temporary folder named for `test` and this process, holding `ten.json`: the first 10
/// trajectories of the OOD train file (5 of them in a `--dev-every 2` dev split). `None` (the test
/// is skipped) without the shared data. Returns the folder and the file.
pub fn ten_ood_trajectories(test: &str) -> Option<(PathBuf, PathBuf)> {
    let ood = ood_train()?;
    let tmp = std::env::temp_dir().join(format!("umi-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let all: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&ood).unwrap()).unwrap();
    let data = tmp.join("ten.json");
    std::fs::write(&data, serde_json::to_string(&all[..10]).unwrap()).unwrap();
    Some((tmp, data))
}

/// `umi <stage…>` (e.g. `train local --role planner`) on the tiny f32 model and `data`, for
/// `max_steps` steps into `out`, run from the repository root with no stdin; the caller adds
/// the rest.
pub fn tiny_train(stage: &[&str], data: &Path, out: &Path, max_steps: usize) -> Command {
    let root = repo();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_umi"));
    cmd.current_dir(&root)
        .args(stage)
        .arg("--model")
        .arg(root.join("assets/tiny/gguf/tiny-f32.gguf"))
        .arg("--data")
        .arg(data)
        .arg("--max-steps")
        .arg(max_steps.to_string())
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null());
    cmd
}

/// `(step, loss)` rows of a run's `loss.csv`.
pub fn loss_curve(out: &Path) -> Vec<(usize, f64)> {
    let text = std::fs::read_to_string(out.join("loss.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split(',');
            let step = f.next().unwrap().parse().unwrap();
            let loss = f.next().unwrap().parse().unwrap();
            (step, loss)
        })
        .collect()
}
