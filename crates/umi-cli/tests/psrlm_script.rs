//! `scripts/psrlm.sh` (process-based self-rewarding's schedule, psrlm-design.md §2.11) on the
//! tiny model: its stages run in order (EFT rows, M1, judge accuracy, dev evaluation, mining),
//! it stops where the spec says (the tiny judge ties every point, so no pair), summary.md holds
//! the numbers, and a rerun skips the stages already done.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{repo, ten_ood_trajectories};

fn psrlm(data: &Path, out: &Path) -> Output {
    let adapter = repo().join("assets/tiny/peft-umi/adapter");
    Command::new("bash")
        .current_dir(repo())
        .arg("scripts/psrlm.sh")
        .args(["--smoke", "--ignore-gates", "--out"])
        .arg(out)
        .env("UMI", env!("CARGO_BIN_EXE_umi"))
        .env("MODEL", repo().join("assets/tiny/gguf/tiny-f32.gguf"))
        .env("PLANNER", &adapter)
        .env("CALLER", &adapter)
        .env("SUMMARIZER", &adapter)
        .env("DATA", data)
        .envs([
            ("DEV_EVERY", "2"),
            ("M1_STEPS", "2"),
            ("M1_BATCH", "2"),
            ("MAX_LEN", "96"),
            ("POOLS", "3"),
            ("WIDTH", "2"),
            ("MAX_NEW_TOKENS", "8"),
            ("STEP_TOKENS", "8"),
            ("GEN_FLAGS", "--max-input-tokens 96"),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_schedule_runs_its_stages_stops_on_no_pairs_and_resumes() {
    let Some((tmp, data)) = ten_ood_trajectories("psrlm-script") else {
        return;
    };
    let out = tmp.join("run");

    let first = psrlm(&data, &out);
    let log = String::from_utf8_lossy(&first.stdout).to_string()
        + &String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{log}");
    for file in [
        "eft/train/eft.jsonl",
        "eft/dev/eft.jsonl",
        "m1/run/final/adapter/adapter_model.safetensors",
        "m1/judge/report.json",
        "m1/eval/report.json",
        "m1/pairs/report.json",
    ] {
        assert!(out.join(file).exists(), "{file} missing:\n{log}");
    }
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("| M1 | "), "{summary}");
    assert!(
        summary.contains("Stopped: no pair mined at M1"),
        "{summary}"
    );
    assert!(summary.contains("gate G1 failed for M1"), "{summary}");
    assert!(!out.join("m2").exists(), "no DPO without pairs");
    // every key the script's stopping rules read from the mining report is in it (a missing
    // one is a Python KeyError that the script took for a failed rule)
    let script = std::fs::read_to_string(repo().join("scripts/psrlm.sh")).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("m1/pairs/report.json")).unwrap())
            .unwrap();
    let read: Vec<&str> = script
        .lines()
        .filter(|l| l.contains("pairs/report.json"))
        .flat_map(|l| l.split("d['").skip(1))
        .filter_map(|k| k.split_once("']").map(|(k, _)| k))
        .collect();
    assert!(read.contains(&"yield"), "{read:?}");
    for key in read {
        assert!(
            report.get(key).is_some(),
            "psrlm.sh reads {key}, not in {report}"
        );
    }

    // a rerun trains nothing again and ends the same way
    let second = psrlm(&data, &out);
    let log = String::from_utf8_lossy(&second.stdout).to_string()
        + &String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{log}");
    assert!(!log.contains("step 2/2"), "M1 was trained again:\n{log}");
    // the same summary but for its title's date
    let body = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(
        body(&std::fs::read_to_string(out.join("summary.md")).unwrap()),
        body(&summary)
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}
