//! Tools for the α-UMi agent: [`ToolSpec`]s read from tool docs, the [`ToolExecutor`] trait the
//! agent calls, [`HttpTools`] (native HTTP with `ureq`, the browser's `fetch` on wasm32), and a
//! demo tool server and the synthetic trajectories played against it ([`synth`]; feature
//! `server`, native).
//!
//! Tool failures are observations, never errors: the planner sees them (ToolBench's
//! convention of `{"error": …, "response": …}` bodies).
#![warn(missing_docs)]

mod executor;
mod http;
#[cfg(all(feature = "server", not(target_family = "wasm")))]
pub mod server;
mod spec;
#[cfg(all(feature = "server", not(target_family = "wasm")))]
pub mod synth;

pub use executor::{ToolExecutor, hallucination_observation, truncate_observation};
pub use http::HttpTools;
pub use http::MAX_URL_BYTES;
pub use spec::{
    HttpBinding, HttpMethod, ToolDocsSource, ToolError, ToolSpec, load_tool_specs,
    load_tool_specs_from, tools_url,
};
