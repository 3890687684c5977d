//! The host allow-list on loopback with two addresses: tools are allowed on 127.0.0.1, a
//! listener on 127.0.0.2 stands for a host nobody allowed. Whatever the tool docs or the
//! Action Input do (redirects, templated hosts, OpenAPI server variables, userinfo,
//! percent-encoded or numeric hosts, IPv6 literals, oversized queries), no connection may
//! ever reach 127.0.0.2.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use umi_data::Action;
use umi_tools::{HttpTools, MAX_URL_BYTES, ToolExecutor, ToolSpec, load_tool_specs};

/// A listener on 127.0.0.2 counting the connections it gets (answering each with 200).
struct Forbidden {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Forbidden {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.2:0").expect("127.0.0.2 is loopback on Linux");
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                counter.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut s) = stream {
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nreached",
                    );
                }
            }
        });
        Self { port, hits }
    }

    fn assert_untouched(&self) {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            self.hits.load(Ordering::SeqCst),
            0,
            "a request reached the disallowed host"
        );
    }
}

/// A server on 127.0.0.1 answering its connections with `responses` in turn (the last one
/// repeated); returns its port.
fn allowed(responses: Vec<String>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(mut s) = stream else { continue };
            read_request(&mut s);
            let r = &responses[i.min(responses.len() - 1)];
            let _ = s.write_all(r.as_bytes());
        }
    });
    port
}

/// Reads one request: the head, then `content-length` bytes of body.
fn read_request(s: &mut TcpStream) {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let Ok(n) = s.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return;
            }
        }
    }
}

