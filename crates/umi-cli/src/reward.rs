//! `umi reward eft`: judge-training data for process-based self-rewarding (`umi-reward`'s
//! `eft`, psrlm-design.md §2.9), written as role samples that `umi train local
//! --extra-samples` mixes into the planner's training (the paper's M1 = SFT on IFT + EFT), and
//! as TRL prompt/completion rows.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use umi_data::judge::JudgeFormat;
use umi_data::readers::{DataFormat, Split, read};
use umi_reward::{EftConfig, eft_rows, tool_families};

use crate::fs::write_atomically;

#[derive(clap::Subcommand)]
pub enum RewardCommand {
    /// Judge-training (EFT) rows from gold trajectories: each gold planner step against
    /// objectively worse steps made from it (another decision, an unlisted tool, the prompt's
    /// format line, the previous step again), in both orders.
    Eft(EftArgs),
    /// How well a model judges: its verdicts on EFT rows (`umi reward eft`, e.g. the dev
    /// split), whose better step is known, read from the logits (verdict format) or from a
    /// short greedy explanation (explain format), through the planner slot of the model flags.
    JudgeEval(JudgeEvalArgs),
    /// Step preference pairs by self-judging at gold decision points: the planner samples
    /// --width candidate steps from each gold history, judges every ordered pair of the
    /// distinct ones itself (from the logits), and the best and worst by wins become a pair for
    /// `umi train dpo`. Resumable: a rerun with the same --out skips the points done.
    Pairs(PairsArgs),
    /// Pairs as umi records with token ids and reference log-probs (what `umi train dpo` trains
    /// on, and scripts/trl/dpo_umi.py trains on with TRL elsewhere): tokenized and cut as
    /// `umi train dpo` does, reference log-probs from --adapter where a row has none.
    Export(ExportArgs),
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Preference pairs, JSON lines (repeatable): umi's or TRL's rows.
    #[arg(long, required = true)]
    pairs: Vec<PathBuf>,
    /// The role the pairs belong to.
    #[arg(long, default_value = "planner")]
    role: String,
    /// Base model (.gguf or Hugging Face folder).
    #[arg(long, default_value = crate::DEFAULT_MODEL)]
    model: PathBuf,
    /// A PEFT adapter merged into the base first.
    #[arg(long)]
    init_adapter: Option<PathBuf>,
    /// The reference adapter (the one DPO will start from).
    #[arg(long)]
    adapter: PathBuf,
    /// Compute every pair's reference log-probs, recorded or not.
    #[arg(long)]
    recompute_ref: bool,
    /// Tokens of prompt + step (longer prompts keep their end).
    #[arg(long, default_value_t = 1536)]
    max_len: usize,
    /// Pairs with a longer step are left out.
    #[arg(long, default_value_t = 256)]
    max_step_tokens: usize,
    /// Compute backend: cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    backend: umi_model::Backend,
    /// The JSON-lines file to write.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct PairsArgs {
    /// Reference trajectories (α-UMi conversation JSON, or another --format).
    #[arg(long, default_value = crate::eval::DEFAULT_EVAL_DATA)]
    data: PathBuf,
    /// Data format: alpha-umi, toolbench, api-bank.
    #[arg(long, default_value = "alpha-umi")]
    format: DataFormat,
    /// Records used: train (all but every --dev-every-th) or all; dev needs --allow-dev.
    #[arg(long, default_value = "train")]
    split: Split,
    /// Split period (record i is dev when i % dev_every == 0).
    #[arg(long, default_value_t = 6)]
    dev_every: usize,
    /// Mine the dev split too (its pairs must not train a model evaluated on it).
    #[arg(long)]
    allow_dev: bool,
    /// Only the first N trajectories of the split.
    #[arg(long)]
    limit_trajectories: Option<usize>,
    #[command(flatten)]
    models: crate::models::RoleModelArgs,
    /// Candidates sampled per decision point.
    #[arg(long, default_value_t = 6)]
    width: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.5)]
    temperature: f64,
    /// Nucleus mass.
    #[arg(long, default_value_t = 0.95)]
    top_p: f64,
    /// Most new tokens of a step.
    #[arg(long, default_value_t = 192)]
    max_new_tokens: usize,
    /// Fewest wins between best and worst for a pair.
    #[arg(long, default_value_t = 1)]
    min_margin: u32,
    /// Prompts longer than this many tokens keep their end (the reference's 3750).
    #[arg(long, default_value_t = 3750)]
    max_input_tokens: usize,
    /// Seed of the candidates.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Compute backend: cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    backend: umi_model::Backend,
    /// Output folder: settings.json, search.jsonl, pairs.jsonl, report.json.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct JudgeEvalArgs {
    /// EFT rows (`umi reward eft --split dev`'s eft.jsonl).
    #[arg(long)]
    eft: PathBuf,
    #[command(flatten)]
    models: crate::models::RoleModelArgs,
    /// Most new tokens of an explain-format judgment.
    #[arg(long, default_value_t = 96)]
    max_new_tokens: usize,
    /// Compute backend: cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    backend: umi_model::Backend,
    /// Output folder: predictions.jsonl, report.json.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct EftArgs {
    /// Trajectories (α-UMi conversation JSON, or another --format).
    #[arg(long, default_value = crate::eval::DEFAULT_EVAL_DATA)]
    data: PathBuf,
    /// Data format: alpha-umi, toolbench, api-bank.
    #[arg(long, default_value = "alpha-umi")]
    format: DataFormat,
    /// Records used: train (all but every --dev-every-th), dev (a judge test set) or all.
    #[arg(long, default_value = "train")]
    split: Split,
    /// Split period (record i is dev when i % dev_every == 0).
    #[arg(long, default_value_t = 6)]
    dev_every: usize,
    /// Judge format: explain (explanation, then [[A]]/[[B]]) or verdict (verdict first).
    #[arg(long, default_value = "verdict")]
    judge_format: String,
    /// Most worse steps per decision point (each gives two rows).
    #[arg(long, default_value_t = 2)]
    max_negatives_per_point: usize,
    /// Seed of the choices.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The model's EOS text, ending each TRL completion (SmolLM2's by default).
    #[arg(long, default_value = "<|im_end|>")]
    eos_text: String,
    /// Output folder: eft.jsonl, eft_trl.jsonl, report.json.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(command: RewardCommand) -> Result<()> {
    match command {
        RewardCommand::Eft(args) => eft(args),
        RewardCommand::JudgeEval(args) => judge_eval(args),
        RewardCommand::Pairs(args) => pairs(args),
        RewardCommand::Export(args) => export(args),
    }
}

