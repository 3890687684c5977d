//! The native training references the browser test compares the Fine-tune panel with: the
//! LoRA SFT losses on the fixture's trajectory and the step-level DPO losses on its pairs.

use super::*;

/// Writes `train.json` and the native SFT losses the panel's steps must reproduce.
pub(crate) fn write_train_reference(
    out: &Path,
    scenario: &Scenario,
    docs: &[serde_json::Map<String, Value>],
) -> Result<Vec<f64>> {
    let weekday = scenario
        .answer
        .trim_end_matches('.')
        .rsplit(' ')
        .next()
        .context("the answer names no weekday")?;
    let swap = |s: &str| s.replace(DATE, TRAIN_DATE).replace(weekday, TRAIN_WEEKDAY);
    // the turns as `umi run --json` writes them, dates and weekdays swapped
    let turns: Value = serde_json::from_str(&swap(&serde_json::to_string(
        &scenario.trajectory.to_turns(),
    )?))?;
    let record = json!([{
        "tools": docs,
        "instruction": swap(&scenario.query),
        "conversations": turns,
    }]);
    let text = serde_json::to_string_pretty(&record)? + "\n";
    std::fs::write(out.join("train.json"), &text)?;

    let device = Backend::Cpu.device()?;
    let loaded = load_model(out, &device)?;
    let (conversations, _) = parse_alpha_umi(&text, Path::new("train.json"))?;
    let samples: Vec<_> = conversations
        .iter()
        .flat_map(|c| role_samples(c, Role::Planner, PromptSet::ToolBench))
        .collect();
    ensure!(!samples.is_empty(), "train.json gives no planner samples");
    let lora = LoraConfig {
        r: TRAIN_RANK,
        lora_alpha: TRAIN_ALPHA,
        lora_dropout: 0.0,
        ..LoraConfig::default()
    };
    let config = TrainConfig {
        learning_rate: TRAIN_LR,
        max_len: TRAIN_MAX_LEN,
        lora: Some(lora),
        ..TrainConfig::local(Role::Planner)
    };
    let max_len = config.max_len.min(loaded.model.max_positions());
    let examples = tokenize_examples(&samples, &loaded.tokenizer, max_len)?;
    let pad = loaded.tokenizer.eos_ids()[0];
    let mut trainer = Trainer::new(loaded.model, config.clone(), TRAIN_STEPS, &device)?;
    let mut state = TrainerState::new(config, TRAIN_STEPS);
    while !state.is_done() {
        let group = state.next_step_batches(&examples, pad);
        let stats = pollster::block_on(trainer.train_step(&group))?;
        state.record(stats);
    }
    let losses: Vec<f64> = state.history.iter().map(|s| s.loss).collect();
    ensure!(
        losses.last() < losses.first(),
        "the reference LoRA run does not lower the loss: {losses:?}"
    );
    let reference = json!({
        "role": "planner",
        "data": "train.json",
        "samples": samples.len(),
        "rank": TRAIN_RANK,
        "alpha": TRAIN_ALPHA,
        "dropout": 0.0,
        "learning_rate": TRAIN_LR,
        "steps": TRAIN_STEPS,
        "max_len": TRAIN_MAX_LEN,
        "seed": 42,
        "backend": "flex (CPU), f32",
        "losses": losses,
        "grad_norms": state.history.iter().map(|s| s.grad_norm).collect::<Vec<_>>(),
        "learning_rates": state.history.iter().map(|s| s.learning_rate).collect::<Vec<_>>(),
    });
    std::fs::write(
        out.join("train_reference.json"),
        serde_json::to_string_pretty(&reference)? + "\n",
    )?;
    Ok(losses)
}

