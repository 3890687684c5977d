//! The demo tool server on loopback, called through `HttpTools` as the agent calls it, and
//! `HttpTools` against misbehaving servers (500, non-JSON, silence, a forbidden host).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use umi_data::Action;
use umi_tools::server::serve;
use umi_tools::{HttpTools, ToolExecutor, ToolSpec, load_tool_specs};

fn state_file(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("umi-tools-test-{}-{name}.json", std::process::id()));
    umi_tools::server::remove_state(&p);
    p
}

fn specs(url: &str) -> Vec<ToolSpec> {
    let docs = ureq::get(&format!("{url}/tools"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    load_tool_specs(&docs, url).unwrap()
}

fn call(tools: &HttpTools, name: &str, input: &str) -> String {
    pollster::block_on(tools.call(&Action {
        name: name.into(),
        input: input.into(),
    }))
    .0
}

#[test]
fn tools_work_and_state_persists_across_restarts() {
    let state = state_file("persist");
    let server = serve("127.0.0.1:0", &state).unwrap();
    let tool_specs = specs(&server.url);
    assert!(tool_specs.len() >= 12, "{} tools", tool_specs.len());
    let tools = HttpTools::new(tool_specs, Duration::from_secs(5));
    assert_eq!(
        call(
            &tools,
            "calculator",
            r#"{"a": 2, "op": "multiply", "b": 21}"#
        ),
        r#"{"error":"","response":{"result":42.0}}"#
    );
    let eur = call(
        &tools,
        "convert_currency",
        r#"{"amount": 100, "from": "USD", "to": "EUR"}"#,
    );
    assert!(eur.contains(r#""amount":92.21"#), "{eur}");
    assert!(
        call(&tools, "add_days", r#"{"date": "2026-11-23", "days": 10}"#)
            .contains(r#""date":"2026-12-03","weekday":"Thursday""#)
    );
    let added = call(
        &tools,
        "add_todo",
        r#"{"title": "buy milk", "due_date": "2026-11-24"}"#,
    );
    assert!(added.contains(r#""title":"buy milk""#), "{added}");
    let bad = call(
        &tools,
        "convert_units",
        r#"{"value": 1, "from": "kg", "to": "km"}"#,
    );
    assert!(
        bad.contains("HTTP 400") && bad.contains("cannot convert mass (kg) to length (km)"),
        "{bad}"
    );
    server.stop();

    let server = serve("127.0.0.1:0", &state).unwrap();
    let tools = HttpTools::new(specs(&server.url), Duration::from_secs(5));
    let listed = call(&tools, "list_todos", "{}");
    assert!(
        listed.contains("buy milk"),
        "state lost across restart: {listed}"
    );
    server.stop();
    let _ = std::fs::remove_file(state);
}

#[test]
fn openapi_lists_every_tool() {
    let server = serve("127.0.0.1:0", &state_file("openapi")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(
        &ureq::get(&format!("{}/openapi.json", server.url))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(
        doc["paths"].as_object().unwrap().len(),
        specs(&server.url).len()
    );
    server.stop();
}

/// A one-shot server that answers every connection with `response` (or stays silent).
fn fake_server(response: Option<&'static str>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            match response {
                Some(r) => {
                    let _ = stream.write_all(r.as_bytes());
                }
                None => std::thread::sleep(Duration::from_secs(3)),
            }
        }
    });
    format!("http://{addr}")
}

fn one_tool(url: &str) -> Vec<ToolSpec> {
    load_tool_specs(&format!(r#"[{{"Name": "t", "function": "", "input": {{}}, "http": {{"method": "GET", "url": "{url}/t"}}}}]"#), "test").unwrap()
}

#[test]
fn misbehaving_servers_become_observations() {
    let url = fake_server(Some(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\noops",
    ));
    let o = call(
        &HttpTools::new(one_tool(&url), Duration::from_secs(5)),
        "t",
        "{}",
    );
    assert!(o.contains("HTTP 500") && o.contains("oops"), "{o}");

    let url = fake_server(Some(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
    ));
    assert_eq!(
        call(
            &HttpTools::new(one_tool(&url), Duration::from_secs(5)),
            "t",
            "{}"
        ),
        "hello"
    );

    let url = fake_server(None);
    let o = call(
        &HttpTools::new(one_tool(&url), Duration::from_millis(300)),
        "t",
        "{}",
    );
    assert!(o.contains("timeout"), "{o}");

    let o = call(
        &HttpTools::new(one_tool("http://example.com"), Duration::from_secs(1))
            .with_allowed_hosts(vec!["127.0.0.1:1".into()])
            .unwrap(),
        "t",
        "{}",
    );
    assert!(o.contains("host example.com is not allowed"), "{o}");

    let o = call(
        &HttpTools::new(one_tool("http://127.0.0.1:9"), Duration::from_secs(1)),
        "nope",
        "{}",
    );
    assert!(o.contains("invalid_hallucination_function_name"), "{o}");
}

#[test]
fn path_parameters_are_substituted_and_encoded() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut stream = listener.incoming().next().unwrap().unwrap();
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).unwrap();
        let line = String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{line}",
            line.len()
        );
    });
    let specs = load_tool_specs(
        &format!(r#"[{{"Name": "item", "function": "", "input": {{}}, "http": {{"method": "GET", "url": "{url}/items/{{id}}"}}}}]"#),
        "test",
    )
    .unwrap();
    let tools = HttpTools::new(specs, Duration::from_secs(5));
    assert_eq!(
        call(&tools, "item", r#"{"id": "a b/c", "q": 1}"#),
        "GET /items/a%20b%2Fc?q=1 HTTP/1.1"
    );
    let missing = call(&tools, "item", r#"{"q": 1}"#);
    assert!(missing.contains("missing path argument id"), "{missing}");
}

/// Sends `request` (a complete HTTP/1.1 request) to `url`'s host and returns the response.
fn raw(url: &str, request: &str) -> String {
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

fn post(path: &str, origin: Option<&str>, body: &str) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\n{origin}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn get(path: &str, origin: Option<&str>) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n{origin}Connection: close\r\n\r\n")
}

#[test]
fn web_pages_from_other_origins_cannot_use_the_tools() {
    let state = state_file("cors");
    let server = serve("127.0.0.1:0", &state).unwrap();
    let url = server.url.clone();
    let todo = r#"{"title": "x"}"#;
    // state-changing tools answer only POST
    let r = raw(&url, &get("/tools/add_todo?title=x", None));
    assert!(
        r.starts_with("HTTP/1.1 405") && r.contains("call it with POST"),
        "{r}"
    );
    // another page's origin is refused before anything runs, on GET and POST
    for request in [
        post("/tools/add_todo", Some("http://evil.example"), todo),
        get("/tools/list_todos", Some("http://evil.example")),
        get("/tools", Some("null")),
    ] {
        let r = raw(&url, &request);
        assert!(r.starts_with("HTTP/1.1 403"), "{r}");
        assert!(!r.contains("Access-Control-Allow-Origin"), "{r}");
    }
    // other methods are refused
    let r = raw(
        &url,
        "PUT /tools/add_todo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    let listed = raw(&url, &get("/tools/list_todos", None));
    assert!(listed.contains(r#""response":{"todos":[]}"#), "{listed}");
    // the web app's origin (scripts/web.sh) and the CLI (no Origin) may
    let app = "http://127.0.0.1:8000";
    let preflight = raw(
        &url,
        &format!(
            "OPTIONS /tools/add_todo HTTP/1.1\r\nHost: x\r\nOrigin: {app}\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(preflight.starts_with("HTTP/1.1 204"), "{preflight}");
    assert!(
        preflight.contains(&format!("Access-Control-Allow-Origin: {app}")),
        "{preflight}"
    );
    let added = raw(&url, &post("/tools/add_todo", Some(app), todo));
    assert!(added.starts_with("HTTP/1.1 200"), "{added}");
    assert!(
        added.contains(&format!("Access-Control-Allow-Origin: {app}")),
        "{added}"
    );
    let added = raw(&url, &post("/tools/add_todo", None, todo));
    assert!(added.starts_with("HTTP/1.1 200"), "{added}");
    let listed = raw(&url, &get("/tools/list_todos", None));
    assert_eq!(listed.matches(r#""title":"x""#).count(), 2, "{listed}");
    // the docs say which tools need POST
    let docs = raw(&url, &get("/tools", None));
    assert!(
        docs.contains(r#""method":"POST","url":""#) && docs.contains(r#""method":"GET","url":""#),
        "{docs}"
    );
    server.stop();

    // --cors-origin
    let options = umi_tools::server::ServeOptions {
        allowed_origins: vec!["http://127.0.0.1:5555".into()],
        ..Default::default()
    };
    let server = umi_tools::server::serve_with("127.0.0.1:0", &state, &options).unwrap();
    let r = raw(&server.url, &get("/tools", Some(app)));
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    let r = raw(&server.url, &get("/tools", Some("http://127.0.0.1:5555")));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    server.stop();
}

#[test]
fn a_stalled_client_does_not_block_the_others() {
    let state = state_file("stall");
    let server = serve("127.0.0.1:0", &state).unwrap();
    let addr = server.url.trim_start_matches("http://").to_string();
    // three clients announce a body and never send it (the requests below would time out
    // after 5 s behind them if one of them held the only worker)
    let stalled: Vec<_> = (0..3)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(
                b"POST /tools/add_todo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"title\"",
            )
            .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let url = server.url.clone();
            std::thread::spawn(move || {
                raw(
                    &url,
                    &post("/tools/add_todo", None, &format!(r#"{{"title": "t{i}"}}"#)),
                )
            })
        })
        .collect();
    for h in handles {
        let r = h.join().unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    let listed = raw(&server.url, &get("/tools/list_todos", None));
    let ids: std::collections::BTreeSet<u64> =
        serde_json::from_str::<serde_json::Value>(listed.split("\r\n\r\n").nth(1).unwrap())
            .unwrap()["response"]["todos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_u64().unwrap())
            .collect();
    assert_eq!(
        ids.len(),
        20,
        "every acknowledged write is there once: {listed}"
    );
    drop(stalled);
    server.stop();
}

#[test]
fn writes_are_journaled_and_survive_restarts_and_torn_lines() {
    let state = state_file("journal");
    let journal = PathBuf::from(format!("{}.journal", state.display()));
    let _ = std::fs::remove_file(&journal);
    // every item: (id, done)
    let todos = |url: &str| -> Vec<(u64, bool)> {
        let listed = ureq::get(&format!("{url}/tools/list_todos?include_done=true"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        serde_json::from_str::<serde_json::Value>(&listed).unwrap()["response"]["todos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["id"].as_u64().unwrap(), t["done"] == true))
            .collect()
    };
    let server = serve("127.0.0.1:0", &state).unwrap();
    for i in 0..1005 {
        let r = raw(
            &server.url,
            &post("/tools/add_todo", None, &format!(r#"{{"title": "t{i}"}}"#)),
        );
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    let done = raw(
        &server.url,
        &post("/tools/complete_todo", None, r#"{"id": 3}"#),
    );
    assert!(done.contains(r#""done":true"#), "{done}");
    // the snapshot was rewritten once (at the 1001st write, with it), the journal holds that
    // write and the ones after it
    let snapshot: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(snapshot["todos"].as_array().unwrap().len(), 1001);
    let lines = std::fs::read_to_string(&journal).unwrap().lines().count();
    assert_eq!(lines, 6);
    server.stop();

    // a write cut short by a crash (never acknowledged) is dropped; the rest is all there
    std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap()
        .write_all(br#"{"list":"todos","item":{"id":99"#)
        .unwrap();
    let server = serve("127.0.0.1:0", &state).unwrap();
    assert_eq!(
        todos(&server.url),
        (1..=1005).map(|id| (id, id == 3)).collect::<Vec<_>>()
    );
    // the journal was folded into the snapshot at start-up
    assert!(!journal.exists());
    let added = raw(
        &server.url,
        &post("/tools/add_todo", None, r#"{"title": "x"}"#),
    );
    assert!(added.contains(r#""id":1006"#), "{added}");
    server.stop();
}

#[test]
fn reset_state_answers_as_a_fresh_server() {
    let state = state_file("reset");
    let journal = PathBuf::from(format!("{}.journal", state.display()));
    let add = |url: &str, title: &str| {
        raw(
            url,
            &post(
                "/tools/add_todo",
                None,
                &format!(r#"{{"title": "{title}"}}"#),
            ),
        )
    };
    let server = serve("127.0.0.1:0", &state).unwrap();
    for t in ["a", "b", "c"] {
        assert!(add(&server.url, t).starts_with("HTTP/1.1 200"));
    }
    assert!(journal.exists());
    server.reset_state().unwrap();
    assert!(!journal.exists() && !state.exists());
    let listed = raw(
        &server.url,
        &get("/tools/list_todos?include_done=true", None),
    );
    assert!(listed.contains(r#""todos":[]"#), "{listed}");
    // ids start again, as on a server started on a missing state file
    let after_reset = add(&server.url, "d");
    server.stop();
    let fresh = serve("127.0.0.1:0", &state_file("reset")).unwrap();
    let on_fresh = add(&fresh.url, "d");
    fresh.stop();
    let body = |r: &str| r.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    assert!(after_reset.contains(r#""id":1"#), "{after_reset}");
    assert_eq!(body(&after_reset), body(&on_fresh));
    umi_tools::server::remove_state(&state);
}

#[test]
fn tool_docs_are_read_within_the_timeout() {
    let silent = fake_server(None);
    let started = std::time::Instant::now();
    let load = |source: &str, timeout| {
        pollster::block_on(umi_tools::load_tool_specs_from(
            &umi_tools::ToolDocsSource::from_arg(source),
            timeout,
        ))
    };
    let err = load(&silent, Duration::from_millis(300)).unwrap_err();
    assert!(
        err.to_string().contains("/tools") && err.to_string().contains("umi tools serve"),
        "{err}"
    );
    // the fake server answers nothing for 3 s: the timeout, not the server, ended the wait
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let missing = load("/nonexistent/tools.json", Duration::from_secs(1)).unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/tools.json"),
        "{missing}"
    );
}

/// The light `umi-tools serve` binary serves the same tools as the library, says where on its
/// first stderr line, and refuses a bad port with a clear error.
#[test]
fn the_umi_tools_binary_serves_the_demo_tools() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_umi-tools");
    let state = state_file("binary");
    let mut child = Command::new(bin)
        .args(["serve", "--port", "0", "--state"])
        .arg(&state)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL on the first stderr line: {line:?}"))
        .to_string();
    let served = specs(&url);
    let _ = child.kill();
    let _ = child.wait();
    let library = serve("127.0.0.1:0", &state_file("binary-library")).unwrap();
    let expected = specs(&library.url);
    library.stop();
    let names = |s: &[ToolSpec]| s.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&served), names(&expected));
    assert_eq!(served.len(), 14, "the demo server has 14 tools");

    let bad = Command::new(bin)
        .args(["serve", "--port", "99999"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("99999") && err.contains("--port"), "{err}");
}