fn eft(args: EftArgs) -> Result<()> {
    let format = match args.judge_format.as_str() {
        "explain" => JudgeFormat::Explain,
        "verdict" => JudgeFormat::Verdict,
        other => bail!("--judge-format must be explain or verdict, not {other:?}"),
    };
    let (conversations, report) = read(args.format, &args.data)?;
    for s in &report.skipped {
        eprintln!("warning: skipped {s}");
    }
    // Fabricated tool names come from the families of the whole file, so a dev row's fake name
    // may be a train trajectory's family: it is still absent from that row's tool list.
    let families: Vec<String> = conversations
        .iter()
        .flat_map(|c| tool_families(&c.tools))
        .collect();
    let kept: Vec<(usize, &umi_data::conversation::Conversation)> = conversations
        .iter()
        .enumerate()
        .filter(|(i, _)| args.split.keeps(*i, args.dev_every))
        .collect();
    let config = EftConfig {
        format,
        max_negatives_per_point: args.max_negatives_per_point,
        seed: args.seed,
    };
    let rows = eft_rows(&kept, &families, &config);
    if rows.is_empty() {
        bail!(
            "{} gives no planner decision point with a Next: marker in the {:?} split",
            args.data.display(),
            args.split
        );
    }
    std::fs::create_dir_all(&args.out)?;
    let mut eft = String::new();
    let mut trl = String::new();
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &rows {
        eft.push_str(&serde_json::to_string(row)?);
        eft.push('\n');
        trl.push_str(&serde_json::to_string(
            &umi_data::batch::prompt_completion(&row.sample, &args.eos_text),
        )?);
        trl.push('\n');
        *by_kind.entry(row.meta.kind.as_str()).or_default() += 1;
    }
    write_atomically(&args.out.join("eft.jsonl"), &eft)?;
    write_atomically(&args.out.join("eft_trl.jsonl"), &trl)?;
    let report = serde_json::json!({
        "data": args.data,
        "split": format!("{:?}", args.split).to_lowercase(),
        "conversations": kept.len(),
        "rows": rows.len(),
        "pairs": rows.len() / 2,
        "rows_by_kind": by_kind,
        "judge_format": format,
        "max_negatives_per_point": args.max_negatives_per_point,
        "seed": args.seed,
    });
    write_atomically(
        &args.out.join("report.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    eprintln!(
        "{} EFT rows ({} pairs × 2 orders) from {} conversations: {}; wrote eft.jsonl, eft_trl.jsonl and report.json to {}",
        rows.len(),
        rows.len() / 2,
        kept.len(),
        by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        args.out.display()
    );
    Ok(())
}

fn judge_eval(args: JudgeEvalArgs) -> Result<()> {
    use umi_data::Role;
    use umi_data::judge::{Verdict, parse_verdict, verdict_from_logprobs};
    use umi_reward::EftRow;

    let text = std::fs::read_to_string(&args.eft)
        .with_context(|| format!("reading {}", args.eft.display()))?;
    let mut rows: Vec<EftRow> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        rows.push(serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: not an EFT row (umi reward eft writes them)",
                args.eft.display(),
                i + 1
            )
        })?);
    }
    if rows.is_empty() {
        bail!("{} has no EFT row", args.eft.display());
    }
    let device = args.backend.device()?;
    let config = umi_model::GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        ..Default::default()
    };
    let mut generator = args.models.clone().or_shipped_agent(true).generator(
        &mut crate::models::ModelCache::default(),
        &device,
        config,
    )?;
    let bar = indicatif::ProgressBar::new(rows.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} judging [{bar:30}] {pos}/{len}  {elapsed}, ETA {eta}  {msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    let mut predictions = String::new();
    let mut verdicts: Vec<Verdict> = Vec::with_capacity(rows.len());
    let mut correct = 0usize;
    for row in &rows {
        let (verdict, p_a, output) = match row.meta.judge_format {
            JudgeFormat::Verdict => {
                let (a, b) = pollster::block_on(generator.choice_logprobs(
                    Role::Planner,
                    &row.sample.input,
                    "[[A]]",
                    "[[B]]",
                ))?;
                let (v, p) = verdict_from_logprobs(a, b);
                (v, Some(p), None)
            }
            JudgeFormat::Explain => {
                let out = pollster::block_on(umi_agent::Generator::generate(
                    &mut generator,
                    Role::Planner,
                    &row.sample.input,
                    &[umi_data::parse::END_OF_TURN.to_string()],
                ))?;
                (parse_verdict(&out), None, Some(out))
            }
        };
        let gold = if row.meta.gold_position == "A" {
            Verdict::A
        } else {
            Verdict::B
        };
        correct += usize::from(verdict == gold);
        verdicts.push(verdict);
        predictions.push_str(&serde_json::to_string(&serde_json::json!({
            "id": row.meta.id,
            "kind": row.meta.kind,
            "gold_position": row.meta.gold_position,
            "verdict": verdict,
            "p_a": p_a,
            "output": output,
        }))?);
        predictions.push('\n');
        bar.inc(1);
        bar.set_message(format!(
            "accuracy {:.3}",
            correct as f64 / verdicts.len() as f64
        ));
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();

    // Per kind and per pair (the two renderings of one pair).
    let mut by_kind: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut pairs: BTreeMap<&str, Vec<(bool, Verdict, &str)>> = BTreeMap::new();
    for (row, &v) in rows.iter().zip(&verdicts) {
        let right = (v == Verdict::A && row.meta.gold_position == "A")
            || (v == Verdict::B && row.meta.gold_position == "B");
        let e = by_kind.entry(row.meta.kind.as_str()).or_default();
        e.0 += usize::from(right);
        e.1 += 1;
        pairs.entry(row.meta.pair_id.as_str()).or_default().push((
            right,
            v,
            row.meta.gold_position.as_str(),
        ));
    }
    let complete: Vec<&Vec<(bool, Verdict, &str)>> =
        pairs.values().filter(|p| p.len() == 2).collect();
    let both = complete.iter().filter(|p| p[0].0 && p[1].0).count();
    let valid_both: Vec<_> = complete
        .iter()
        .filter(|p| p.iter().all(|x| x.1 != Verdict::Invalid))
        .collect();
    // consistent: the same underlying step wins in both renderings (the letters differ)
    let consistent = valid_both.iter().filter(|p| p[0].1 != p[1].1).count();
    let invalid = verdicts.iter().filter(|&&v| v == Verdict::Invalid).count();
    let share = |n: usize, d: usize| {
        if d == 0 {
            None
        } else {
            Some(n as f64 / d as f64)
        }
    };
    let report = serde_json::json!({
        "eft": args.eft,
        "judge": args.models.clone().or_shipped_agent(true).describe()[0],
        "rows": rows.len(),
        "acc_single": share(correct, rows.len()),
        "acc_both": share(both, complete.len()),
        "position_consistency": share(consistent, valid_both.len()),
        "invalid_rate": share(invalid, rows.len()),
        "always_a_rate": share(verdicts.iter().filter(|&&v| v == Verdict::A).count(), rows.len()),
        "acc_by_kind": by_kind.iter().map(|(k, (r, n))| (k.to_string(), share(*r, *n))).collect::<BTreeMap<_, _>>(),
        "seconds": seconds,
    });
    std::fs::create_dir_all(&args.out)?;
    write_atomically(&args.out.join("predictions.jsonl"), &predictions)?;
    write_atomically(
        &args.out.join("report.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    eprintln!(
        "judge accuracy {:.3} per row, {:.3} per pair (both orders right), position consistency {}, invalid {:.3}; {:.0} s; wrote predictions.jsonl and report.json to {}",
        correct as f64 / rows.len() as f64,
        share(both, complete.len()).unwrap_or(0.0),
        share(consistent, valid_both.len()).map_or("n/a".into(), |c| format!("{c:.3}")),
        invalid as f64 / rows.len() as f64,
        seconds,
        args.out.display()
    );
    Ok(())
}

/// The valid JSON lines of `path` (none when it does not exist), and how many were torn.
fn json_lines<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<(Vec<T>, usize)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let (mut out, mut bad) = (Vec::new(), 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(_) => bad += 1,
        }
    }
    Ok((out, bad))
}