/// Writes `dpo_pairs.jsonl` and `dpo_reference.json` into `out` (see the module docs, item 7);
/// returns the native losses.
///
/// The pairs are made as `umi reward export --recompute-ref` makes them (`prepare_pairs` at
/// a short max length, `PreparedPairs::score_reference` with the shipped planner adapter of
/// `out/agent/fixture/planner`), and the run is set up as the web app's worker sets up one from
/// its panel (`web/src/worker/train.rs`, `TrainJob::dpo`): the pairs re-prepared at the same
/// max length, `TrainConfig::dpo()` with the panel's learning rate, max length and steps, the
/// installed adapter continued, `check_reference`, `FineTuneRun` steps.
pub(crate) fn write_dpo_reference(out: &Path, scenario: &Scenario) -> Result<Vec<f64>> {
    let device = Backend::Cpu.device()?;
    let loaded = load_model(out, &device)?;
    let adapter = out.join("agent/fixture/planner");
    let mut policy = loaded.model.clone();
    let lora = umi_model::load_peft(&mut policy, &adapter, &device)?;

    // the rows: each planner prompt of the scenario with its memorised step chosen and a wrong
    // step rejected (the other planner step; the step with another date)
    let planner: Vec<&(Role, String, String)> = scenario
        .samples
        .iter()
        .filter(|(role, ..)| *role == Role::Planner)
        .collect();
    ensure!(
        planner.len() == 2,
        "the scenario has {} planner steps, not 2",
        planner.len()
    );
    let mut rows = Vec::new();
    for (i, (_, prompt, output)) in planner.iter().enumerate() {
        let other = &planner[1 - i].2;
        let redated = output.replace(DATE, IMPORT_DATE);
        let wrong = [Some(other.clone()), (redated != *output).then_some(redated)];
        for (j, rejected) in wrong.into_iter().flatten().enumerate() {
            rows.push(umi_data::preference::PreferencePair {
                id: format!("planner-{i}-{j}"),
                role: Some("planner".into()),
                prompt: Some(prompt.clone()),
                chosen: Some(format!("{output}{STOP}")),
                rejected: Some(format!("{rejected}{STOP}")),
                ..Default::default()
            });
        }
    }
    // what `umi reward export --recompute-ref --max-len N` writes, N the longest step plus
    // DPO_PROMPT_TOKENS
    let whole = umi_train::prepare_pairs(
        &rows,
        &loaded.tokenizer,
        "planner",
        MAX_POSITIONS,
        DPO_MAX_STEP_TOKENS,
    )?;
    let longest = whole
        .pairs
        .iter()
        .map(|p| p.chosen_ids.len().max(p.rejected_ids.len()))
        .max()
        .context("no DPO pair")?;
    let max_len = longest + DPO_PROMPT_TOKENS;
    let mut prepared = umi_train::prepare_pairs(
        &rows,
        &loaded.tokenizer,
        "planner",
        max_len,
        DPO_MAX_STEP_TOKENS,
    )?;
    prepared.ensure_some()?;
    ensure!(
        prepared.dropped.is_empty(),
        "pairs left out: {:?}",
        prepared.dropped
    );
    let all = prepared.to_score(true);
    pollster::block_on(prepared.score_reference(&policy, &all, &device, || {}))?;
    let mut text = String::new();
    for p in &prepared.pairs {
        let row = umi_data::preference::PreferencePair {
            id: p.id.clone(),
            role: Some("planner".into()),
            prompt_ids: Some(p.prompt_ids.clone()),
            chosen_ids: Some(p.chosen_ids.clone()),
            rejected_ids: Some(p.rejected_ids.clone()),
            ref_chosen_logps: Some(p.ref_chosen_logps),
            ref_rejected_logps: Some(p.ref_rejected_logps),
            ..Default::default()
        };
        text.push_str(&serde_json::to_string(&row)?);
        text.push('\n');
    }
    std::fs::write(out.join("dpo_pairs.jsonl"), &text)?;

    // the browser's run, natively: the file read back as the worker reads it
    let (rows, _) = umi_data::preference::parse_pairs(&text, Path::new("dpo_pairs.jsonl"))?;
    let max_len = max_len.min(loaded.model.max_positions());
    let pairs = umi_train::prepare_pairs(
        &rows,
        &loaded.tokenizer,
        "planner",
        max_len,
        DPO_MAX_STEP_TOKENS,
    )?
    .with_recorded_reference(max_len)?;
    let dpo = umi_train::DpoConfig {
        beta: DPO_BETA,
        ..Default::default()
    };
    let config = TrainConfig {
        learning_rate: DPO_LR,
        max_len,
        lora: Some(lora.clone()),
        ..TrainConfig::dpo()
    };
    let objective = umi_train::Objective::Dpo { pairs, config: dpo };
    let total = objective.total_steps(&config, Some(DPO_STEPS))?;
    let mut state = TrainerState::new(config.clone(), total);
    state.dpo = Some(dpo);
    pollster::block_on(umi_train::check_reference(
        &policy,
        objective.pairs().unwrap_or_default(),
        &state,
        &device,
        umi_train::ReferenceTolerance::SAME_BACKEND,
        "the shipped planner adapter",
        "the fixture's pairs are wrong",
    ))?;
    let trainer = Trainer::with_adapters(policy, config, total, &device, false)?;
    let mut run = umi_train::FineTuneRun::new(trainer, state, objective);
    while !run.is_done() {
        pollster::block_on(run.step())?;
    }
    let history = &run.state.history;
    let losses: Vec<f64> = history.iter().map(|s| s.loss).collect();
    let dpo_stat = |f: fn(&umi_train::DpoStats) -> f64| -> Vec<f64> {
        history
            .iter()
            .map(|s| s.dpo.as_ref().map_or(f64::NAN, f))
            .collect()
    };
    ensure!(
        (losses[0] - std::f64::consts::LN_2).abs() < 1e-6,
        "the first DPO loss is {} (policy = reference gives ln 2)",
        losses[0]
    );
    ensure!(
        losses.last() < losses.first(),
        "the reference DPO run does not lower the loss: {losses:?}"
    );
    let reference = json!({
        "role": "planner",
        "data": "dpo_pairs.jsonl",
        "pairs": run.objective().len(),
        "adapter": "agent/fixture/planner (the shipped one, continued)",
        "lora_r": lora.r,
        "beta": DPO_BETA,
        "learning_rate": DPO_LR,
        "steps": DPO_STEPS,
        "max_len": max_len,
        "seed": 42,
        "backend": "flex (CPU), f32",
        "losses": losses,
        "rewards_margins": dpo_stat(|d| d.rewards_margin),
        "rewards_accuracies": dpo_stat(|d| d.rewards_accuracy),
        "grad_norms": history.iter().map(|s| s.grad_norm).collect::<Vec<_>>(),
        "learning_rates": history.iter().map(|s| s.learning_rate).collect::<Vec<_>>(),
    });
    std::fs::write(
        out.join("dpo_reference.json"),
        serde_json::to_string_pretty(&reference)? + "\n",
    )?;
    Ok(losses)
}
