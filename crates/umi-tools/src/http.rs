//! Tools called over HTTP: one [`HttpTools`] whose requests are prepared the same way
//! everywhere (path parameters, query or JSON body, then the allow-list on the final URL) and sent by `ureq` natively or
//! by the browser's `fetch` (`gloo-net`) on wasm32. Every failure becomes an observation.

use std::time::Duration;

use serde_json::{Map, Value};
use umi_data::{Action, Observation};

use crate::executor::{ToolExecutor, hallucination_observation};
use crate::spec::{HttpMethod, ToolError, ToolSpec};

/// HTTP tools with a host allow-list and a timeout (the timeout applies natively; the browser
/// applies its own).
///
/// The allow-list is checked on the URL a request is actually sent to: after path parameters
/// are filled in (so an Action Input cannot choose the host of a templated URL), as the URL
/// standard parses it (userinfo, percent-encoded and numeric hosts, IPv6 literals), and again on
/// every redirect hop (natively; the browser refuses redirects).
pub struct HttpTools {
    specs: Vec<ToolSpec>,
    allowed_hosts: Vec<AllowedHost>,
    #[cfg(not(target_family = "wasm"))]
    agent: ureq::Agent,
    max_body_bytes: u64,
}

/// Longest request URL sent (query included), in bytes: beyond it a GET call becomes an error
/// observation instead of a request (HTTP libraries and servers reject or fail on longer ones).
pub const MAX_URL_BYTES: usize = 8 * 1024;

/// Redirect hops followed natively, each checked against the allow-list.
#[cfg(not(target_family = "wasm"))]
const MAX_REDIRECTS: usize = 5;

/// One allow-list entry: a host as the URL standard normalises it (lower case, IPv6 in
/// brackets) and a port; `None` stands for the scheme's default port (80 for http, 443 for
/// https).
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    host: String,
    port: Option<u16>,
}

impl AllowedHost {
    /// `host`, `host:port` or `[v6]:port`.
    fn parse(entry: &str) -> Option<Self> {
        if entry.is_empty() || entry.contains(['/', '?', '#', '@', '{', '}', '\\']) {
            return None;
        }
        let url = url::Url::parse(&format!("http://{entry}/")).ok()?;
        Self::of(&url)
    }

    /// The host and port `url` connects to.
    fn of(url: &url::Url) -> Option<Self> {
        Some(Self {
            host: url.host_str()?.to_string(),
            port: url.port(),
        })
    }

    fn allows(&self, url: &url::Url) -> bool {
        url.host_str() == Some(self.host.as_str())
            && match self.port {
                None => url.port().is_none(),
                Some(p) => url.port_or_known_default() == Some(p),
            }
    }
}

impl std::fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// A request ready to send: its URL passed the allow-list.
struct Prepared {
    method: HttpMethod,
    url: url::Url,
    body: Option<String>,
}

fn as_text(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (URL path segments, query
/// keys and values).
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
        Observation::http_error(status, body)
    }
}

impl HttpTools {
    /// Tools from `specs`; only the hosts their URLs name may be called (a URL whose host is a
    /// `{template}` adds nothing: allow its hosts with [`HttpTools::with_allowed_hosts`]), each
    /// request may take up to `timeout`.
    pub fn new(specs: Vec<ToolSpec>, timeout: Duration) -> Self {
        let mut allowed_hosts: Vec<AllowedHost> = Vec::new();
        for spec in &specs {
            let Some(http) = &spec.http else { continue };
            let authority = http.url.split_once("://").map_or("", |(_, rest)| {
                rest.split(['/', '?', '#']).next().unwrap_or_default()
            });
            if authority.contains(['{', '}']) {
                continue;
            }
            if let Some(host) = url::Url::parse(&http.url)
                .ok()
                .as_ref()
                .and_then(AllowedHost::of)
                && !allowed_hosts.contains(&host)
            {
                allowed_hosts.push(host);
            }
        }
        #[cfg(target_family = "wasm")]
        let _ = timeout;
        Self {
            specs,
            allowed_hosts,
            #[cfg(not(target_family = "wasm"))]
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .http_status_as_error(false)
                .max_redirects(0)
                .build()
                .into(),
            max_body_bytes: 1 << 20,
        }
    }

