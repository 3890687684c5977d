//! Training against PyTorch + PEFT: `assets/tiny/make_training_reference.py` (float64
//! transformers + peft 0.21.2) wrote the batch, losses, gradients (full and LoRA), a PEFT adapter
//! with its logits, and two AdamW steps after global-norm clipping. The tiny Llama is
//! `assets/tiny/llama-gqa`.

use std::collections::HashMap;
use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use pollster::block_on;
use umi_data::batch::Batch;
use umi_model::{Llama, LoraConfig, attach_lora, burn, load_peft, merge_lora, save_hf, save_peft};
use umi_tests::{assert_close, assets, load_folder};
use umi_train::{TrainConfig, Trainer};

fn dir() -> PathBuf {
    assets().join("tiny/training")
}

fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join(name)).unwrap()).unwrap()
}

fn batch() -> Batch {
    umi_tests::training_batch()
}

fn tensors(name: &str) -> HashMap<String, (Vec<usize>, Vec<f64>)> {
    umi_tests::f32_safetensors(&dir().join(name))
}

fn base(device: &Device) -> Llama {
    load_folder(&assets().join("tiny/llama-gqa"), device)
}

fn batch_logits(model: &Llama, b: &Batch) -> Vec<f32> {
    let device = model.embed_tokens.val().device();
    let (rows, cols) = (b.input_ids.len(), b.input_ids[0].len());
    let ids: Vec<i64> = b.input_ids.iter().flatten().map(|&t| t as i64).collect();
    let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, cols]), &device);
    model
        .forward(input, &mut model.new_cache())
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap()
}

/// Logits at real (non-pad) positions only: HF masks pad keys, umi relies on right padding.
fn real_positions(logits: &[f32], b: &Batch, vocab: usize) -> Vec<f32> {
    let cols = b.input_ids[0].len();
    let mut out = Vec::new();
    for (r, mask) in b.attention_mask.iter().enumerate() {
        for (t, &m) in mask.iter().enumerate() {
            if m == 1 {
                let at = (r * cols + t) * vocab;
                out.extend_from_slice(&logits[at..at + vocab]);
            }
        }
    }
    out
}

fn config(lora: Option<LoraConfig>) -> TrainConfig {
    TrainConfig {
        learning_rate: 1e-3,
        warmup_ratio: 0.0,
        weight_decay: 0.01,
        max_grad_norm: 1.0,
        lora,
        ..TrainConfig::default()
    }
}

fn peft_config() -> LoraConfig {
    LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        lora_dropout: 0.0,
        ..LoraConfig::default()
    }
}

#[test]
fn loss_from_hidden_states_equals_the_loss_from_full_logits() {
    let device = Device::default();
    let model = base(&device);
    let b = batch(); // rows with 7 and 4 target labels of 12: the masked positions matter
    let (rows, cols) = (b.input_ids.len(), b.input_ids[0].len());
    let ids: Vec<i64> = b.input_ids.iter().flatten().map(|&t| t as i64).collect();
    let input = || Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [rows, cols]), &device);
    let (full, n_full) =
        umi_train::causal_lm_loss(model.forward(input(), &mut model.new_cache()), &b.labels)
            .unwrap();
    let hidden = model.forward_hidden(input(), &mut model.new_cache());
    let (head_at_targets, n) =
        umi_train::causal_lm_loss_from_hidden(&model, hidden, &b.labels).unwrap();
    assert_eq!((n, n_full), (11, 11), "every target label is predicted");
    let (full, at) = (
        full.into_scalar::<f64>(),
        head_at_targets.into_scalar::<f64>(),
    );
    assert!((full - at).abs() < 1e-6 * full.abs(), "{full} vs {at}");
    let unlabelled = vec![vec![umi_data::batch::IGNORE_INDEX; cols]; rows];
    let hidden = model.forward_hidden(input(), &mut model.new_cache());
    assert!(umi_train::causal_lm_loss_from_hidden(&model, hidden, &unlabelled).is_none());
}

