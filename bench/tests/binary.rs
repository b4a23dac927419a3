//! The `mock-llm` binary: flags, the listening line, and one exchange.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

/// Kills the child when the test ends, passing or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> (Running, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mock-llm")).args(args).stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let (name_part, addr) = line.trim_end().split_once(" listening on ").unwrap();
    assert!(name_part.starts_with("mock-llm "), "{line}");
    (running, addr.parse().unwrap())
}

fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn post(body: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn prints_its_address_and_injects_failures_from_flags() {
    let (_mock, addr) = spawn(&["--name", "cli", "--status", "429", "--retry-after", "2", "--health-status", "503"]);
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);
    let response = exchange(addr, &post(r#"{"model":"m"}"#));
    assert!(response.starts_with("HTTP/1.1 429"), "{response}");
    assert!(response.contains("retry-after: 2"), "{response}");
    assert!(response.contains("mock cli: injected 429"), "{response}");
    let health = exchange(addr, "GET /health HTTP/1.1\r\nhost: mock\r\nconnection: close\r\n\r\n");
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
}

#[test]
fn answers_by_default() {
    let (_mock, addr) = spawn(&["--listen", "127.0.0.1:0"]);
    let response = exchange(addr, &post(r#"{"model":"m"}"#));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("Hello from mock"), "{response}");
}

#[test]
fn rejects_a_bad_failure_rate() {
    let status = Command::new(env!("CARGO_BIN_EXE_mock-llm"))
        .args(["--failure-rate", "1.5"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
}
