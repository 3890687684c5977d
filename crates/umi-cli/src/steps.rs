//! The optimizer-step loop shared by `umi train global|local` (SFT) and `umi train dpo`: the
//! checkpoint a run resumes, the loop with its progress bar and checkpoints, and the loss curve
//! as CSV and SVG.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use umi_data::Role;
use umi_train::{FineTuneRun, StepStats, TrainerState, latest_checkpoint};

use crate::fs::write_atomically;

/// `--role`: a role a local or DPO run specialises.
pub fn role_arg(role: &str) -> Result<Role> {
    match role.parse::<Role>() {
        Ok(Role::Backbone) | Err(_) => {
            bail!("--role must be planner, caller or summarizer, not {role:?}")
        }
        Ok(role) => Ok(role),
    }
}

/// The checkpoint a run in `out` continues: with `--resume` the newest one, which must come
/// from a run with the settings (SFT and DPO) and length of `fresh`, the state this run would
/// start from; without, none, and `out` must hold no checkpoint.
pub fn checkpoint_to_resume(
    out: &Path,
    resume: bool,
    fresh: &TrainerState,
) -> Result<Option<umi_train::Checkpoint>> {
    if !resume {
        if latest_checkpoint(out).is_some() {
            bail!(
                "{} already holds checkpoints; pass --resume to continue them or choose another --out",
                out.display()
            );
        }
        return Ok(None);
    }
    let Some(ck) = latest_checkpoint(out) else {
        return Ok(None);
    };
    if ck.state.config != fresh.config || ck.state.dpo != fresh.dpo {
        bail!(
            "{} was trained with other settings; resume with the same flags",
            ck.dir.display()
        );
    }
    if ck.state.total_steps != fresh.total_steps {
        bail!(
            "{} belongs to a run of {} steps, not {}; resume with the same --max-steps",
            ck.dir.display(),
            ck.state.total_steps,
            fresh.total_steps
        );
    }
    Ok(Some(ck))
}

/// Runs `run`'s optimizer steps until its last: a progress bar (or, without a terminal, a plain
/// line a minute) shows `message` of the last step with tokens/s, a checkpoint is saved every
/// `save_every` steps and at the end unless the newest one on disk (`saved`) is already of
/// that step, and the loss curve is rewritten with each checkpoint. Shared by SFT (`umi train
/// global|local`) and DPO (`umi train dpo`).
pub fn step_loop(
    run: &mut FineTuneRun,
    out: &Path,
    save_every: usize,
    mut saved: Option<usize>,
    message: impl Fn(&StepStats) -> String,
) -> Result<()> {
    let stop_at = run.state.total_steps;
    let bar = ProgressBar::new(stop_at as u64).with_position(run.state.step as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:30}] step {pos}/{len}  {elapsed} elapsed, ETA {eta}  {msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut tokens_since = 0usize;
    // Without a terminal (a run in the background, output to a log) the bar is hidden: print
    // the same line once a minute instead.
    let plain = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_line = Instant::now();
    while run.state.step < stop_at {
        let stats = pollster::block_on(run.step())?;
        tokens_since += stats.tokens;
        let step = run.state.step;
        bar.set_position(step as u64);
        let speed = tokens_since as f64 / started.elapsed().as_secs_f64();
        bar.set_message(format!("{}  {speed:.0} tok/s", message(&stats)));
        if plain && (last_line.elapsed().as_secs() >= 60 || step == stop_at) {
            last_line = Instant::now();
            eprintln!(
                "step {step}/{stop_at}  {}  {speed:.0} tok/s  {:.0} s elapsed",
                message(&stats),
                started.elapsed().as_secs_f64()
            );
        }
        if step.is_multiple_of(save_every.max(1)) {
            let ck = run.save_checkpoint(out)?;
            saved = Some(step);
            write_curve(out, &run.state.history)?;
            bar.println(format!("saved {}", ck.dir.display()));
        }
    }
    bar.finish();
    if saved != Some(run.state.step) {
        run.save_checkpoint(out)?;
    }
    Ok(())
}

/// The columns of every `loss.csv` row, in order ([`write_curve`], [`read_curve`]).
const STEP_COLUMNS: [&str; 6] = [
    "step",
    "loss",
    "grad_norm",
    "learning_rate",
    "target_tokens",
    "tokens",
];

