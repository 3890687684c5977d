//! `umi train` killed with SIGKILL, then `--resume`: training continues from the newest
//! checkpoint and the loss curve joins up with an uninterrupted run's, step for step.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{loss_curve as curve, ood_train, tiny_train};

fn train(data: &Path, out: &Path, max_steps: usize, resume: bool) -> Command {
    let mut cmd = tiny_train(&["train", "global"], data, out, max_steps);
    cmd.args(["--lora", "--lora-dropout", "0"])
        .args(["--lr", "1e-3", "--max-len", "96", "--save-every", "5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if resume {
        cmd.arg("--resume");
    }
    cmd
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
    let Some(data) = ood_train() else {
        return;
    };
    let tmp = std::env::temp_dir().join(format!("umi-train-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let total = 60;

    let whole = tmp.join("whole");
    assert!(
        train(&data, &whole, total, false)
            .status()
            .unwrap()
            .success()
    );
    let reference = curve(&whole);
    assert_eq!(reference.len(), total);

    // Kill -9 as soon as the second checkpoint is on disk.
    let killed = tmp.join("killed");
    let mut child = train(&data, &killed, total, false).spawn().unwrap();
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

    assert!(
        train(&data, &killed, total, true)
            .status()
            .unwrap()
            .success()
    );
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
