//! The α-UMi agent (Shen et al. 2024, §3): a planner writes a rationale and decides
//! `Next: caller.` / `Next: conclusion.` / `Next: give up.`; the caller turns the rationale into
//! `Action:` / `Action Input:`, which a tool executes; the summarizer writes the final answer.
//! The single-LLM (backbone) mode runs one model with the backbone prompt instead.
//!
//! The loop is async and generic over where text comes from ([`Generator`]) and how tools run
//! ([`ToolExecutor`]), so the same code drives native runs, the browser (awaiting GPU reads and
//! `fetch`) and scripted tests. Prompts come from `umi-data`, the library training uses too.
//!
//! - [`Agent::run`]: the loop, reporting [`AgentEvent`]s (serialisable: the web worker posts
//!   them to the page as they are) and returning the trajectory; [`RunRecord`] is the one JSON
//!   record of a finished run;
//! - [`decide()`]: one decision from a history, in [`AgentMode::Multi`] (planner, then caller or
//!   summarizer) or [`AgentMode::Single`], the same code live runs and `umi eval` go through;
//!   its [`Decision`] is the planner's output and what [`Decided`] after it;
//! - [`run_query`]: one question over HTTP tools start to finish, the workflow `umi run` and the
//!   web app's worker share;
//! - [`LiveRun`]: the status line and decode speed of a run under way, read off its events
//!   (prefill progress, streamed text, steps), as the web page shows them;
//! - [`LlamaGenerator::for_roles`]: role models and adapters (a [`umi_data::RoleMap`]) as the
//!   generator, the selection `umi run`, `umi eval` and the web app share.
#![warn(missing_docs)]

mod agent;
mod batched;
pub mod decide;
mod generator;
mod model;
mod progress;
mod query;

pub use agent::{Agent, AgentConfig, AgentError, AgentEvent, RunRecord, StopReason};
pub use batched::{BatchHandle, Batcher};
pub use decide::{AgentMode, Decided, Decision, decide, decide_multi, decide_single};
pub use generator::{Generator, GeneratorError, PromptLength, ScriptedGenerator};
pub use model::{LlamaGenerator, MERGE_AUTO_MAX_BYTES, Usage};
pub use progress::{LiveRun, Speed};
pub use query::{Query, run_query};
pub use umi_tools::{ToolExecutor, hallucination_observation, truncate_observation};
