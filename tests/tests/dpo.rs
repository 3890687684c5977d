//! Step-level DPO against PyTorch + PEFT + TRL: `assets/tiny/make_dpo_reference.py` (float64,
//! TRL's batch layout and loss formulas) wrote three preference pairs on the tiny Llama with the
//! PEFT adapter of `assets/tiny/training/peft_adapter`, their policy and reference log-probs,
//! losses and TRL metrics, the LoRA gradients and one clipped AdamW step
//! (../shared/docs/psrlm-design.md §4, tests T1–T4).

use std::collections::HashMap;
use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use pollster::block_on;
use umi_model::{Llama, LoraConfig, burn, load_peft};
use umi_tests::{assert_close, assets, load_folder};
use umi_train::{
    DpoConfig, DpoLoss, PairExample, TrainConfig, Trainer, completion_logps, dpo_loss,
};

fn dir() -> PathBuf {
    assets().join("tiny/dpo")
}

fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join(name)).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    serde_json::from_value(v.clone()).unwrap()
}

/// The fixture's pairs with the reference log-probs of `reference` ("R0_same_adapter" or
/// "R1_base").
fn pairs(reference: &str) -> Vec<PairExample> {
    let r = &json("reference.json")["reference_logps"][reference];
    let (chosen, rejected) = (floats(&r["chosen"]), floats(&r["rejected"]));
    let file = json("pairs.json");
    let ids = |v: &serde_json::Value| -> Vec<u32> { serde_json::from_value(v.clone()).unwrap() };
    file["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(k, p)| PairExample {
            id: p["id"].as_str().unwrap().to_string(),
            prompt_ids: ids(&p["prompt_ids"]),
            chosen_ids: ids(&p["chosen_ids"]),
            rejected_ids: ids(&p["rejected_ids"]),
            ref_chosen_logps: chosen[k],
            ref_rejected_logps: rejected[k],
        })
        .collect()
}

fn tensors(name: &str) -> HashMap<String, Vec<f64>> {
    umi_tests::f32_safetensors(&dir().join(name))
        .into_iter()
        .map(|(n, (_, data))| (n, data))
        .collect()
}

/// The tiny model with the fixture's PEFT adapter attached, and its LoRA settings.
fn policy(device: &Device) -> (Llama, LoraConfig) {
    let mut model = load_folder(&assets().join("tiny/llama-gqa"), device);
    let cfg = load_peft(
        &mut model,
        &assets().join("tiny/training/peft_adapter"),
        device,
    )
    .unwrap();
    (model, cfg)
}

fn trainer(device: &Device) -> Trainer {
    let (model, lora) = policy(device);
    let config = TrainConfig {
        learning_rate: 1e-3,
        warmup_ratio: 0.0,
        weight_decay: 0.01,
        max_grad_norm: 1.0,
        lora: Some(lora),
        ..TrainConfig::default()
    };
    Trainer::with_adapters(model, config, 1_000_000, device, false).unwrap()
}

/// Policy log-probs [chosen, rejected] per pair, flattened as `DpoStats::of` takes them.
fn umi_logps(model: &Llama, pairs: &[PairExample], device: &Device) -> Vec<f64> {
    pairs
        .iter()
        .flat_map(|p| {
            completion_logps(
                model,
                &p.prompt_ids,
                &[&p.chosen_ids, &p.rejected_ids],
                device,
            )
            .unwrap()
            .into_data()
            .iter::<f64>()
            .collect::<Vec<_>>()
        })
        .collect()
}

/// `[chosen_0, rejected_0, chosen_1, …]` from the fixture's separate chosen / rejected lists.
fn interleave(v: &serde_json::Value) -> Vec<f64> {
    let (c, r) = (floats(&v["chosen"]), floats(&v["rejected"]));
    c.iter().zip(&r).flat_map(|(&a, &b)| [a, b]).collect()
}

