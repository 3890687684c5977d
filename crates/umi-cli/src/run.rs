//! `umi run`: the α-UMi agent on a query against HTTP tools, the trajectory printed as it
//! happens.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use umi_agent::AgentEvent;
use umi_model::{Backend, GenerationConfig};

use crate::models::{ModelCache, RoleModelArgs};

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// The user's query.
    #[arg(long)]
    query: String,
    #[command(flatten)]
    models: RoleModelArgs,
    /// Tool docs: a tool server URL (its /tools is read) or a JSON file.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    tools: String,
    /// multi (planner, caller, summarizer) or single (one backbone model).
    #[arg(long, default_value = "multi")]
    mode: umi_agent::AgentMode,
    /// Planner decisions before giving up.
    #[arg(long, default_value_t = 10)]
    max_steps: usize,
    /// Upper bound on tokens per generation (the α-UMi reference's 512).
    #[arg(long, default_value_t = 512)]
    max_new_tokens: usize,
    /// Write the trajectory here in α-UMi conversation format (usable as training data).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Hosts (`host` or `host:port`) tools may call; default: the hosts named in the tool docs.
    #[arg(long = "allow-host")]
    allow_hosts: Vec<String>,
    /// Observations are truncated to this many characters (ToolBench's default).
    #[arg(long, default_value_t = 1024)]
    max_observation_chars: usize,
    /// Seconds a tool call (and reading tool docs from a URL) may take, at least 1.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    tool_timeout: u64,
    /// Compute backend: cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    backend: Backend,
}

/// The tools of `--tools` (a tool server URL or a JSON file), read within `timeout_secs`.
pub(crate) fn load_tools(source: &str, timeout_secs: u64) -> Result<Vec<umi_tools::ToolSpec>> {
    Ok(pollster::block_on(umi_tools::load_tool_specs_from(
        &umi_tools::ToolDocsSource::from_arg(source),
        std::time::Duration::from_secs(timeout_secs),
    ))?)
}

pub(crate) fn run_agent(args: RunArgs) -> Result<()> {
    use std::io::IsTerminal;
    use umi_agent::AgentMode;

    let mode = args.mode;
    let specs = load_tools(&args.tools, args.tool_timeout)?;
    let device = args.backend.device()?;
    let config = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        ..Default::default()
    };
    let mut models = args.models.clone();
    models.quant.get_or_insert(crate::models::Quant::Auto);
    let generator = models
        .or_shipped_agent(mode == AgentMode::Multi)
        .generator(&mut ModelCache::default(), &device, config)?;
    // While a role writes, a live line on stderr (terminals only) says who, how far and how
    // fast; each finished step is printed above it.
    let live = indicatif::ProgressBar::new_spinner();
    live.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("static template"),
    );
    let mut writing = LiveStep::default();

    let color = std::io::stdout().is_terminal();
    let paint = move |code: &str, text: &str| {
        if color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    };
    let query = umi_agent::Query {
        text: args.query.clone(),
        config: umi_agent::AgentConfig {
            mode,
            max_steps: args.max_steps,
            max_observation_chars: args.max_observation_chars,
            ..Default::default()
        },
        tool_timeout: std::time::Duration::from_secs(args.tool_timeout),
        allow_hosts: args.allow_hosts.clone(),
    };
    println!("{} {}", paint("1", "user:"), args.query);
    let result =
        pollster::block_on(umi_agent::run_query(
            generator,
            specs,
            &query,
            |event| match event {
                AgentEvent::Text { role, delta } => live.set_message(writing.push(*role, delta)),
                AgentEvent::Prefill { role, done, total } => live.set_message(format!(
                    "{} reading its prompt: {done}/{total} tokens",
                    role.as_str()
                )),
                _ => {
                    writing = LiveStep::default();
                    live.suspend(|| print_event(event, &paint))
                }
            },
        ));
    live.finish_and_clear();
    let record = result?;
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&record)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("trajectory written to {}", path.display());
    }
    Ok(())
}

/// Prints one agent event as a line of the transcript (`paint(ansi_code, text)` colours it).
fn print_event(event: &AgentEvent, paint: &dyn Fn(&str, &str) -> String) {
    match event {
        AgentEvent::Rationale { step, text, next } => {
            println!(
                "{} {text} [{}]",
                paint("32", &format!("planner #{step}:")),
                next.marker()
            )
        }
        AgentEvent::Action {
            action: Some(a), ..
        } => {
            println!(
                "{} Action: {} | Action Input: {}",
                paint("34", "caller:"),
                a.name,
                a.input
            )
        }
        AgentEvent::Action { action: None, .. } => {
            println!("{} (no action could be parsed)", paint("34", "caller:"))
        }
        AgentEvent::Observation { text, .. } => println!("{} {text}", paint("2", "observation:")),
        AgentEvent::Answer(text) => println!("{} {text}", paint("33", "summarizer:")),
        AgentEvent::Done(reason) => println!("{} {reason:?}", paint("1", "stop:")),
        // streamed on the live line, not printed
        AgentEvent::Prefill { .. } | AgentEvent::Text { .. } => {}
    }
}

/// What the live line of `umi run` shows while a role writes.
#[derive(Default)]
pub(crate) struct LiveStep {
    role: Option<umi_data::Role>,
    pieces: usize,
    started: Option<Instant>,
    text: String,
}

impl LiveStep {
    /// Adds a piece of `role`'s output (one token's text) and returns the line to show.
    fn push(&mut self, role: umi_data::Role, delta: &str) -> String {
        if self.role != Some(role) {
            *self = Self {
                role: Some(role),
                started: Some(Instant::now()),
                ..Self::default()
            };
        }
        self.pieces += 1;
        self.text.push_str(delta);
        let seconds = self.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let flat = self.text.replace('\n', " ");
        let tail: String = flat
            .chars()
            .skip(flat.chars().count().saturating_sub(60))
            .collect();
        format!(
            "{role:?} writing: {} tokens, {:.1} tok/s  …{tail}",
            self.pieces,
            self.pieces as f64 / seconds.max(1e-3)
        )
    }
}
