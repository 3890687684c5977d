//! One agent run in the worker: tool docs from a tool server (or pasted), `umi_agent::Agent`
//! over `LlamaGenerator` and `HttpTools` (`fetch`), streamed text and events posted to the page.
//! This is the browser twin of `umi run` (`umi-cli`'s `run_agent`); both call
//! [`umi_agent::run_query`].

use std::cell::Cell;
use std::rc::Rc;

use futures::future::{AbortRegistration, Abortable};
use umi_agent::{AgentEvent, LlamaGenerator, Query, run_query};
use umi_data::{Role, RoleMap};
use umi_model::{AdapterSet, GenerationConfig, LoadedModel};
use umi_tools::{ToolSpec, load_tool_specs, tools_url};

use crate::protocol::{FromWorker, RunSettings, Speed};
use crate::worker::PREFILL_CHUNK;
use crate::worker::scope::now_ms;

/// The tool specs: pasted JSON when there is some, else the tool server's `/tools`.
///
/// # Errors
///
/// A message naming the source when it cannot be read, is malformed or lists no tools.
pub async fn load_tools(settings: &RunSettings) -> Result<Vec<ToolSpec>, String> {
    let (text, origin) = if settings.tools_json.trim().is_empty() {
        let url = tools_url(&settings.tools_url);
        let fail = |e: String| {
            format!("reading tool docs from {url} failed: {e} (is `umi tools serve` running?)")
        };
        let response = gloo_net::http::Request::get(&url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.ok() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        (response.text().await.map_err(|e| fail(e.to_string()))?, url)
    } else {
        (settings.tools_json.clone(), "pasted tool docs".to_string())
    };
    let specs = load_tool_specs(&text, &origin).map_err(|e| e.to_string())?;
    if specs.is_empty() {
        return Err(format!("{origin} lists no tools"));
    }
    Ok(specs)
}

/// Runs the agent on `settings.query` with `planner`, `caller` and `summarizer` (the same model
/// when shared) and each role's fine-tuned `adapters` (planner, caller, summarizer; empty when
/// none), posting text, events and status through `post`; `abort` stops it (at once: the run
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
    let config = GenerationConfig {
        max_new_tokens: settings.max_new_tokens,
        prefill_chunk: PREFILL_CHUNK,
        ..Default::default()
    };
    let mut generator = LlamaGenerator::for_roles(models, adapters, config);
    generator.use_chat_template = !settings.raw_prompts;
    // the last token's role and time: intervals within one generation give the decode speed
    let last: Rc<Cell<Option<(Role, f64)>>> = Rc::new(Cell::new(None));
    let speed = Rc::new(Cell::new(Speed::default()));
    let (last_text, speed_text, post_text) = (last.clone(), speed.clone(), post.clone());
    generator.on_text = Some(Box::new(move |role, delta| {
        let now = now_ms();
        let mut s = speed_text.get();
        match last_text.get() {
            Some((r, t)) if r == role => {
                s.seconds += (now - t) / 1000.0;
                s.intervals += 1;
            }
            _ => post_text(FromWorker::Status(format!(
                "running: {} generating",
                role.as_str()
            ))),
        }
        s.tokens += 1;
        speed_text.set(s);
        last_text.set(Some((role, now)));
        post_text(FromWorker::Text {
            role,
            delta: delta.to_string(),
            speed: s,
        });
    }));
    let post_prefill = post.clone();
    generator.on_prefill = Some(Box::new(move |role, done, total| {
        post_prefill(FromWorker::Status(format!(
            "running: {} prefill {done}/{total} tokens ({}%)",
            role.as_str(),
            (done * 100).checked_div(total).unwrap_or(100)
        )));
    }));
    let mut query = Query::new(settings.query.clone());
    query.config.mode = settings.mode;
    query.config.max_steps = settings.max_steps;
    status("running: planner prefill");
    let run = run_query(generator, specs, &query, |event| {
        last.set(None);
        match event {
            AgentEvent::Action {
                action: Some(action),
                ..
            } => status(&format!("running: calling {}", action.name)),
            AgentEvent::Observation { .. } => status("running: reading the observation (prefill)"),
            _ => {}
        }
        post(FromWorker::Event(event.clone()));
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
