//! `umi eval` then `umi eval compare`: two finished static evaluations of the same decisions
//! (the tiny model at two generation lengths) compared with a paired bootstrap; the whole-run
//! values equal each run's own report, a run against itself changes nothing, and an unfinished
//! run is refused.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{repo, ten_ood_trajectories};

fn umi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_umi"))
        .current_dir(repo())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `umi eval` of the tiny model on `data`'s dev split (every 2nd trajectory).
fn eval(data: &Path, out: &Path, max_new_tokens: &str, extra: &[&str]) -> Output {
    let model = repo().join("assets/tiny/gguf/tiny-f32.gguf");
    let mut args = vec![
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--raw-prompts",
        "--data",
        data.to_str().unwrap(),
        "--dev-every",
        "2",
        "--max-new-tokens",
        max_new_tokens,
        "--max-input-tokens",
        "96",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    umi(&args)
}

fn metric(comparison: &serde_json::Value, name: &str) -> serde_json::Value {
    comparison["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == name)
        .unwrap()
        .clone()
}

#[test]
fn two_finished_runs_compare_with_intervals_and_an_unfinished_one_is_refused() {
    let Some((tmp, data)) = ten_ood_trajectories("eval-compare") else {
        return;
    };

    let (long, short, part) = (tmp.join("long"), tmp.join("short"), tmp.join("part"));
    ok(eval(&data, &long, "12", &[]));
    ok(eval(&data, &short, "3", &[]));
    ok(eval(&data, &part, "12", &["--limit", "2"]));
    let report = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
    };

    let args = |a: &Path, b: &Path| {
        vec![
            "eval".to_string(),
            "compare".into(),
            a.display().to_string(),
            b.display().to_string(),
            "--resamples".into(),
            "400".into(),
            "--json".into(),
        ]
    };
    let run = |a: &Path, b: &Path| -> serde_json::Value {
        let args = args(a, b);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        serde_json::from_str(&ok(umi(&args))).unwrap()
    };

    let same = run(&long, &long);
    assert!(same["decisions"].as_u64().unwrap() > 5);
    assert_eq!(same["trajectories"], 5);
    for m in same["metrics"].as_array().unwrap() {
        assert_eq!(
            (m["low"].as_f64(), m["high"].as_f64()),
            (Some(0.0), Some(0.0)),
            "{m}"
        );
    }

    let c = run(&short, &long);
    for (name, key) in [
        ("Plan ACC", "plan_em"),
        ("Act. EM", "action_em"),
        ("R-L", "rouge_l"),
    ] {
        let m = metric(&c, name);
        assert_eq!(m["before"], report(&short)["metrics"][key], "{name}");
        assert_eq!(m["after"], report(&long)["metrics"][key], "{name}");
        let change = m["after"].as_f64().unwrap() - m["before"].as_f64().unwrap();
        assert!(
            m["low"].as_f64().unwrap() <= change + 1e-12
                && change <= m["high"].as_f64().unwrap() + 1e-12,
            "{m}"
        );
    }

    let args = args(&long, &part);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = umi(&args);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("has predicted 2 of the"), "{e}");
    std::fs::remove_dir_all(&tmp).unwrap();
}