    /// Replaces the allow-list: each entry is `host` (on the scheme's default port),
    /// `host:port` or `[ipv6]:port`.
    ///
    /// # Errors
    ///
    /// [`ToolError`] (origin `--allow-host`) naming the first entry that is not a host.
    pub fn with_allowed_hosts(mut self, hosts: Vec<String>) -> Result<Self, ToolError> {
        self.allowed_hosts = hosts
            .iter()
            .map(|h| {
                AllowedHost::parse(h).ok_or_else(|| ToolError {
                    origin: "--allow-host".into(),
                    message: format!("{h:?} is not a host, host:port or [ipv6]:port"),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// The specs.
    pub fn specs(&self) -> &[ToolSpec] {
        &self.specs
    }

    fn allowed_list(&self) -> String {
        self.allowed_hosts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Parses `url` as the URL standard does (as `fetch` will) and checks it: http(s), at most
    /// [`MAX_URL_BYTES`], its host and port in the allow-list.
    fn check_url(&self, url: &str) -> Result<url::Url, String> {
        if url.len() > MAX_URL_BYTES {
            return Err(format!(
                "the request URL would be {} bytes (at most {MAX_URL_BYTES}): the Action Input is too long for a GET request",
                url.len()
            ));
        }
        let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("{url:?} is not an http(s) URL"));
        }
        if !self.allowed_hosts.iter().any(|h| h.allows(&parsed)) {
            let host = AllowedHost::of(&parsed).map_or_else(String::new, |h| h.to_string());
            return Err(format!(
                "host {host} is not allowed (allowed: {})",
                self.allowed_list()
            ));
        }
        Ok(parsed)
    }

    fn prepare(&self, spec: &ToolSpec, args: &Map<String, Value>) -> Result<Prepared, Observation> {
        let Some(http) = &spec.http else {
            return Err(Observation::error(format!(
                "tool {} has no HTTP endpoint",
                spec.name
            )));
        };
        // `{name}` placeholders in the URL (OpenAPI path parameters) take their arguments.
        let mut url = http.url.clone();
        let mut args = args.clone();
        let mut from = 0;
        while let Some(start) = url[from..].find('{').map(|i| i + from) {
            let Some(len) = url[start..].find('}') else {
                break;
            };
            let key = url[start + 1..start + len].to_string();
            let Some(value) = args.remove(&key) else {
                return Err(Observation::error(format!(
                    "missing path argument {key} for {}",
                    spec.name
                )));
            };
            let value = percent_encode(&as_text(value));
            url.replace_range(start..start + len + 1, &value);
            from = start + value.len();
        }
        let body = match http.method {
            HttpMethod::Get => {
                let query: Vec<String> = args
                    .into_iter()
                    .map(|(k, v)| format!("{}={}", percent_encode(&k), percent_encode(&as_text(v))))
                    .collect();
                if !query.is_empty() {
                    url.push(if url.contains('?') { '&' } else { '?' });
                    url.push_str(&query.join("&"));
                }
                None
            }
            HttpMethod::Post => Some(Value::Object(args).to_string()),
        };
        let url = self.check_url(&url).map_err(Observation::error)?;
        Ok(Prepared {
            method: http.method,
            url,
            body,
        })
    }

    #[cfg(not(target_family = "wasm"))]
    async fn send(&self, name: &str, mut req: Prepared) -> Observation {
        for _ in 0..=MAX_REDIRECTS {
            // ureq parses the URL again (RFC 3986): it must find the host that was checked.
            let uri: ureq::http::Uri = match req.url.as_str().parse() {
                Ok(uri) => uri,
                Err(e) => return Observation::error(format!("request to {name} failed: {e}")),
            };
            if uri.host().map(|h| h.to_ascii_lowercase()).as_deref() != req.url.host_str() {
                return Observation::error(format!(
                    "request to {name} refused: {} names its host ambiguously",
                    req.url
                ));
            }
            let result = match (req.method, &req.body) {
                (HttpMethod::Get, _) | (HttpMethod::Post, None) => self.agent.get(uri).call(),
                (HttpMethod::Post, Some(body)) => self
                    .agent
                    .post(uri)
                    .header("content-type", "application/json")
                    .send(body.as_str()),
            };
            let mut response = match result {
                Err(ureq::Error::Timeout(_)) => {
                    return Observation::error(format!("timeout calling {name}"));
                }
                Err(e) => return Observation::error(format!("request to {name} failed: {e}")),
                Ok(response) => response,
            };
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok());
            if let (301 | 302 | 303 | 307 | 308, Some(location)) = (status, location) {
                let next = match req.url.join(location) {
                    Ok(next) => next,
                    Err(e) => {
                        return Observation::error(format!(
                            "{name} redirected to {location:?}, which is not a URL: {e}"
                        ));
                    }
                };
                match self.check_url(next.as_str()) {
                    Ok(next) => req.url = next,
                    Err(why) => {
                        return Observation::error(format!(
                            "{name} redirected to {next}; not followed: {why}"
                        ));
                    }
                }
                // 301/302/303 turn a POST into a GET without body, as browsers do.
                if status != 307 && status != 308 {
                    req.body = None;
                }
                continue;
            }
            let body = response
                .body_mut()
                .with_config()
                .limit(self.max_body_bytes)
                .read_to_string()
                .unwrap_or_else(|e| format!("(unreadable body: {e})"));
            return answer(status, body);
        }
        Observation::error(format!(
            "{name} redirected more than {MAX_REDIRECTS} times; not followed"
        ))
    }

    #[cfg(target_family = "wasm")]
    async fn send(&self, name: &str, req: Prepared) -> Observation {
        use gloo_net::http::Request;
        // The browser follows redirects without showing them to the page, so the allow-list
        // could not be checked on them: a redirect fails the request instead.
        let request = match (req.method, req.body) {
            (HttpMethod::Get, _) | (HttpMethod::Post, None) => Request::get(req.url.as_str())
                .redirect(web_sys::RequestRedirect::Error)
                .build(),
            (HttpMethod::Post, Some(body)) => Request::post(req.url.as_str())
                .redirect(web_sys::RequestRedirect::Error)
                .header("content-type", "application/json")
                .body(body),
        };
        let response = match request {
            Ok(r) => r.send().await,
            Err(e) => {
                return Observation::error(format!("request to {name} could not be built: {e}"));
            }
        };
        match response {
            Err(e) => Observation::error(format!(
                "request to {name} failed (redirects are not followed in the browser): {e}"
            )),
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
                return Observation::error(format!(
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
