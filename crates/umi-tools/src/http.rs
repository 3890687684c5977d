//! Tools called over HTTP: one [`HttpTools`] whose requests are prepared the same way
//! everywhere (allow-list, path parameters, query or JSON body) and sent by `ureq` natively or
//! by the browser's `fetch` (`gloo-net`) on wasm32. Every failure becomes an observation.

use std::time::Duration;

use serde_json::{Map, Value, json};
use umi_data::{Action, Observation};

use crate::executor::{ToolExecutor, hallucination_observation};
use crate::spec::{HttpMethod, ToolSpec};

/// HTTP tools with a host allow-list and a timeout (the timeout applies natively; the browser
/// applies its own).
pub struct HttpTools {
    specs: Vec<ToolSpec>,
    allowed_hosts: Vec<String>,
    #[cfg(not(target_family = "wasm"))]
    agent: ureq::Agent,
    max_body_bytes: u64,
}

/// A request ready to send.
struct Prepared {
    method: HttpMethod,
    url: String,
    query: Vec<(String, String)>,
    body: Option<String>,
}

fn error(message: String) -> Observation {
    Observation(json!({"error": message, "response": ""}).to_string())
}

fn as_text(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for URL path segments).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The observation for an HTTP answer: the body on 2xx, `{"error": "HTTP n", "response": body}`
/// otherwise.
fn answer(status: u16, body: String) -> Observation {
    if (200..300).contains(&status) {
        Observation(body)
    } else {
        Observation(json!({"error": format!("HTTP {status}"), "response": body}).to_string())
    }
}

impl HttpTools {
    /// Tools from `specs`; only the hosts their URLs name may be called, each request may take
    /// up to `timeout`.
    pub fn new(specs: Vec<ToolSpec>, timeout: Duration) -> Self {
        let mut allowed_hosts: Vec<String> = specs.iter().filter_map(ToolSpec::host).collect();
        allowed_hosts.sort();
        allowed_hosts.dedup();
        #[cfg(target_family = "wasm")]
        let _ = timeout;
        Self {
            specs,
            allowed_hosts,
            #[cfg(not(target_family = "wasm"))]
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .http_status_as_error(false)
                .build()
                .into(),
            max_body_bytes: 1 << 20,
        }
    }

    /// Replaces the allow-list (`host` or `host:port`).
    pub fn with_allowed_hosts(mut self, hosts: Vec<String>) -> Self {
        self.allowed_hosts = hosts;
        self
    }

    /// The specs.
    pub fn specs(&self) -> &[ToolSpec] {
        &self.specs
    }

    fn prepare(&self, spec: &ToolSpec, args: &Map<String, Value>) -> Result<Prepared, Observation> {
        let Some(http) = &spec.http else {
            return Err(error(format!("tool {} has no HTTP endpoint", spec.name)));
        };
        match spec.host() {
            Some(host) if self.allowed_hosts.contains(&host) => {}
            other => {
                return Err(error(format!(
                    "host {} is not allowed (allowed: {})",
                    other.unwrap_or_default(),
                    self.allowed_hosts.join(", ")
                )));
            }
        }
        // `{name}` placeholders in the URL (OpenAPI path parameters) take their arguments.
        let mut url = http.url.clone();
        let mut args = args.clone();
        while let Some(start) = url.find('{') {
            let Some(len) = url[start..].find('}') else {
                break;
            };
            let key = url[start + 1..start + len].to_string();
            let Some(value) = args.remove(&key) else {
                return Err(error(format!(
                    "missing path argument {key} for {}",
                    spec.name
                )));
            };
            url.replace_range(start..start + len + 1, &percent_encode(&as_text(value)));
        }
        Ok(match http.method {
            HttpMethod::Get => Prepared {
                method: HttpMethod::Get,
                url,
                query: args.into_iter().map(|(k, v)| (k, as_text(v))).collect(),
                body: None,
            },
            HttpMethod::Post => Prepared {
                method: HttpMethod::Post,
                url,
                query: Vec::new(),
                body: Some(Value::Object(args).to_string()),
            },
        })
    }

    #[cfg(not(target_family = "wasm"))]
    async fn send(&self, name: &str, req: Prepared) -> Observation {
        let result = match req.method {
            HttpMethod::Get => {
                let mut request = self.agent.get(&req.url);
                for (k, v) in &req.query {
                    request = request.query(k, v);
                }
                request.call()
            }
            HttpMethod::Post => self
                .agent
                .post(&req.url)
                .header("content-type", "application/json")
                .send(req.body.unwrap_or_default()),
        };
        match result {
            Err(ureq::Error::Timeout(_)) => error(format!("timeout calling {name}")),
            Err(e) => error(format!("request to {name} failed: {e}")),
            Ok(mut response) => {
                let status = response.status().as_u16();
                let body = response
                    .body_mut()
                    .with_config()
                    .limit(self.max_body_bytes)
                    .read_to_string()
                    .unwrap_or_else(|e| format!("(unreadable body: {e})"));
                answer(status, body)
            }
        }
    }

    #[cfg(target_family = "wasm")]
    async fn send(&self, name: &str, req: Prepared) -> Observation {
        use gloo_net::http::Request;
        let request = match req.method {
            HttpMethod::Get => Request::get(&req.url)
                .query(req.query.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .build(),
            HttpMethod::Post => Request::post(&req.url)
                .header("content-type", "application/json")
                .body(req.body.unwrap_or_default()),
        };
        let response = match request {
            Ok(r) => r.send().await,
            Err(e) => return error(format!("request to {name} could not be built: {e}")),
        };
        match response {
            Err(e) => error(format!("request to {name} failed: {e}")),
            Ok(response) => {
                let status = response.status();
                let mut body = response
                    .text()
                    .await
                    .unwrap_or_else(|e| format!("(unreadable body: {e})"));
                if body.len() as u64 > self.max_body_bytes {
                    let mut cut = self.max_body_bytes as usize;
                    while !body.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    body.truncate(cut);
                }
                answer(status, body)
            }
        }
    }
}

impl ToolExecutor for HttpTools {
    fn tool_names(&self) -> Vec<String> {
        self.specs.iter().map(|s| s.name.clone()).collect()
    }

    async fn call(&self, action: &Action) -> Observation {
        let Some(spec) = self.specs.iter().find(|s| s.name == action.name) else {
            return hallucination_observation(&action.name, &self.tool_names());
        };
        let args = match action.input_json() {
            Some(Value::Object(args)) => args,
            _ => {
                return error(format!(
                    "Action Input is not a JSON object: {}",
                    action.input
                ));
            }
        };
        match self.prepare(spec, &args) {
            Ok(req) => self.send(&spec.name, req).await,
            Err(observation) => observation,
        }
    }
}
