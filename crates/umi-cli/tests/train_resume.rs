//! `umi train` killed with SIGKILL, then `--resume`: training continues from the newest
//! checkpoint and the loss curve joins up with an uninterrupted run's, step for step.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn train(out: &Path, max_steps: usize, resume: bool) -> Command {
    let root = repo();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_umi"));
    cmd.current_dir(&root)
        .args(["train", "global", "--lora", "--lora-dropout", "0"])
        .args(["--lr", "1e-3", "--max-len", "96", "--save-every", "5"])
        .arg("--model")
        .arg(root.join("assets/tiny/gguf/tiny-f32.gguf"))
        .arg("--data")
        .arg(root.join("../shared/data/alpha-umi-toolbench/ood-train/out_of_domain_train300.json"))
        .arg("--max-steps")
        .arg(max_steps.to_string())
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if resume {
        cmd.arg("--resume");
    }
    cmd
}

/// `(step, loss)` rows of `loss.csv`.
fn curve(out: &Path) -> Vec<(usize, f64)> {
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

fn newest_checkpoint(out: &Path) -> Option<usize> {
    std::fs::read_dir(out)
        .ok()?
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_prefix("checkpoint-")?
                .parse()
                .ok()
        })
        .max()
}

#[test]
fn a_killed_run_resumes_from_its_last_checkpoint_on_the_same_curve() {
    let data = repo().join("../shared/data/alpha-umi-toolbench/ood-train");
    if !data.exists() {
        eprintln!("skipping: {} is missing", data.display());
        return;
    }
    let tmp = std::env::temp_dir().join(format!("umi-train-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let total = 60;

    let whole = tmp.join("whole");
    assert!(train(&whole, total, false).status().unwrap().success());
    let reference = curve(&whole);
    assert_eq!(reference.len(), total);

    // Kill -9 as soon as the second checkpoint is on disk.
    let killed = tmp.join("killed");
    let mut child = train(&killed, total, false).spawn().unwrap();
    let started = Instant::now();
    while newest_checkpoint(&killed).is_none_or(|s| s < 10) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let resumed_from = newest_checkpoint(&killed).unwrap();
    assert!(
        resumed_from < total,
        "the run finished before the kill; nothing to resume"
    );
    // Every checkpoint on disk is whole: written under a temporary name, then renamed.
    assert!(
        killed
            .join(format!("checkpoint-{resumed_from:06}/trainer_state.json"))
            .exists()
    );

    assert!(train(&killed, total, true).status().unwrap().success());
    let joined = curve(&killed);
    assert_eq!(
        joined.iter().map(|r| r.0).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "the curve has every step once"
    );
    for ((step, got), (_, want)) in joined.iter().zip(&reference) {
        assert!(
            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
            "step {step}: loss {got} after resuming from checkpoint {resumed_from}, {want} uninterrupted"
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