#[test]
fn full_fine_tuning_gradients_match_pytorch() {
    let device = Device::flex();
    let trainer = Trainer::new(base(&device), config(None), 10, &device).unwrap();
    let (loss, grads) = trainer.named_gradients(&[batch()]).unwrap();
    let want_loss = json("full.json")["loss"].as_f64().unwrap();
    assert!(
        (loss - want_loss).abs() < 1e-4,
        "loss {loss} vs {want_loss}"
    );
    let want = tensors("full_grads.safetensors");
    assert_eq!(grads.len(), want.len(), "every parameter has a gradient");
    for (name, g) in &grads {
        let (shape, data) = &want[name];
        assert_eq!(&g.shape, shape, "{name}");
        assert_close(&g.data, data, 1e-3, 1e-6, name);
    }
}

#[test]
fn peft_adapter_logits_gradients_and_adamw_steps_match_peft() {
    let device = Device::flex();
    let b = batch();
    let mut model = base(&device);
    let base_logits = batch_logits(&model, &b);
    let cfg = load_peft(&mut model, &dir().join("peft_adapter"), &device).unwrap();
    assert_eq!((cfg.r, cfg.lora_alpha, cfg.scaling()), (4, 8.0, 2.0));
    let logits = batch_logits(&model, &b);
    let want = tensors("lora_logits.safetensors");
    let vocab = 256;
    let real = |v: &[f64]| {
        let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        real_positions(&f, &b, vocab)
            .into_iter()
            .map(f64::from)
            .collect::<Vec<f64>>()
    };
    assert_close(
        &real_positions(&logits, &b, vocab),
        &real(&want["lora_logits"].1),
        1e-4,
        1e-4,
        "adapted logits",
    );
    assert_close(
        &real_positions(&base_logits, &b, vocab),
        &real(&want["base_logits"].1),
        1e-4,
        1e-4,
        "base logits",
    );

    let mut trainer =
        Trainer::with_adapters(model, config(Some(cfg.clone())), 1_000_000, &device, false)
            .unwrap();
    let (loss, grads) = trainer.named_gradients(std::slice::from_ref(&b)).unwrap();
    let reference = json("lora.json");
    assert!((loss - reference["loss"].as_f64().unwrap()).abs() < 1e-4);
    let want = tensors("lora_grads.safetensors");
    assert_eq!(grads.len(), want.len(), "only adapters get gradients");
    for (name, g) in &grads {
        let (shape, data) = &want[name];
        assert_eq!(&g.shape, shape, "{name}");
        assert_close(&g.data, data, 1e-3, 1e-6, name);
    }

    let step1 = block_on(trainer.train_step(std::slice::from_ref(&b))).unwrap();
    let want_norm = reference["grad_norm"].as_f64().unwrap();
    assert!(
        (step1.grad_norm - want_norm).abs() < 1e-4 * want_norm,
        "{}",
        step1.grad_norm
    );
    let after = umi_model::peft_state_dict(&trainer.inference_model()).unwrap();
    let want = tensors("lora_after_adamw.safetensors");
    for (name, t) in &after {
        assert_close(
            &t.data,
            &want[name].1,
            1e-3,
            2e-6,
            &format!("step 1 {name}"),
        );
    }
    let step2 = block_on(trainer.train_step(std::slice::from_ref(&b))).unwrap();
    assert!((step2.loss - reference["loss_step2"].as_f64().unwrap()).abs() < 1e-4);
    let after = umi_model::peft_state_dict(&trainer.inference_model()).unwrap();
    let want = tensors("lora_after_adamw2.safetensors");
    for (name, t) in &after {
        assert_close(
            &t.data,
            &want[name].1,
            1e-3,
            2e-6,
            &format!("step 2 {name}"),
        );
    }
}