fn redirect_to(location: &str) -> String {
    format!(
        "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
}

const DONE: &str = "HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndone";

fn tool(url: &str, method: &str) -> Vec<ToolSpec> {
    load_tool_specs(
        &format!(
            r#"[{{"Name": "t", "function": "", "input": {{}}, "http": {{"method": "{method}", "url": "{url}"}}}}]"#
        ),
        "test",
    )
    .unwrap()
}

fn call(tools: &HttpTools, input: &str) -> String {
    pollster::block_on(tools.call(&Action {
        name: "t".into(),
        input: input.into(),
    }))
    .0
}

fn tools(specs: Vec<ToolSpec>) -> HttpTools {
    HttpTools::new(specs, Duration::from_secs(3))
}

#[test]
fn redirects_off_the_allowed_hosts_are_not_followed() {
    let forbidden = Forbidden::start();
    let target = format!("http://127.0.0.2:{}/x", forbidden.port);
    for method in ["GET", "POST"] {
        let port = allowed(vec![redirect_to(&target)]);
        let url = format!("http://127.0.0.1:{port}/t");
        let o = call(&tools(tool(&url, method)), "{}");
        assert!(
            o.contains("redirected to") && o.contains("not followed"),
            "{o}"
        );
        assert!(o.contains("host 127.0.0.2"), "{o}");
        // also when the allow-list is given explicitly
        let explicit = tools(tool(&url, method))
            .with_allowed_hosts(vec![format!("127.0.0.1:{port}")])
            .unwrap();
        let o = call(&explicit, "{}");
        assert!(o.contains("not followed"), "{o}");
    }
    forbidden.assert_untouched();
}

#[test]
fn redirects_within_the_allowed_hosts_are_followed_a_few_times() {
    let port = allowed(vec![redirect_to("/final"), DONE.to_string()]);
    let o = call(
        &tools(tool(&format!("http://127.0.0.1:{port}/t"), "GET")),
        "{}",
    );
    assert_eq!(o, "done");

    let port = allowed(vec![redirect_to("/again")]);
    let o = call(
        &tools(tool(&format!("http://127.0.0.1:{port}/t"), "GET")),
        "{}",
    );
    assert!(o.contains("redirected more than"), "{o}");
}

#[test]
fn the_action_input_cannot_choose_the_host() {
    let forbidden = Forbidden::start();
    let port = allowed(vec![DONE.to_string()]);
    // a templated host: allowed hosts are given, the template adds none
    let templated = tools(tool(
        &format!("http://{{host}}:{}/t", forbidden.port),
        "GET",
    ))
    .with_allowed_hosts(vec![format!("127.0.0.1:{port}")])
    .unwrap();
    let o = call(&templated, r#"{"host": "127.0.0.2"}"#);
    assert!(
        o.contains("host 127.0.0.2") && o.contains("not allowed"),
        "{o}"
    );
    // without --allow-host a templated host allows nothing at all
    let o = call(
        &tools(tool(
            &format!("http://{{host}}:{}/t", forbidden.port),
            "GET",
        )),
        r#"{"host": "127.0.0.2"}"#,
    );
    assert!(o.contains("not allowed (allowed: )"), "{o}");
    // the host is filled in but allowed: the call goes through
    let o = call(
        &tools(tool(&format!("http://{{host}}:{port}/t"), "GET"))
            .with_allowed_hosts(vec![format!("127.0.0.1:{port}")])
            .unwrap(),
        r#"{"host": "127.0.0.1"}"#,
    );
    assert_eq!(o, "done");
    // a path parameter cannot smuggle in an authority: `@`, `:` and `/` are encoded
    let path = tools(tool(&format!("http://127.0.0.1:{port}/{{p}}"), "GET"));
    let o = call(
        &path,
        &format!(r#"{{"p": "@127.0.0.2:{}/x"}}"#, forbidden.port),
    );
    assert_eq!(o, "done");

    // OpenAPI server variables
    let openapi = format!(
        r#"{{"openapi": "3.0.1", "servers": [{{"url": "http://{{region}}:{}", "variables": {{"region": {{"default": "127.0.0.1"}}}}}}],
            "paths": {{"/t": {{"get": {{"operationId": "t", "parameters": [{{"name": "region", "in": "path"}}]}}}}}}}}"#,
        forbidden.port
    );
    let specs = load_tool_specs(&openapi, "openapi").unwrap();
    let o = call(
        &tools(specs)
            .with_allowed_hosts(vec![format!("127.0.0.1:{port}")])
            .unwrap(),
        r#"{"region": "127.0.0.2"}"#,
    );
    assert!(o.contains("not allowed"), "{o}");
    forbidden.assert_untouched();
}

#[test]
fn hosts_are_compared_as_the_url_standard_parses_them() {
    let forbidden = Forbidden::start();
    let port = allowed(vec![DONE.to_string()]);
    let fp = forbidden.port;
    let only_allowed = |url: String| {
        tools(tool(&url, "GET"))
            .with_allowed_hosts(vec![format!("127.0.0.1:{port}"), format!("[::1]:{fp}")])
            .unwrap()
    };
    for url in [
        // userinfo: the host is after the `@`
        format!("http://127.0.0.1:{port}@127.0.0.2:{fp}/t"),
        format!("http://127.0.0.1:{port}%40127.0.0.2:{fp}/t"),
        // percent-encoded and numeric spellings of 127.0.0.2
        format!("http://%31%32%37.0.0.2:{fp}/t"),
        format!("http://2130706434:{fp}/t"),
        format!("http://0x7f.0.0.2:{fp}/t"),
        format!("http://127.1:{fp}/t"),
        // the right host on another port
        format!("http://127.0.0.1:{fp}/t"),
        // not http(s)
        format!("ftp://127.0.0.1:{port}/t"),
    ] {
        let o = call(&only_allowed(url.clone()), "{}");
        assert!(
            o.contains("not allowed")
                || o.contains("not an http(s) URL")
                || o.contains("not a URL"),
            "{url}: {o}"
        );
    }
    // spellings of the allowed host do reach it
    for url in [
        format!("http://%31%32%37.0.0.1:{port}/t"),
        format!("http://2130706433:{port}/t"),
        format!("HTTP://127.0.0.1:{port}/t"),
    ] {
        assert_eq!(call(&only_allowed(url.clone()), "{}"), "done", "{url}");
    }
    forbidden.assert_untouched();

    // IPv6 literals are hosts like any other
    let o = call(&only_allowed(format!("http://[::2]:{fp}/t")), "{}");
    assert!(o.contains("host [::2]") && o.contains("not allowed"), "{o}");
    // a host without a port allows only the scheme's default port
    let o = call(
        &tools(tool(&format!("http://127.0.0.1:{port}/t"), "GET"))
            .with_allowed_hosts(vec!["127.0.0.1".into()])
            .unwrap(),
        "{}",
    );
    assert!(o.contains("not allowed (allowed: 127.0.0.1)"), "{o}");
    for bad in ["http://127.0.0.1/", "a@b", "", "127.0.0.1:99999"] {
        let err = tools(tool("http://127.0.0.1:1/t", "GET"))
            .with_allowed_hosts(vec![bad.into()])
            .err()
            .unwrap_or_else(|| panic!("{bad:?} accepted"));
        assert!(err.to_string().contains("--allow-host"), "{err}");
    }
}

#[test]
fn an_oversized_get_query_is_an_observation_not_a_request() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let big = "x".repeat(66 * 1024);
    let o = call(
        &tools(tool(&format!("http://127.0.0.1:{port}/t"), "GET")),
        &format!(r#"{{"q": "{big}"}}"#),
    );
    assert!(
        o.contains("too long for a GET request") && o.contains(&MAX_URL_BYTES.to_string()),
        "{}",
        &o[..o.len().min(300)]
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the oversized request was sent"
    );
    // the same input as a POST body is fine
    drop(listener);
    let port = allowed(vec![DONE.to_string()]);
    let o = call(
        &tools(tool(&format!("http://127.0.0.1:{port}/t"), "POST")),
        &format!(r#"{{"q": "{big}"}}"#),
    );
    assert_eq!(o, "done");
}
