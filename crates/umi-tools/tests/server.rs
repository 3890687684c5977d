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
    let _ = std::fs::remove_file(&p);
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
            .with_allowed_hosts(vec!["127.0.0.1:1".into()]),
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