#[test]
fn fresh_adapters_equal_base_merged_equals_unmerged_and_files_round_trip() {
    let device = Device::flex();
    let b = batch();
    let mut model = base(&device);
    let base_logits = batch_logits(&model, &b);
    attach_lora(&mut model, &peft_config(), 7, &device).unwrap();
    let fresh = batch_logits(&model, &b);
    assert_eq!(fresh, base_logits, "B = 0: a fresh adapter changes nothing");

    load_peft(&mut model, &dir().join("peft_adapter"), &device).unwrap();
    let adapted = batch_logits(&model, &b);
    let out = std::env::temp_dir().join(format!("umi-train-rt-{}", std::process::id()));
    save_peft(
        &model,
        &peft_config(),
        Some("tiny/llama-gqa"),
        &out.join("adapter"),
    )
    .unwrap();
    let mut reloaded = base(&device);
    load_peft(&mut reloaded, &out.join("adapter"), &device).unwrap();
    assert_eq!(batch_logits(&reloaded, &b), adapted, "PEFT save → load");
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["base_model_name_or_path"], "tiny/llama-gqa");

    merge_lora(&mut model);
    let merged = batch_logits(&model, &b);
    let adapted64: Vec<f64> = adapted.iter().map(|&x| x as f64).collect();
    assert_close(&merged, &adapted64, 1e-4, 1e-5, "merged vs unmerged");
    save_hf(&model, &out.join("model")).unwrap();
    let hf = load_folder(&out.join("model"), &device);
    assert_eq!(batch_logits(&hf, &b), merged, "HF save → load");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn lora_training_resumes_from_a_checkpoint_on_the_same_curve() {
    let device = Device::flex();
    let b = batch();
    let cfg = umi_tests::tiny_lora_curve_config();
    let steps = 300;
    let mut trainer = Trainer::new(base(&device), cfg.clone(), steps, &device).unwrap();
    let first = block_on(trainer.train_step(std::slice::from_ref(&b)))
        .unwrap()
        .loss;
    let out = std::env::temp_dir().join(format!("umi-train-ck-{}", std::process::id()));
    let mut history = Vec::new();
    for _ in 1..60 {
        history.push(block_on(trainer.train_step(std::slice::from_ref(&b))).unwrap());
    }
    let state = umi_train::TrainerState {
        step: trainer.step,
        total_steps: steps,
        epoch: 0,
        steps_in_epoch: trainer.step,
        config: cfg.clone(),
        history: history.clone(),
        dpo: None,
    };
    let ck = trainer.save_checkpoint(&out, &state).unwrap();
    assert!(ck.adapter_dir().join("adapter_model.safetensors").exists());
    let mut continued = Vec::new();
    for _ in 60..steps {
        continued.push(
            block_on(trainer.train_step(std::slice::from_ref(&b)))
                .unwrap()
                .loss,
        );
    }
    let last = *continued.last().unwrap();
    // LoRA cannot go to 0 here: the frozen final norm and LM head bound the logits of a
    // 64-wide model (the curve flattens near 0.57); full fine-tuning does (test below).
    assert!(last < 0.15 * first, "loss {first} → {last}");

    // Resume: base + the checkpoint's adapter + optimizer state; the curve continues exactly.
    let found = umi_train::latest_checkpoint(&out).unwrap();
    assert_eq!(found.state.step, 60);
    let mut model = base(&device);
    load_peft(&mut model, &found.adapter_dir(), &device).unwrap();
    let mut resumed = Trainer::with_adapters(model, cfg, steps, &device, false).unwrap();
    resumed.resume_from(&found).unwrap();
    let again: Vec<f64> = (60..steps)
        .map(|_| {
            block_on(resumed.train_step(std::slice::from_ref(&b)))
                .unwrap()
                .loss
        })
        .collect();
    let again32: Vec<f32> = again.iter().map(|&x| x as f32).collect();
    assert_close(&again32, &continued, 1e-3, 1e-5, "resumed loss curve");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn full_fine_tuning_memorises_a_tiny_batch() {
    let device = Device::flex();
    let b = batch();
    let cfg = TrainConfig {
        learning_rate: 1e-2,
        warmup_ratio: 0.1,
        ..TrainConfig::default()
    };
    let steps = 200;
    let mut trainer = Trainer::new(base(&device), cfg, steps, &device).unwrap();
    let losses: Vec<f64> = (0..steps)
        .map(|_| {
            block_on(trainer.train_step(std::slice::from_ref(&b)))
                .unwrap()
                .loss
        })
        .collect();
    let (first, last) = (losses[0], losses[steps - 1]);
    assert!(last < 0.02, "loss {first} → {last}");
    // the inference copy agrees with the last training loss (weights really updated)
    let eval = block_on(trainer.eval_loss(std::slice::from_ref(&b)))
        .unwrap()
        .unwrap();
    assert!(eval < 0.02, "{eval}");
}

/// A micro-batch whose rows share a 24-token prompt prefix (as α-UMi role samples share their
/// tool documentation), suffixes of different lengths right-padded with 0, targets at the end.
fn shared_prefix_batch() -> (Batch, Vec<Batch>) {
    let prefix: Vec<u32> = (0..24).map(|i| (i * 37 + 11) % 256).collect();
    let suffixes: [&[u32]; 3] = [
        &[5, 9, 200, 17, 3, 88, 41],
        &[6, 77, 4, 150, 2],
        &[5, 9, 201, 30, 31, 32, 33, 34, 35],
    ];
    let targets = [3, 2, 4]; // the last n tokens of each row are labels
    let rows: Vec<(Vec<u32>, Vec<i64>)> = suffixes
        .iter()
        .zip(targets)
        .map(|(s, n)| {
            let ids: Vec<u32> = prefix.iter().chain(s.iter()).copied().collect();
            let labels = ids
                .iter()
                .enumerate()
                .map(|(i, &t)| {
                    if i + n >= ids.len() {
                        i64::from(t)
                    } else {
                        umi_data::batch::IGNORE_INDEX
                    }
                })
                .collect();
            (ids, labels)
        })
        .collect();
    let one = |ids: &[u32], labels: &[i64], len: usize| {
        let pad = len - ids.len();
        Batch {
            input_ids: vec![
                ids.iter()
                    .copied()
                    .chain(std::iter::repeat_n(0, pad))
                    .collect(),
            ],
            labels: vec![
                labels
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(umi_data::batch::IGNORE_INDEX, pad))
                    .collect(),
            ],
            attention_mask: vec![
                std::iter::repeat_n(1, ids.len())
                    .chain(std::iter::repeat_n(0, pad))
                    .collect(),
            ],
        }
    };
    let len = rows.iter().map(|(ids, _)| ids.len()).max().unwrap();
    let mut padded = one(&rows[0].0, &rows[0].1, len);
    for (ids, labels) in &rows[1..] {
        let b = one(ids, labels, len);
        padded.input_ids.extend(b.input_ids);
        padded.labels.extend(b.labels);
        padded.attention_mask.extend(b.attention_mask);
    }
    let singles = rows
        .iter()
        .map(|(ids, labels)| one(ids, labels, ids.len()))
        .collect();
    (padded, singles)
}