fn pairs(args: PairsArgs) -> Result<()> {
    use std::io::Write as _;
    use umi_reward::{MineConfig, MinedPair, Outcome, SearchRecord, gold_points, mine_point};

    if matches!(args.split, Split::Dev) && !args.allow_dev {
        bail!("--split dev mines the evaluation split; pass --allow-dev if that is meant");
    }
    let config = MineConfig {
        width: args.width,
        temperature: args.temperature,
        top_p: args.top_p,
        max_new_tokens: args.max_new_tokens,
        min_margin: args.min_margin,
        seed: args.seed,
    };
    if config.width < 2 {
        bail!("--width must be at least 2 (pairs need two candidates)");
    }
    let (conversations, report) = read(args.format, &args.data)?;
    for s in &report.skipped {
        eprintln!("warning: skipped {s}");
    }
    let mut points = Vec::new();
    let kept = conversations
        .iter()
        .enumerate()
        .filter(|(i, _)| args.split.keeps(*i, args.dev_every))
        .take(args.limit_trajectories.unwrap_or(usize::MAX));
    for (t, c) in kept {
        points.extend(gold_points(t, c));
    }
    if points.is_empty() {
        bail!("{} gives no planner decision point", args.data.display());
    }
    let models = args.models.clone().or_shipped_agent(true);
    let settings = serde_json::json!({
        "data": args.data,
        "split": format!("{:?}", args.split).to_lowercase(),
        "dev_every": args.dev_every,
        "limit_trajectories": args.limit_trajectories,
        "models": models.describe()[0],
        "raw_prompts": models.raw_prompts,
        "config": config,
        "max_input_tokens": args.max_input_tokens,
        "judge_format": "verdict",
        "prefix": "gold",
    });
    std::fs::create_dir_all(&args.out)?;
    let settings_path = args.out.join("settings.json");
    match std::fs::read_to_string(&settings_path) {
        Ok(old)
            if serde_json::from_str::<serde_json::Value>(&old).ok() != Some(settings.clone()) =>
        {
            bail!(
                "{} holds a mining run with other settings; use another --out",
                args.out.display()
            )
        }
        _ => write_atomically(&settings_path, &serde_json::to_string_pretty(&settings)?)?,
    }
    // Resume: keep the whole records, drop a torn last line and pairs whose record is missing.
    let search_path = args.out.join("search.jsonl");
    let pairs_path = args.out.join("pairs.jsonl");
    let (mut records, torn) = json_lines::<SearchRecord>(&search_path)?;
    let done: std::collections::HashSet<String> = records.iter().map(|r| r.id.clone()).collect();
    let (mut mined, _) = json_lines::<MinedPair>(&pairs_path)?;
    mined.retain(|p| done.contains(&p.pair.id));
    let lines = |v: &[String]| v.iter().map(|l| format!("{l}\n")).collect::<String>();
    write_atomically(
        &search_path,
        &lines(
            &records
                .iter()
                .map(serde_json::to_string)
                .collect::<Result<Vec<_>, _>>()?,
        ),
    )?;
    write_atomically(
        &pairs_path,
        &lines(
            &mined
                .iter()
                .map(serde_json::to_string)
                .collect::<Result<Vec<_>, _>>()?,
        ),
    )?;
    if !done.is_empty() {
        eprintln!(
            "resuming: {} of {} points done ({} pairs){}",
            done.len(),
            points.len(),
            mined.len(),
            if torn > 0 {
                "; a torn last line was dropped"
            } else {
                ""
            }
        );
    }

    let todo: Vec<_> = points.iter().filter(|p| !done.contains(&p.id)).collect();
    // The model loads only when a point is left to mine (a finished run just reports).
    let mut generator = None;
    if !todo.is_empty() {
        let device = args.backend.device()?;
        let mut g = models.generator(
            &mut crate::models::ModelCache::default(),
            &device,
            umi_model::GenerationConfig::default(),
        )?;
        g.max_input_tokens = Some(args.max_input_tokens);
        generator = Some(g);
    }
    let bar = indicatif::ProgressBar::new(points.len() as u64).with_position(done.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} mining [{bar:30}] {pos}/{len} points  {elapsed}, ETA {eta}  {msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    let plain = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let append = |path: &std::path::Path, line: String| -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{line}").with_context(|| format!("writing {}", path.display()))
    };
    for point in todo {
        let generator = generator.as_mut().expect("loaded when a point is left");
        let (record, pair) = pollster::block_on(mine_point(generator, point, &config))?;
        // the pair first: a record on disk means its pair is too
        if let Some(pair) = &pair {
            append(&pairs_path, serde_json::to_string(pair)?)?;
            mined.push(pair.clone());
        }
        append(&search_path, serde_json::to_string(&record)?)?;
        records.push(record);
        bar.inc(1);
        let msg = format!("{} pairs", mined.len());
        if plain {
            eprintln!("{}/{} points  {msg}", records.len(), points.len());
        }
        bar.set_message(msg);
    }
    bar.finish_and_clear();

    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for r in &records {
        let name = match r.outcome {
            Outcome::Pair { .. } => "pair",
            Outcome::Tie => "tie",
            Outcome::TooFewUnique => "too_few_unique",
            Outcome::JudgeInvalid => "judge_invalid",
            Outcome::NoValid => "no_valid",
        };
        *outcomes.entry(name.into()).or_default() += 1;
    }
    let consistency: Vec<f64> = records
        .iter()
        .filter_map(|r| r.position_consistency)
        .collect();
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let agree = |f: &dyn Fn(&MinedPair) -> bool| {
        mean(
            &mined
                .iter()
                .map(|p| f64::from(u8::from(f(p))))
                .collect::<Vec<_>>(),
        )
    };
    let report = serde_json::json!({
        "points": records.len(),
        "pairs": mined.len(),
        "yield": mined.len() as f64 / records.len().max(1) as f64,
        "outcomes": outcomes,
        "mean_position_consistency": mean(&consistency),
        "marker_rate": mean(&records.iter().flat_map(|r| r.had_marker.iter().map(|&m| f64::from(u8::from(m)))).collect::<Vec<_>>()),
        "mean_unique_candidates": mean(&records.iter().map(|r| (r.unique_index.iter().max().map_or(0, |m| m + 1)) as f64).collect::<Vec<_>>()),
        "gold_agreement": {
            "chosen_plan_is_gold": agree(&|p| p.gold.chosen_plan == p.gold.plan),
            "rejected_plan_is_gold": agree(&|p| p.gold.rejected_plan == p.gold.plan),
        },
        "mean_seconds_per_point": mean(&records.iter().map(|r| r.seconds).collect::<Vec<_>>()),
    });
    write_atomically(
        &args.out.join("report.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    eprintln!(
        "{} points, {} pairs; outcomes {}; wrote search.jsonl, pairs.jsonl and report.json to {} (train on them: umi train dpo --pairs {})",
        records.len(),
        mined.len(),
        outcomes
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        args.out.display(),
        pairs_path.display()
    );
    Ok(())
}

fn export(args: ExportArgs) -> Result<()> {
    let device = args.backend.device()?;
    let ready = crate::dpo::load_pairs(
        &crate::dpo::PairSource {
            pairs: &args.pairs,
            role: &args.role,
            model: &args.model,
            init_adapter: args.init_adapter.as_deref(),
            reference: &args.adapter,
            recompute: args.recompute_ref,
            max_len: args.max_len,
            max_step_tokens: args.max_step_tokens,
        },
        &device,
    )?;
    let mut out = String::new();
    for p in &ready.pairs {
        let row = umi_data::preference::PreferencePair {
            id: p.id.clone(),
            role: Some(args.role.clone()),
            prompt_ids: Some(p.prompt_ids.clone()),
            chosen_ids: Some(p.chosen_ids.clone()),
            rejected_ids: Some(p.rejected_ids.clone()),
            ref_chosen_logps: Some(p.ref_chosen_logps),
            ref_rejected_logps: Some(p.ref_rejected_logps),
            ..Default::default()
        };
        out.push_str(&serde_json::to_string(&row)?);
        out.push('\n');
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    write_atomically(&args.out, &out)?;
    eprintln!(
        "wrote {} pairs with token ids and reference log-probs (reference {}) to {}",
        ready.pairs.len(),
        args.adapter.display(),
        args.out.display()
    );
    Ok(())
}
