//! The shared vocabulary of umi's agent, data pipeline, training and evaluation, and the one
//! prompt library they all format prompts with.
//!
//! - [`conversation`]: α-UMi's conversation format (`{tools, instruction, conversations}`) and
//!   the roles, markers (with their priority, `Next::detect`) and actions a trajectory is made
//!   of, and [`RoleMap`], one value per role model;
//! - [`prompt`]: the exact `GLPFT/utils/prompt_lib.py` templates (typos kept), the tool-doc,
//!   tool-name and history serialisation, and the role cues;
//! - [`parse`]: the α-UMi text protocol read back: its markers (`</s>`, `Action:`,
//!   `Action Input:`; the `Next:` markers and their priority are [`Next`]'s) and planner and
//!   caller outputs parsed as the reference pipelines do;
//! - [`samples`]: conversations split into the four roles' training samples;
//! - [`mod@tool_doc`]: the α-UMi tool doc and the conversions into it (ToolBench function
//!   schemas, as `umi-tools` reads them too);
//! - [`readers`]: where data enters: dataset files read into conversations, bad records
//!   skipped and counted;
//! - [`judge`]: the pairwise judge prompts of process-based self-rewarding and verdict parsing;
//! - [`preference`]: step preference pairs (umi's mined records or TRL's text rows) for DPO;
//! - [`batch`]: samples as masked, truncated, length-bucketed training batches (and TRL records).
//!
//! Facts follow X-PLUG/Multi-LLM-Agent at commit f9eeef7 (`GLPFT/utils/prompt_lib.py`,
//! `GLPFT/process_data/toolbench/prepro_*.py`, `GLPFT/inference_utils/toolbench/*`).
#![warn(missing_docs)]

pub mod batch;
pub mod conversation;
pub mod judge;
pub mod parse;
pub mod preference;
pub mod prompt;
mod python;
pub mod readers;
pub mod samples;
pub mod task;
pub mod tool_doc;

pub use conversation::{
    Action, Conversation, FinalAnswer, Next, Observation, Rationale, Role, RoleMap, Speaker, Step,
    Trajectory, Turn,
};
pub use parse::{NoMarkerDefault, PlannerOutput, parse_action, parse_planner_output};
pub use prompt::{PromptSet, history, tool_doc, tool_names};
pub use python::json::python_json_dumps;
pub use samples::{RoleSample, role_samples};
pub use tool_doc::{ToolDoc, tool_name};