#[test]
fn a_shared_prompt_prefix_computed_once_gives_the_unshared_loss_and_gradients() {
    let (batch, singles) = shared_prefix_batch();
    let shared = umi_train::shared_prefix_len(&batch);
    // rows 0 and 2 also share [5, 9] after the 24 tokens: the prefix is the common part of all
    assert_eq!(shared, 24);
    assert!(
        shared >= umi_train::MIN_SHARED_PREFIX,
        "the batch must take the shared path"
    );
    let device = Device::flex();
    for with_lora in [false, true] {
        let what = if with_lora { "LoRA" } else { "full" };
        let mut model = base(&device);
        // the PEFT reference adapter (B ≠ 0) shapes the forward pass too
        let lora =
            with_lora.then(|| load_peft(&mut model, &dir().join("peft_adapter"), &device).unwrap());
        let trainer = match lora {
            Some(cfg) => Trainer::with_adapters(model, config(Some(cfg)), 10, &device, false),
            None => Trainer::new(model, config(None), 10, &device),
        }
        .unwrap();
        // one micro-batch of three rows (shared prefix) against three one-row micro-batches
        // accumulated (every row computed whole)
        let (loss, grads) = trainer
            .named_gradients(std::slice::from_ref(&batch))
            .unwrap();
        let (want_loss, want) = trainer.named_gradients(&singles).unwrap();
        assert!(
            (loss - want_loss).abs() < 1e-5 * want_loss.abs().max(1.0),
            "{what}: loss {loss} vs {want_loss}"
        );
        assert_eq!(grads.len(), want.len(), "{what}");
        let want: HashMap<_, _> = want.into_iter().collect();
        for (name, g) in &grads {
            let w = &want[name];
            assert_eq!(g.shape, w.shape, "{what} {name}");
            let w: Vec<f64> = w.data.iter().map(|&x| f64::from(x)).collect();
            assert_close(&g.data, &w, 1e-4, 1e-6, &format!("{what} {name}"));
        }
    }
}

