//! Tools for the α-UMi agent: [`ToolSpec`]s read from tool docs, the [`ToolExecutor`] trait the
//! agent calls, [`HttpTools`] (native HTTP; the browser's `fetch` comes with the web app), and
//! a demo tool server (feature `server`).
//!
//! Tool failures are observations, never errors: the planner sees them (ToolBench's
//! convention of `{"error": …, "response": …}` bodies).
#![warn(missing_docs)]

mod executor;
#[cfg(not(target_family = "wasm"))]
mod http;
#[cfg(all(feature = "server", not(target_family = "wasm")))]
pub mod server;
mod spec;

pub use executor::{ToolExecutor, hallucination_observation, truncate_observation};
#[cfg(not(target_family = "wasm"))]
pub use http::HttpTools;
pub use spec::{HttpBinding, HttpMethod, ToolError, ToolSpec, load_tool_specs};