#[test]
fn completion_log_probs_match_trl_and_the_whole_sequence_computation() {
    let device = Device::flex();
    let (model, _) = policy(&device);
    let pairs = pairs("R1_base");
    let got: Vec<f32> = umi_logps(&model, &pairs, &device)
        .into_iter()
        .map(|x| x as f32)
        .collect();
    let want = interleave(&json("reference.json")["policy_logps"]);
    assert_close(&got, &want, 0.0, 1e-4, "policy log-probs (nats)");

    // Independently, in umi: each prompt + completion as one sequence, full logits.
    for (k, p) in pairs.iter().enumerate() {
        for (j, c) in [&p.chosen_ids, &p.rejected_ids].into_iter().enumerate() {
            let ids: Vec<i64> = p.prompt_ids.iter().chain(c).map(|&t| t as i64).collect();
            let n = ids.len();
            let input = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [1, n]), &device);
            let logits: Vec<f32> = model
                .forward(input, &mut model.new_cache())
                .into_data()
                .try_into_vec_as::<f32>()
                .unwrap();
            let mut sum = 0.0f64;
            for t in p.prompt_ids.len() - 1..n - 1 {
                let row = &logits[t * 256..(t + 1) * 256];
                let max = row.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
                let lse = max
                    + row
                        .iter()
                        .map(|&x| (x as f64 - max).exp())
                        .sum::<f64>()
                        .ln();
                sum += row[ids[t + 1] as usize] as f64 - lse;
            }
            let shared = got[2 * k + j] as f64;
            assert!(
                (shared - sum).abs() <= 1e-5 * sum.abs(),
                "pair {k} completion {j}: prompt once {shared}, whole sequence {sum}"
            );
        }
    }
    let (ours, trl) = umi_train::pair_tokens(&pairs[2]);
    assert_eq!((ours, trl), (9 + 2 * 5, 2 * 9 + 2 + 6));
}

