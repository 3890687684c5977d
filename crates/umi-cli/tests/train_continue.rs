//! `umi train local --adapter DIR`: continued fine-tuning of a trained role adapter starts from
//! its weights and LoRA settings, not from a fresh adapter.

mod common;

use std::path::Path;

use common::{loss_curve, ood_train, tiny_train};

/// `umi train local --role planner` on the tiny model; `extra` appended.
fn train(data: &Path, out: &Path, max_steps: usize, extra: &[&str]) -> std::process::Output {
    tiny_train(
        &["train", "local", "--role", "planner"],
        data,
        out,
        max_steps,
    )
    .args(["--lora-dropout", "0", "--lr", "2e-3", "--warmup-ratio", "0"])
    .args(["--max-len", "96", "--save-every", "100"])
    .args(extra)
    .output()
    .unwrap()
}

/// The losses of `loss.csv`, one per step.
fn losses(out: &Path) -> Vec<f64> {
    loss_curve(out).into_iter().map(|(_, l)| l).collect()
}

fn adapter_r(dir: &Path) -> u64 {
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).unwrap())
            .unwrap();
    config["r"].as_u64().unwrap()
}

#[test]
fn a_continued_adapter_starts_from_its_weights_and_keeps_its_settings() {
    let Some(data) = ood_train() else {
        return;
    };
    let tmp = std::env::temp_dir().join(format!("umi-train-continue-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);

    let first = tmp.join("first");
    let out = train(&data, &first, 24, &["--lora", "--lora-r", "8"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let adapter = first.join("final/adapter");
    assert_eq!(adapter_r(&adapter), 8);

    // The same seed and schedule length give the same first batch: a fresh adapter (B = 0)
    // scores it with the base model's loss, the continued one with the trained adapter's.
    let fresh = tmp.join("fresh");
    let out = train(&data, &fresh, 2, &["--lora", "--lora-r", "8"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let continued = tmp.join("continued");
    let out = train(
        &data,
        &continued,
        2,
        &["--adapter", adapter.to_str().unwrap(), "--lora-r", "4"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (fresh, continued_losses, first_losses) =
        (losses(&fresh), losses(&continued), losses(&first));
    assert!(
        continued_losses[0] < fresh[0] - 0.1,
        "the continued run's first loss {} is not below the fresh adapter's {} (first run: {:?})",
        continued_losses[0],
        fresh[0],
        first_losses
    );
    // The adapter's rank wins over --lora-r.
    assert_eq!(adapter_r(&continued.join("final/adapter")), 8);

    // A folder that is not an adapter is an error naming it.
    let out = train(
        &data,
        &tmp.join("bad"),
        2,
        &["--adapter", tmp.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("loading the adapter") && stderr.contains(tmp.to_str().unwrap()),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