#[test]
fn micro_batches_too_large_for_memory_are_split_into_row_chunks() {
    let batch = |rows: usize, cols: usize, shared: usize| {
        let ids: Vec<Vec<u32>> = (0..rows)
            .map(|r| {
                (0..cols)
                    .map(|i| {
                        if i < shared {
                            i as u32 % 200
                        } else {
                            (r * 7 + i) as u32 % 200
                        }
                    })
                    .collect()
            })
            .collect();
        let labels = ids
            .iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .map(|(i, &t)| if i + 10 >= cols { i64::from(t) } else { -100 })
                    .collect()
            })
            .collect();
        Batch {
            attention_mask: vec![vec![1; cols]; rows],
            input_ids: ids,
            labels,
        }
    };
    let budget = umi_train::MAX_ATTENTION_SCORES;
    // small: one chunk, the batch itself
    let small = batch(8, 300, 0);
    assert_eq!(umi_train::split_rows(&small), vec![small.clone()]);
    // rows of 2,100 tokens with nothing shared: 2,100² scores each, over the budget alone
    let long = batch(3, 2100, 0);
    assert!(2100 * 2100 > budget);
    let chunks = umi_train::split_rows(&long);
    assert_eq!(chunks.len(), 3, "one row per chunk");
    // 7 rows of 1,000 with nothing shared: 10⁶ scores a row, 2 rows per chunk
    assert!((2 * 1000 * 1000..3 * 1000 * 1000).contains(&budget));
    let chunks = umi_train::split_rows(&batch(7, 1000, 0));
    let sizes: Vec<usize> = chunks.iter().map(|c| c.input_ids.len()).collect();
    assert_eq!(sizes, [2, 2, 2, 1]);
    // the same rows sharing 900 tokens: only 100 new positions each, all in one chunk
    assert_eq!(umi_train::split_rows(&batch(7, 1000, 900)).len(), 1);
    // the chunks are the rows in order
    let rows: Vec<Vec<u32>> = chunks.into_iter().flat_map(|c| c.input_ids).collect();
    assert_eq!(rows, batch(7, 1000, 0).input_ids);
}

#[test]
fn a_fine_tune_run_steps_as_the_manual_loop_with_one_step_counter() {
    use umi_data::batch::TrainingExample;
    use umi_train::{FineTuneRun, Objective, TrainerState};
    let device = Device::flex();
    // The fixture batch's two rows as examples (padding dropped), one per step: 3 steps = 1.5
    // epochs, so the second epoch's shuffled order is used too.
    let b = batch();
    assert_eq!(b.input_ids.len(), 2);
    let examples: Vec<TrainingExample> = (0..b.input_ids.len())
        .map(|r| {
            let n = b.attention_mask[r].iter().filter(|&&m| m == 1).count();
            TrainingExample {
                input_ids: b.input_ids[r][..n].to_vec(),
                labels: b.labels[r][..n].to_vec(),
            }
        })
        .collect();
    let cfg = TrainConfig {
        learning_rate: 1e-2,
        batch_size: 1,
        lora: Some(peft_config()),
        ..TrainConfig::default()
    };
    let steps = 3;
    let pad = 2;
    // by hand: the state picks the batches, the trainer steps, the state records
    let mut trainer = Trainer::new(base(&device), cfg.clone(), steps, &device).unwrap();
    let mut state = TrainerState::new(cfg.clone(), steps);
    let mut manual = Vec::new();
    while !state.is_done() {
        let group = state.next_step_batches(&examples, pad);
        let stats = block_on(trainer.train_step(&group)).unwrap();
        state.record(stats);
        manual.push(stats.loss);
    }
    // the run
    let trainer = Trainer::new(base(&device), cfg.clone(), steps, &device).unwrap();
    let objective = Objective::Sft { examples, pad };
    assert_eq!(objective.steps_per_epoch(&cfg), 2);
    let mut run = FineTuneRun::new(trainer, TrainerState::new(cfg, steps), objective);
    let mut losses = Vec::new();
    while !run.is_done() {
        losses.push(block_on(run.step()).unwrap().loss);
        assert_eq!(run.state.step, run.trainer.step, "one step counter");
    }
    assert_eq!(losses, manual);
    assert_eq!((run.state.step, run.state.epoch), (3, 1));
}
