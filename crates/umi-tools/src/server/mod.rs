//! A demo tool server with real behaviour and state, for the agent's demos and tests:
//! arithmetic, unit and currency conversion (bundled rates), date arithmetic, a to-do list, a
//! calendar and alarms persisted to a JSON file, and a small country knowledge base.
//!
//! Routes (CORS for the web app's origin only, see [`ServeOptions`]):
//! - `GET /tools`: the tool docs in ToolBench format, each with its `http` endpoint;
//! - `GET /openapi.json`: the same tools as an OpenAPI 3 document;
//! - `GET /tools/{name}?arg=…` (read-only tools) or `POST /tools/{name}` with a JSON object
//!   (any tool; the only way to the ones that change state): runs the tool and answers
//!   `{"error": "", "response": …}` (status 400 with `error` set for bad arguments, 404 for
//!   unknown tools, 405 for a state-changing tool on GET or another method, 403 for a page
//!   from an origin not allowed).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tiny_http::{Header, Method, Response, Server};
use umi_data::Observation;

mod catalog;
mod dates;
mod tools;
use catalog::*;
pub use catalog::{openapi, tool_docs};
use dates::*;

/// Persistent state of the stateful tools.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct State {
    todos: Vec<Value>,
    events: Vec<Value>,
    alarms: Vec<Value>,
    next_id: u64,
}

impl State {
    /// Puts `item` into `list`, replacing the item with its `id` if there is one.
    fn upsert(&mut self, list: &str, item: Value) -> Result<(), String> {
        let items = match list {
            "todos" => &mut self.todos,
            "events" => &mut self.events,
            "alarms" => &mut self.alarms,
            other => return Err(format!("unknown list {other:?}")),
        };
        match items.iter_mut().find(|i| i["id"] == item["id"]) {
            Some(old) => *old = item,
            None => items.push(item),
        }
        Ok(())
    }

    /// The list holding the item with this `id` (a new item is the last of its list: found
    /// without a scan).
    fn list_of(&self, id: &Value) -> Option<&'static str> {
        let lists = [
            ("todos", &self.todos),
            ("events", &self.events),
            ("alarms", &self.alarms),
        ];
        lists
            .iter()
            .find(|(_, items)| items.last().is_some_and(|i| i["id"] == *id))
            .or_else(|| {
                lists
                    .iter()
                    .find(|(_, items)| items.iter().any(|i| i["id"] == *id))
            })
            .map(|(name, _)| *name)
    }
}

/// Writes since the last snapshot after which the journal is folded into a new snapshot.
const COMPACT_EVERY: usize = 1000;

/// The state and where it lives: a snapshot (`state_path`, replaced atomically) and a journal
/// beside it (`<state_path>.journal`, one JSON line per changed item, appended before a write
/// is acknowledged), folded into the snapshot at start-up and every [`COMPACT_EVERY`] writes.
/// A write costs one appended line, not a rewrite of the whole state; a kill at any moment
/// loses no acknowledged write.
struct Tools {
    state: Mutex<State>,
    state_path: PathBuf,
    journal: Mutex<Journal>,
}

#[derive(Default)]
struct Journal {
    file: Option<std::fs::File>,
    lines: usize,
}

type ToolResult = Result<Value, String>;

struct ToolDef {
    name: &'static str,
    description: &'static str,
    input: &'static [(&'static str, &'static str)],
}

/// How the server answers web pages, and how many requests it serves at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// Origins (`scheme://host:port`) whose pages may call the tools (CORS); `"*"` for any.
    /// A request from another origin (its `Origin` header) is refused with 403 before any tool
    /// runs; requests without `Origin` (the CLI, scripts) are always served.
    pub allowed_origins: Vec<String>,
    /// Threads answering requests: a client that is slow to send its body holds one of them.
    pub workers: usize,
}

impl Default for ServeOptions {
    /// The web app as `scripts/web.sh` serves it (port 8000), 8 workers.
    fn default() -> Self {
        Self {
            allowed_origins: vec![
                "http://127.0.0.1:8000".into(),
                "http://localhost:8000".into(),
            ],
            workers: 8,
        }
    }
}