/// The columns DPO steps add after [`STEP_COLUMNS`]: TRL's metrics.
const DPO_COLUMNS: [&str; 6] = [
    "rewards_chosen",
    "rewards_rejected",
    "rewards_margin",
    "rewards_accuracy",
    "logps_chosen",
    "logps_rejected",
];

/// `loss.csv` and `loss.svg` of `history` in `out`. DPO steps add TRL's metrics as columns
/// (`rewards_chosen, rewards_rejected, rewards_margin, rewards_accuracy, logps_chosen,
/// logps_rejected`) and the reward margin as a second line.
pub fn write_curve(out: &Path, history: &[StepStats]) -> Result<()> {
    let dpo = history.iter().any(|s| s.dpo.is_some());
    let mut csv = Vec::new();
    write!(csv, "{}", STEP_COLUMNS.join(","))?;
    if dpo {
        write!(csv, ",{}", DPO_COLUMNS.join(","))?;
    }
    writeln!(csv)?;
    for s in history {
        write!(
            csv,
            "{},{},{},{},{},{}",
            s.step, s.loss, s.grad_norm, s.learning_rate, s.target_tokens, s.tokens
        )?;
        if let Some(d) = &s.dpo {
            write!(
                csv,
                ",{},{},{},{},{},{}",
                d.rewards_chosen,
                d.rewards_rejected,
                d.rewards_margin,
                d.rewards_accuracy,
                d.logps_chosen,
                d.logps_rejected
            )?;
        }
        writeln!(csv)?;
    }
    write_atomically(&out.join("loss.csv"), std::str::from_utf8(&csv)?)?;
    plot_curve(&out.join("loss.svg"), history)
}

/// Reads a `loss.csv` as [`write_curve`] writes it (also `scripts/gpu/train_peft.py`'s, which
/// has the same columns): one [`StepStats`] per row, DPO metrics where the header has them.
///
/// # Errors
///
/// The file cannot be read, its header lacks one of `step, loss, grad_norm, learning_rate,
/// target_tokens, tokens`, or a row has a missing or non-numeric value (named with its line).
pub fn read_curve(csv: &Path) -> Result<Vec<StepStats>> {
    let text = std::fs::read_to_string(csv)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", csv.display()))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        bail!("{}: empty file (expected a loss.csv header)", csv.display());
    };
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let column = |name: &str| names.iter().position(|n| *n == name);
    let mut at = [0usize; 6];
    for (slot, name) in at.iter_mut().zip(STEP_COLUMNS) {
        *slot = column(name).ok_or_else(|| {
            anyhow::anyhow!("{}: header has no `{name}` column: {header}", csv.display())
        })?;
    }
    let dpo_at: Option<Vec<usize>> = DPO_COLUMNS.iter().map(|n| column(n)).collect();
    let mut history = Vec::new();
    for (i, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let number = |c: usize| -> Result<f64> {
            let cell = cells.get(c).copied().unwrap_or("");
            cell.parse::<f64>().map_err(|_| {
                anyhow::anyhow!(
                    "{} line {}: column `{}` is {cell:?}, not a number",
                    csv.display(),
                    i + 1,
                    names[c]
                )
            })
        };
        let count = |c: usize| -> Result<usize> {
            let x = number(c)?;
            if x < 0.0 || x.fract() != 0.0 {
                bail!(
                    "{} line {}: column `{}` is {x}, not a count",
                    csv.display(),
                    i + 1,
                    names[c]
                );
            }
            Ok(x as usize)
        };
        let dpo = match &dpo_at {
            Some(c) => Some(umi_train::DpoStats {
                rewards_chosen: number(c[0])?,
                rewards_rejected: number(c[1])?,
                rewards_margin: number(c[2])?,
                rewards_accuracy: number(c[3])?,
                logps_chosen: number(c[4])?,
                logps_rejected: number(c[5])?,
            }),
            None => None,
        };
        history.push(StepStats {
            step: count(at[0])?,
            loss: number(at[1])?,
            grad_norm: number(at[2])?,
            learning_rate: number(at[3])?,
            target_tokens: count(at[4])?,
            tokens: count(at[5])?,
            dpo,
        });
    }
    Ok(history)
}

