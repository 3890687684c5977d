//! One agent run in the worker: tool docs from a tool server (or pasted), `umi_agent::Agent`
//! over `LlamaGenerator` and `HttpTools` (`fetch`), its [`AgentEvent`]s (prefill progress,
//! streamed text, steps) posted to the page as they come.
//! This is the browser twin of `umi run` (`umi-cli`'s `run_agent`); both call
//! [`umi_agent::run_query`].

use std::rc::Rc;

use futures::future::{AbortRegistration, Abortable};
use umi_agent::{LlamaGenerator, Query, run_query};
use umi_data::RoleMap;
use umi_model::{AdapterSet, GenerationConfig, LoadedModel};
use umi_tools::{ToolDocsSource, ToolSpec, load_tool_specs_from};

use crate::protocol::{FromWorker, RunSettings};
use crate::worker::PREFILL_CHUNK;

/// The tool specs: pasted JSON when there is some, else the tool server's `/tools`
/// ([`load_tool_specs_from`], as `umi run` reads them).
///
/// # Errors
///
/// A message naming the source when it cannot be read, is malformed or lists no tools.
pub async fn load_tools(settings: &RunSettings) -> Result<Vec<ToolSpec>, String> {
    let source = if settings.tools_json.trim().is_empty() {
        ToolDocsSource::Url(settings.tools_url.clone())
    } else {
        ToolDocsSource::Text {
            json: settings.tools_json.clone(),
            origin: "pasted tool docs".into(),
        }
    };
    load_tool_specs_from(&source, TOOL_DOCS_TIMEOUT)
        .await
        .map_err(|e| e.to_string())
}

/// How long reading tool docs may take (`umi run`'s default tool timeout; the browser's `fetch`
/// applies its own).
const TOOL_DOCS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The generator of a run made with `settings` (its prompt format), at most `max_new_tokens`
/// per step: the roles' `models` with their `adapters`, prefilled in the worker's chunks.
/// The agent run and the judging of its steps ([`crate::worker::judge`]) use the same one.
pub fn run_generator(
    settings: &RunSettings,
    max_new_tokens: usize,
    models: RoleMap<Rc<LoadedModel>>,
    adapters: RoleMap<AdapterSet>,
) -> LlamaGenerator {
    let config = GenerationConfig {
        max_new_tokens,
        prefill_chunk: PREFILL_CHUNK,
        ..Default::default()
    };
    let mut generator = LlamaGenerator::for_roles(models, adapters, config);
    generator.use_chat_template = !settings.raw_prompts;
    // one query at a time: a role's next prompt extends its last, so two prompts per role
    // serve it, and the keys and values stay in the page's GPU memory
    generator.set_prefix_cache_limits(2, PREFIX_CACHE_BYTES);
    generator
}

/// Bytes of keys and values each role's prefix cache keeps in the page (GPU memory).
const PREFIX_CACHE_BYTES: usize = 256 << 20;

/// Runs the agent on `settings.query` with `planner`, `caller` and `summarizer` (the same model
/// when shared) and each role's fine-tuned `adapters` (planner, caller, summarizer; empty when
/// none), posting its events and status through `post`; `abort` stops it (at once: the run
/// is always awaiting a GPU read or a tool).
///
/// Returns the message that ends the run: [`FromWorker::Finished`], [`FromWorker::Stopped`] or
/// [`FromWorker::Failed`].
pub async fn run_agent(
    settings: RunSettings,
    models: RoleMap<Rc<LoadedModel>>,
    adapters: RoleMap<AdapterSet>,
    post: Rc<dyn Fn(FromWorker)>,
    abort: AbortRegistration,
) -> FromWorker {
    let status = |s: &str| post(FromWorker::Status(s.to_string()));
    status("running: loading tools");
    let specs = match load_tools(&settings).await {
        Ok(specs) => specs,
        Err(e) => return FromWorker::Failed(e),
    };
    let generator = run_generator(&settings, settings.max_new_tokens, models, adapters);
    let mut query = Query::new(settings.query.clone());
    query.config.mode = settings.mode;
    query.config.max_steps = settings.max_steps;
    status("running: planner prefill");
    // every event of the run goes to the page as it is: the page renders the steps, the
    // streamed text, the prefill progress and the status line from them (`LiveRun`)
    let run = run_query(generator, specs, &query, |event| {
        post(FromWorker::Event(event.clone()))
    });
    let Ok(result) = Abortable::new(run, abort).await else {
        return FromWorker::Stopped;
    };
    let record = match result {
        Ok(record) => record,
        Err(e) => return FromWorker::Failed(e.to_string()),
    };
    let stop = record.stop_reason;
    match serde_json::to_string_pretty(&record) {
        Ok(record) => FromWorker::Finished {
            stop: format!("{stop:?}"),
            record,
        },
        Err(e) => FromWorker::Failed(e.to_string()),
    }
}