/// The `serve` command, the same in both front-ends: `umi tools serve` and the light
/// `umi-tools serve` binary of this crate (which `scripts/web.sh` builds in about a minute
/// instead of the whole CLI).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Where the to-do list, calendar and alarms are kept.
    #[arg(long, default_value = ".umi/tool-state.json")]
    pub state: std::path::PathBuf,
    /// Origin (`http://host:port`) of a web page allowed to call the tools; repeat for
    /// more, `*` for any page. Default: the web app as scripts/web.sh serves it
    /// (http://127.0.0.1:8000 and http://localhost:8000).
    #[arg(long = "cors-origin")]
    pub cors_origins: Vec<String>,
}

impl ServeArgs {
    /// Serves until the process is stopped, after one line on stderr saying where.
    ///
    /// # Errors
    ///
    /// As [`serve_with`].
    pub fn run(&self) -> Result<(), String> {
        let mut options = ServeOptions::default();
        if !self.cors_origins.is_empty() {
            options.allowed_origins = self.cors_origins.clone();
        }
        let server = serve_with(&format!("127.0.0.1:{}", self.port), &self.state, &options)?;
        eprintln!(
            "umi tools: serving at {} (docs: {0}/tools, OpenAPI: {0}/openapi.json; state: {}; pages allowed from: {})",
            server.url,
            self.state.display(),
            options.allowed_origins.join(", ")
        );
        server.wait();
        Ok(())
    }
}