/// The loss curve of `history` as an SVG at `path` (800 × 480; DPO runs add the reward
/// margin). Nothing is written for an empty history.
///
/// # Errors
///
/// The file cannot be written.
pub fn plot_curve(path: &Path, history: &[StepStats]) -> Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    let dpo = history.iter().any(|s| s.dpo.is_some());
    use plotters::prelude::*;
    let margins: Vec<(usize, f64)> = history
        .iter()
        .filter_map(|s| s.dpo.map(|d| (s.step, d.rewards_margin)))
        .collect();
    let top = history
        .iter()
        .map(|s| s.loss)
        .chain(margins.iter().map(|m| m.1))
        .fold(0.0, f64::max)
        * 1.05;
    let bottom = margins.iter().map(|m| m.1).fold(0.0, f64::min) * 1.05;
    let last = history.last().map_or(1, |s| s.step);
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                if dpo {
                    "DPO loss and reward margin"
                } else {
                    "training loss"
                },
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0..last.max(1), bottom..top.max(1e-6))?;
        chart
            .configure_mesh()
            .x_desc("optimizer step")
            .y_desc(if dpo { "nats" } else { "loss (target tokens)" })
            .draw()?;
        let loss = chart.draw_series(LineSeries::new(
            history.iter().map(|s| (s.step, s.loss)),
            &BLUE,
        ))?;
        if dpo {
            loss.label("loss")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
            chart
                .draw_series(LineSeries::new(margins.iter().copied(), &RED))?
                .label("reward margin β(Δ⁺ − Δ⁻)")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE)
                .draw()?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("umi-steps-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// What `write_curve` writes, `read_curve` reads back (SFT and DPO columns), and
    /// `plot_curve` draws an SVG from it.
    #[test]
    fn a_written_curve_reads_back_and_plots() {
        let dir = temp_dir("roundtrip");
        let step = |i: usize, dpo: bool| StepStats {
            step: i,
            loss: 2.5 / i as f64,
            grad_norm: 0.75 + i as f64,
            learning_rate: 1e-4 * i as f64,
            target_tokens: 10 * i,
            tokens: 100 * i,
            dpo: dpo.then_some(umi_train::DpoStats {
                rewards_chosen: 0.25,
                rewards_rejected: -0.5 * i as f64,
                rewards_margin: 0.25 + 0.5 * i as f64,
                rewards_accuracy: 1.0,
                logps_chosen: -12.5,
                logps_rejected: -20.0,
            }),
        };
        for dpo in [false, true] {
            let history: Vec<StepStats> = (1..=3).map(|i| step(i, dpo)).collect();
            write_curve(&dir, &history).unwrap();
            let back = read_curve(&dir.join("loss.csv")).unwrap();
            assert_eq!(back.len(), 3);
            for (a, b) in history.iter().zip(&back) {
                assert_eq!(
                    (a.step, a.target_tokens, a.tokens),
                    (b.step, b.target_tokens, b.tokens)
                );
                assert_eq!(
                    (a.loss, a.grad_norm, a.learning_rate),
                    (b.loss, b.grad_norm, b.learning_rate)
                );
                assert_eq!(
                    a.dpo.map(|d| d.rewards_margin),
                    b.dpo.map(|d| d.rewards_margin)
                );
            }
            let svg = dir.join("again.svg");
            plot_curve(&svg, &back).unwrap();
            assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A header without a required column, and a cell that is not a number, are errors that
    /// name the column (and the line).
    #[test]
    fn a_bad_curve_names_what_is_wrong() {
        let dir = temp_dir("bad");
        let csv = dir.join("loss.csv");
        std::fs::write(&csv, "step,loss\n1,2\n").unwrap();
        let e = read_curve(&csv).unwrap_err().to_string();
        assert!(e.contains("no `grad_norm` column"), "{e}");
        std::fs::write(
            &csv,
            "step,loss,grad_norm,learning_rate,target_tokens,tokens\n1,2,1,0.1,5,9\n2,nan?,1,0.1,5,9\n",
        )
        .unwrap();
        let e = read_curve(&csv).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("`loss`"), "{e}");
        std::fs::write(
            &csv,
            "step,loss,grad_norm,learning_rate,target_tokens,tokens\n1.5,2,1,0.1,5,9\n",
        )
        .unwrap();
        let e = read_curve(&csv).unwrap_err().to_string();
        assert!(e.contains("not a count"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
