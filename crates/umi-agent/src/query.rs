//! One question put to the agent over HTTP tools, start to finish: the workflow `umi run` and
//! the web app's worker both call, so that they differ only in where tool docs and models come
//! from and in how they render the [`AgentEvent`]s.

use std::time::Duration;

use umi_tools::{HttpTools, ToolSpec};

use crate::agent::{Agent, AgentConfig, AgentError, AgentEvent, RunRecord};
use crate::generator::Generator;

/// A query and how to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The user's question.
    pub text: String,
    /// Mode, steps, observation length.
    pub config: AgentConfig,
    /// How long one tool call may take.
    pub tool_timeout: Duration,
    /// Hosts tool calls may reach besides those the tool docs name (empty: only those).
    pub allow_hosts: Vec<String>,
}

impl Query {
    /// `text` with the agent's default settings and a 20 s tool timeout (`umi run`'s defaults).
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            config: AgentConfig::default(),
            tool_timeout: Duration::from_secs(20),
            allow_hosts: Vec::new(),
        }
    }
}

/// Answers `query` with `generator`, calling the tools of `specs` over HTTP
/// ([`HttpTools`]), reporting each [`AgentEvent`] to `on_event` as the run unfolds. Returns the
/// run's [`RunRecord`] (what `umi run --json` writes and the web app exports).
///
/// # Errors
///
/// [`AgentError::ToolDocs`] when `specs` is empty or the docs do not fit a prompt,
/// [`AgentError::Tools`] when an allowed host is malformed, and what [`Agent::run`] reports.
pub async fn run_query<G: Generator>(
    generator: G,
    specs: Vec<ToolSpec>,
    query: &Query,
    on_event: impl FnMut(&AgentEvent),
) -> Result<RunRecord, AgentError> {
    if specs.is_empty() {
        return Err(AgentError::ToolDocs("no tools to call".into()));
    }
    let docs = specs.iter().map(ToolSpec::doc).collect();
    let mut tools = HttpTools::new(specs, query.tool_timeout);
    if !query.allow_hosts.is_empty() {
        tools = tools
            .with_allowed_hosts(query.allow_hosts.clone())
            .map_err(|e| AgentError::Tools(e.to_string()))?;
    }
    let mut agent = Agent::new(generator, tools, docs);
    agent.config = query.config.clone();
    let (trajectory, stop) = agent.run(&query.text, on_event).await?;
    Ok(RunRecord::new(&trajectory, &agent.tool_docs, stop))
}