/// A running tool server.
pub struct ServerHandle {
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    server: Arc<Server>,
    tools: Arc<Tools>,
    stopping: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// Empties the to-do list, calendar and alarms and deletes their state file and journal:
    /// the server then answers as one just started on a missing state file (ids start again
    /// at 1). Meant for a client that plays one task after another, such as `umi data
    /// synth`, instead of starting a server per task (each start costs threads that
    /// `tiny_http` keeps for seconds after a stop). A request served while it runs sees the
    /// state before or after it, never half of it.
    ///
    /// # Errors
    ///
    /// A message when a state file cannot be deleted (the in-memory state is empty anyway).
    pub fn reset_state(&self) -> Result<(), String> {
        self.tools.reset()
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        for _ in &self.threads {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Blocks until the server stops.
    pub fn wait(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Deletes the state kept at `state_path`: the snapshot and the journal beside it (missing files
/// are fine).
pub fn remove_state(state_path: &Path) {
    let _ = std::fs::remove_file(state_path);
    let _ = std::fs::remove_file(Tools::journal_path(state_path));
}

/// Starts the tool server on `addr` (`127.0.0.1:0` picks a free port) with the default
/// [`ServeOptions`], keeping state in `state_path` (created when first written).
///
/// # Errors
///
/// A message when the address cannot be bound or the state file is unreadable.
pub fn serve(addr: &str, state_path: &Path) -> Result<ServerHandle, String> {
    serve_with(addr, state_path, &ServeOptions::default())
}

/// [`serve`] with explicit [`ServeOptions`].
///
/// # Errors
///
/// A message when the address cannot be bound, the state file is unreadable or `workers` is 0.
pub fn serve_with(
    addr: &str,
    state_path: &Path,
    options: &ServeOptions,
) -> Result<ServerHandle, String> {
    if options.workers == 0 {
        return Err("the tool server needs at least one worker".into());
    }
    let tools = Arc::new(Tools::load(state_path)?);
    let server = Arc::new(Server::http(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?);
    let url = match server.server_addr().to_ip() {
        Some(ip) => format!("http://{ip}"),
        None => return Err("the server is not on an IP address".into()),
    };
    let stopping = Arc::new(AtomicBool::new(false));
    let origins = Arc::new(options.allowed_origins.clone());
    let threads = (0..options.workers)
        .map(|_| {
            let (srv, tools, base, stopping, origins) = (
                server.clone(),
                tools.clone(),
                url.clone(),
                stopping.clone(),
                origins.clone(),
            );
            std::thread::spawn(move || {
                while !stopping.load(Ordering::SeqCst) {
                    // an error is one failed connection (or the unblock of `stop`), not the end
                    if let Ok(request) = srv.recv() {
                        handle(request, &tools, &base, &origins);
                    }
                }
            })
        })
        .collect();
    Ok(ServerHandle {
        url,
        server,
        tools,
        stopping,
        threads,
    })
}

/// A response header; `None` when `value` is not a valid header value (then it is left out).
fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name, value).ok()
}

fn handle(mut request: tiny_http::Request, tools: &Tools, base: &str, origins: &[String]) {
    let origin = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Origin"))
        .map(|h| h.value.as_str().to_string());
    let allowed_origin = origin
        .as_deref()
        .filter(|o| origins.iter().any(|a| a == "*" || a == o));
    let mut headers = vec![header("Content-Type", "application/json")];
    if let Some(o) = allowed_origin {
        headers.extend([
            header("Access-Control-Allow-Origin", o),
            header("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
            header("Access-Control-Allow-Headers", "content-type"),
            header("Vary", "Origin"),
        ]);
    }
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let method = request.method().clone();
    let (status, body) = if let (Some(o), None) = (&origin, allowed_origin) {
        let error = format!(
            "pages from {o} may not call this tool server; start it with --cors-origin {o} to allow them"
        );
        (403, Observation::error_value(error))
    } else if !matches!(method, Method::Get | Method::Post | Method::Options) {
        headers.push(header("Allow", "GET, POST, OPTIONS"));
        let error = format!("method {method} is not supported (GET, POST, OPTIONS)");
        (405, Observation::error_value(error))
    } else if method == Method::Options {
        (204, Value::Null)
    } else if path == "/tools" || path == "/tools/" {
        (200, tool_docs(base))
    } else if path == "/openapi.json" {
        (200, openapi(base))
    } else if let Some(name) = path.strip_prefix("/tools/") {
        if !TOOLS.iter().any(|t| t.name == name) {
            let error = format!("no tool named {name:?}");
            (404, Observation::error_value(error))
        } else if mutates(name) && method != Method::Post {
            headers.push(header("Allow", "POST"));
            let error = format!("{name} changes state: call it with POST and a JSON object body");
            (405, Observation::error_value(error))
        } else {
            let args = if method == Method::Post {
                let mut text = String::new();
                let _ = request.as_reader().take(1 << 20).read_to_string(&mut text);
                match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(o)) => Ok(o),
                    _ => Err(format!(
                        "the body must be a JSON object, got {:?}",
                        text.chars().take(100).collect::<String>()
                    )),
                }
            } else {
                Ok(parse_query(query))
            };
            match args.and_then(|a| tools.run(name, &a)) {
                Ok(v) => (200, json!({"error": "", "response": v})),
                Err(e) => (400, Observation::error_value(e)),
            }
        }
    } else {
        (
            404,
            Observation::error_value(format!("no route {path}; try /tools")),
        )
    };
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let mut response = Response::from_string(text).with_status_code(status);
    for h in headers.into_iter().flatten() {
        response.add_header(h);
    }
    let _ = request.respond(response);
}

/// `a=1&b=x%20y` → `{"a": "1", "b": "x y"}` (values stay strings; tools parse numbers).
fn parse_query(query: &str) -> Map<String, Value> {
    let decode = |s: &str| -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
                    match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push(h * 16 + l);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let mut map = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.insert(decode(k), Value::String(decode(v)));
    }
    map.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_know_weekdays() {
        assert_eq!(parse_date("1970-01-01").unwrap(), 0);
        assert_eq!(weekday_name(parse_date("2026-11-23").unwrap()), "Monday");
        assert_eq!(
            format_date(parse_date("2024-02-28").unwrap() + 1),
            "2024-02-29"
        );
        assert!(
            parse_date("2023-02-29")
                .unwrap_err()
                .contains("does not exist")
        );
        assert_eq!(
            parse_query("a=1&b=x%20y+z&c=%C3%A9%zz%"),
            serde_json::from_value::<Map<String, Value>>(
                json!({"a": "1", "b": "x y z", "c": "é%zz%"})
            )
            .unwrap()
        );
    }
}