#[test]
fn dpo_losses_and_trl_metrics_match_the_reference() {
    let device = Device::flex();
    let (model, _) = policy(&device);
    let pairs = pairs("R1_base");
    let logps = umi_logps(&model, &pairs, &device);
    let reference = json("reference.json");
    let eps = reference["label_smoothing"].as_f64().unwrap();
    let sft = reference["sft_weight"].as_f64().unwrap();
    for beta in [0.1, 0.5] {
        let want = &reference["by_beta_with_R1"][beta.to_string()];
        for (name, loss, sft_weight) in [
            ("sigmoid", DpoLoss::Sigmoid, 0.0),
            ("sigmoid_norm", DpoLoss::SigmoidNorm, 0.0),
            (
                "robust",
                DpoLoss::Robust {
                    label_smoothing: eps,
                },
                0.0,
            ),
            ("sigmoid_plus_sft", DpoLoss::Sigmoid, sft),
        ] {
            let config = DpoConfig {
                beta,
                loss,
                sft_weight,
            };
            let policy = Tensor::<1>::from_data(TensorData::new(logps.clone(), [6]), &device);
            let got = dpo_loss(policy, &pairs, &config).into_scalar::<f64>();
            let want = want["losses"][name].as_f64().unwrap();
            assert!(
                (got - want).abs() <= 1e-5 * want.abs(),
                "beta {beta} {name}: {got} vs {want}"
            );
        }
        let stats = umi_train::DpoStats::of(&pairs, &logps, beta);
        let m = &want["metrics"];
        for (name, got) in [
            ("rewards/chosen", stats.rewards_chosen),
            ("rewards/rejected", stats.rewards_rejected),
            ("rewards/margins", stats.rewards_margin),
            ("rewards/accuracies", stats.rewards_accuracy),
            ("logps/chosen", stats.logps_chosen),
            ("logps/rejected", stats.logps_rejected),
        ] {
            let want = m[name].as_f64().unwrap();
            assert!(
                (got - want).abs() < 1e-4,
                "beta {beta} {name}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn the_identity_reference_gives_ln_2_and_no_reward() {
    let device = Device::flex();
    let (model, _) = policy(&device);
    let mut pairs = pairs("R0_same_adapter");
    // The reference is the policy itself, scored by umi (as mining records it).
    let logps = umi_logps(&model, &pairs, &device);
    for (p, lp) in pairs.iter_mut().zip(logps.chunks_exact(2)) {
        (p.ref_chosen_logps, p.ref_rejected_logps) = (lp[0], lp[1]);
    }
    for beta in [0.1, 0.5] {
        let policy = Tensor::<1>::from_data(TensorData::new(logps.clone(), [6]), &device);
        let loss = dpo_loss(
            policy,
            &pairs,
            &DpoConfig {
                beta,
                ..DpoConfig::default()
            },
        )
        .into_scalar::<f64>();
        assert!((loss - std::f64::consts::LN_2).abs() < 1e-6, "{loss}");
        let stats = umi_train::DpoStats::of(&pairs, &logps, beta);
        assert!(stats.rewards_chosen.abs() < 1e-6 && stats.rewards_rejected.abs() < 1e-6);
    }
    // and a training step from there starts at ln 2 too, with dropout forced off
    let (model, mut lora) = policy(&device);
    lora.lora_dropout = 0.3;
    let mut model = model;
    for (_, p) in model.projections_mut() {
        if let Some(a) = &mut p.lora {
            a.dropout = 0.3;
        }
    }
    let config = TrainConfig {
        lora: Some(lora),
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::with_adapters(model, config, 10, &device, false).unwrap();
    let step = block_on(trainer.dpo_step(&pairs, &DpoConfig::default())).unwrap();
    assert!(
        (step.loss - std::f64::consts::LN_2).abs() < 1e-6,
        "step-0 loss with dropout 0.3 on the adapters: {}",
        step.loss
    );
}

#[test]
fn dpo_gradients_and_one_adamw_step_match_pytorch() {
    let device = Device::flex();
    let pairs = pairs("R1_base");
    let reference = json("reference.json");
    let mut trainer = trainer(&device);
    let config = DpoConfig::default();
    let (loss, grads) = trainer.dpo_named_gradients(&pairs, &config).unwrap();
    let want_loss = reference["by_beta_with_R1"]["0.1"]["losses"]["sigmoid"]
        .as_f64()
        .unwrap();
    assert!((loss - want_loss).abs() <= 1e-5 * want_loss, "{loss}");
    let want = tensors("grads.safetensors");
    assert_eq!(grads.len(), 28, "exactly the 28 lora_A / lora_B tensors");
    assert_eq!(grads.len(), want.len());
    for (name, g) in &grads {
        assert_close(&g.data, &want[name], 1e-3, 1e-6, name);
    }

    let step = block_on(trainer.dpo_step(&pairs, &config)).unwrap();
    let want_norm = reference["grad_norm"].as_f64().unwrap();
    assert!(
        (step.grad_norm - want_norm).abs() <= 1e-4 * want_norm,
        "{} vs {want_norm}",
        step.grad_norm
    );
    let stats = step.dpo.expect("a DPO step reports its rewards");
    let m = &reference["by_beta_with_R1"]["0.1"]["metrics"];
    assert!((stats.rewards_margin - m["rewards/margins"].as_f64().unwrap()).abs() < 1e-4);
    let after = umi_model::peft_state_dict(&trainer.inference_model()).unwrap();
    let want = tensors("after_adamw.safetensors");
    assert_eq!(after.len(), want.len());
    for (name, t) in &after {
        assert_close(
            &t.data,
            &want[name],
            1e-3,
            2e-6,
            &format!("after AdamW {name}"),
        );
    }
}

#[test]
fn dpo_training_prefers_the_chosen_steps() {
    let device = Device::flex();
    let mut pairs = pairs("R1_base");
    pairs.push(PairExample {
        id: "fourth".into(),
        prompt_ids: vec![1, 100, 101, 102, 103, 104],
        chosen_ids: vec![7, 8, 2],
        rejected_ids: vec![70, 80, 90, 2],
        ref_chosen_logps: 0.0,
        ref_rejected_logps: 0.0,
    });
    let mut trainer = trainer(&device);
    // references = the starting policy
    let start = umi_logps(&trainer.inference_model(), &pairs, &device.clone());
    for (p, lp) in pairs.iter_mut().zip(start.chunks_exact(2)) {
        (p.ref_chosen_logps, p.ref_rejected_logps) = (lp[0], lp[1]);
    }
    trainer.config.learning_rate = 1e-2;
    trainer.config.weight_decay = 0.0;
    let config = DpoConfig {
        beta: 0.5,
        ..DpoConfig::default()
    };
    let mut last = None;
    for _ in 0..60 {
        last = Some(block_on(trainer.dpo_step(&pairs, &config)).unwrap());
    }
    let last = last.unwrap();
    let stats = last.dpo.unwrap();
    assert!(last.loss < 0.05, "loss after 60 steps: {}", last.loss);
    assert_eq!(stats.rewards_accuracy, 1.0);
    let end = umi_logps(&trainer.inference_model(), &pairs, &device);
    let gap = |v: &[f64]| v.chunks_exact(2).map(|c| c[0] - c[1]).sum::<f64>();
    assert!(
        gap(&end) - gap(&start) > 5.0,
        "chosen − rejected log-prob gap grew by {} nats",
        gap(&end) - gap(&start)
    );
}

#[test]
fn bad_pairs_and_settings_are_refused_with_their_name() {
    let device = Device::flex();
    let mut trainer = trainer(&device);
    let mut pairs = pairs("R1_base");
    pairs[1].rejected_ids.clear();
    let err = block_on(trainer.dpo_step(&pairs, &DpoConfig::default()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("shared-start") && err.contains("rejected"),
        "{err}"
    );
    let pairs = self::pairs("R1_base");
    let err = block_on(trainer.dpo_step(
        &pairs,
        &DpoConfig {
            beta: 0.0,
            ..DpoConfig::default()
        },
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("beta"), "{err}");
    let err = block_on(trainer.dpo_step(
        &pairs,
        &DpoConfig {
            loss: DpoLoss::Robust {
                label_smoothing: 0.5,
            },
            ..DpoConfig::default()
        },
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("label smoothing"), "{err}");
    assert_eq!(trainer.step, 0, "no update was applied");
}

#[test]
fn pair_rows_become_examples_cut_dropped_and_scheduled() {
    use umi_data::preference::PreferencePair;
    let tokenizer = umi_model::Tokenizer::from_file(
        &assets().join("tiny/hf-export/tokenizer.json"),
        Some(1),
        vec![2],
        true,
    )
    .unwrap();
    let text = |p: &str, c: &str, r: &str| PreferencePair {
        prompt: Some(p.into()),
        chosen: Some(c.into()),
        rejected: Some(r.into()),
        ..PreferencePair::default()
    };
    let mut rows = vec![
        PreferencePair {
            id: "text".into(),
            role: Some("planner".into()),
            ..text("planner: ok", " yes", " no</s>")
        },
        PreferencePair {
            id: "long-prompt".into(),
            ..text(&"ab".repeat(40), " y", " n")
        },
        PreferencePair {
            id: "long-step".into(),
            ..text("q", &"z".repeat(30), " n")
        },
        PreferencePair {
            id: "ids".into(),
            prompt_ids: Some(vec![1, 5, 6]),
            chosen_ids: Some(vec![7, 2]),
            rejected_ids: Some(vec![8, 2]),
            ref_chosen_logps: Some(-1.5),
            ref_rejected_logps: Some(-2.5),
            ..PreferencePair::default()
        },
    ];
    let prepared = umi_train::prepare_pairs(&rows, &tokenizer, "planner", 24, 16).unwrap();
    let ids: Vec<&str> = prepared.pairs.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["text", "long-prompt", "ids"]);
    assert_eq!(prepared.dropped.len(), 1);
    assert!(prepared.dropped[0].1.contains("max-step-tokens"));
    let first = &prepared.pairs[0];
    assert_eq!(
        first.prompt_ids,
        tokenizer.encode("planner: ok", true).unwrap()
    );
    assert_eq!(first.prompt_ids[0], 1, "the prompt starts with BOS");
    assert_eq!(*first.chosen_ids.last().unwrap(), 2, "EOS appended");
    let no = tokenizer.encode(" no", false).unwrap();
    assert_eq!(first.rejected_ids[..no.len()], no[..]);
    assert_eq!(
        first.rejected_ids.len(),
        no.len() + 1,
        "EOS text not doubled"
    );
    let cut = &prepared.pairs[1];
    let longest = cut.chosen_ids.len().max(cut.rejected_ids.len());
    assert_eq!(
        cut.prompt_ids.len() + longest,
        24,
        "the prompt keeps its end"
    );
    let whole = tokenizer.encode(&"ab".repeat(40), true).unwrap();
    assert!(whole.ends_with(&cut.prompt_ids));
    assert_eq!(prepared.truncated, 1);
    assert_eq!(prepared.needs_reference, [true, true, false]);
    assert_eq!(prepared.pairs[2].ref_rejected_logps, -2.5);

    rows[0].role = Some("caller".into());
    let err = umi_train::prepare_pairs(&rows, &tokenizer, "planner", 24, 16)
        .unwrap_err()
        .to_string();
    assert!(err.contains("text") && err.contains("caller"), "{err}");

    // every pair once per epoch, in a seeded order that changes with the epoch
    let config = TrainConfig {
        batch_size: 2,
        gradient_accumulation_steps: 2,
        ..TrainConfig::default()
    };
    let mut state = umi_train::TrainerState::new(config.clone(), 100);
    let mut epochs = Vec::new();
    for _ in 0..2 {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let step = state.next_step_pairs(10);
            assert!(step.len() <= 4);
            seen.extend(step);
            state.steps_in_epoch += 1;
        }
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        epochs.push(seen);
    }
    assert_ne!(epochs[0], epochs[1]);
    assert_eq!(
        umi_train::pair_epoch_steps(10, &config, 0).concat(),
        epochs[0]
    );
}
