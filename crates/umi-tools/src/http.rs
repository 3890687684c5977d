//! Tools called over HTTP (native client: `ureq`). Every failure becomes an observation.

use std::time::Duration;

use serde_json::{Value, json};
use umi_data::{Action, Observation};

use crate::executor::{ToolExecutor, hallucination_observation};
use crate::spec::{HttpMethod, ToolSpec};

/// HTTP tools with a host allow-list and a timeout.
pub struct HttpTools {
    specs: Vec<ToolSpec>,
    allowed_hosts: Vec<String>,
    agent: ureq::Agent,
    max_body_bytes: u64,
}

fn error(message: String) -> Observation {
    Observation(json!({"error": message, "response": ""}).to_string())
}

impl HttpTools {
    /// Tools from `specs`; only the hosts their URLs name may be called, each request may take
    /// up to `timeout`.
    pub fn new(specs: Vec<ToolSpec>, timeout: Duration) -> Self {
        let mut allowed_hosts: Vec<String> = specs.iter().filter_map(ToolSpec::host).collect();
        allowed_hosts.sort();
        allowed_hosts.dedup();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            specs,
            allowed_hosts,
            agent,
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

    fn request(&self, spec: &ToolSpec, args: &serde_json::Map<String, Value>) -> Observation {
        let Some(http) = &spec.http else {
            return error(format!("tool {} has no HTTP endpoint", spec.name));
        };
        match spec.host() {
            Some(host) if self.allowed_hosts.contains(&host) => {}
            other => {
                return error(format!(
                    "host {} is not allowed (allowed: {})",
                    other.unwrap_or_default(),
                    self.allowed_hosts.join(", ")
                ));
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
                return error(format!("missing path argument {key} for {}", spec.name));
            };
            let value = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            url.replace_range(start..start + len + 1, &percent_encode(&value));
        }
        let args = &args;
        let result = match http.method {
            HttpMethod::Get => {
                let mut request = self.agent.get(&url);
                for (k, v) in args {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    request = request.query(k, v);
                }
                request.call()
            }
            HttpMethod::Post => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(Value::Object(args.clone()).to_string()),
        };
        match result {
            Err(ureq::Error::Timeout(_)) => error(format!("timeout calling {}", spec.name)),
            Err(e) => error(format!("request to {} failed: {e}", spec.name)),
            Ok(mut response) => {
                let status = response.status();
                let body = response
                    .body_mut()
                    .with_config()
                    .limit(self.max_body_bytes)
                    .read_to_string()
                    .unwrap_or_else(|e| format!("(unreadable body: {e})"));
                if status.is_success() {
                    Observation(body)
                } else {
                    Observation(
                        json!({"error": format!("HTTP {}", status.as_u16()), "response": body})
                            .to_string(),
                    )
                }
            }
        }
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

impl ToolExecutor for HttpTools {
    fn tool_names(&self) -> Vec<String> {
        self.specs.iter().map(|s| s.name.clone()).collect()
    }

    async fn call(&self, action: &Action) -> Observation {
        let Some(spec) = self.specs.iter().find(|s| s.name == action.name) else {
            return hallucination_observation(&action.name, &self.tool_names());
        };
        match action.input_json() {
            Some(Value::Object(args)) => self.request(spec, &args),
            _ => error(format!(
                "Action Input is not a JSON object: {}",
                action.input
            )),
        }
    }
}
