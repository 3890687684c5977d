//! Real-time evaluation on live tools: the α-UMi paper's real-time setting (§4.3), scored by a
//! ToolEval-style pass rate that rules decide instead of a ChatGPT judge.
//!
//! Each task's query runs through the whole agent loop ([`umi_agent::Agent::run`]) against real
//! HTTP tools, and the task passes when the run ends the right way: with an answer holding every
//! expected fact, or, for a task no tool can do, by giving up ([`score()`]).
//!
//! Tasks are JSON lines as `umi data synth` writes them ([`LiveTask`], [`read_tasks`]). By
//! default every task gets a fresh in-process demo tool server whose state file is new and
//! deleted afterwards ([`ToolSource::Fresh`]), so the stateful tools (to-dos, calendar, alarms)
//! start empty and runs are reproducible. [`ToolSource::External`] runs against tools served
//! elsewhere instead; the tasks then share that server's state. The runner and its reports
//! are native only; tasks and scoring build everywhere.

mod error;
#[cfg(not(target_family = "wasm"))]
mod report;
#[cfg(not(target_family = "wasm"))]
mod run;
mod score;
mod task;

pub use error::{Error, Result};
#[cfg(not(target_family = "wasm"))]
pub use report::{LiveReport, LiveStats};
#[cfg(not(target_family = "wasm"))]
pub use run::{
    LiveConfig, LiveEvent, LiveRecord, ToolSource, read_results, run_task, run_tasks,
    run_tasks_batched,
};
pub use score::{Outcome, answer_contains, is_tool_error, score};
pub use task::{LiveTask, TaskKind, read_tasks};
