//! The edge: hostile HTTP/1.1 input on raw sockets, HTTP/2 (h2c and over TLS), TLS
//! listeners and certificate reload, and the connection and body limits.

use crate::harness::*;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHAT: &str = "/v1/chat/completions";

fn backend_for(mock: &MockLlm, limits: &str) -> String {
    format!(
        "limits: {{{limits}}}\naccessLog: {{enabled: false}}\nroutes:\n  - {{name: chat, match: {{pathPrefix: /v1}}, backend: b}}\n\
         backends:\n  b:\n    groups:\n      - providers: [{}]\n",
        provider("p", mock, "")
    )
}

fn chat_json(model: &str, stream: bool) -> String {
    format!(r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#)
}

/// What came back on a raw connection: the statuses of the answers and whether the
/// gateway closed the connection (within 3 s of the last byte sent).
struct Raw {
    statuses: Vec<u16>,
    closed: bool,
    text: String,
}

async fn raw(port: u16, bytes: &[u8]) -> Raw {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_all(&mut s, Duration::from_secs(3)).await
}

async fn read_all(s: &mut TcpStream, wait: Duration) -> Raw {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let closed = loop {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let text = String::from_utf8_lossy(&out).into_owned();
    Raw { statuses: statuses(&text), closed, text }
}

/// The statuses of the HTTP/1.1 answers in `text`.
fn statuses(text: &str) -> Vec<u16> {
    text.split("\r\n")
        .filter_map(|l| l.strip_prefix("HTTP/1.1 ").and_then(|r| r.get(..3)).and_then(|c| c.parse().ok()))
        .collect()
}

/// Every row: the status of the one answer, the connection closed, nothing at the provider.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_http1_input_is_refused_and_nothing_reaches_a_provider() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&backend_for(&mock, "")).await;
    let body = chat_json("m", false);
    let n = body.len();
    let head = format!("POST {CHAT} HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n");
    let second = "GET /v1/models HTTP/1.1\r\nHost: g\r\n\r\n";
    let chunked = format!("{head}Transfer-Encoding: chunked\r\n\r\n");
    let many: String = (0..300).map(|i| format!("X-{i}: v\r\n")).collect();
    let mut big = format!("{head}X-Big: ").into_bytes();
    big.resize(70 * 1024, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("HTTP/1.1 without Host", format!("POST {CHAT} HTTP/1.1\r\nContent-Length: {n}\r\n\r\n{body}").into(), 400),
        ("two Host headers", format!("{head}Host: g\r\nContent-Length: {n}\r\n\r\n{body}").into(), 400),
        (
            "bare-LF trailer holding a second request",
            format!("{chunked}{n:x}\r\n{body}\r\n0\r\nX: y\n{second}").into(),
            400,
        ),
        ("empty chunk-size line", format!("{chunked}\r\n{body}\r\n0\r\n\r\n").into(), 400),
        (
            "gzip and chunked on two lines",
            format!("{head}Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").into(),
            501,
        ),
        (
            "absolute form for another authority",
            format!("POST http://other{CHAT} HTTP/1.1\r\nHost: g\r\nContent-Length: {n}\r\n\r\n{body}").into(),
            400,
        ),
        ("CL and TE", format!("{head}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").into(), 400),
        ("duplicate differing CL", format!("{head}Content-Length: {n}\r\nContent-Length: 5\r\n\r\n{body}").into(), 400),
        ("CL with a sign", format!("{head}Content-Length: +{n}\r\n\r\n{body}").into(), 400),
        ("CL with spaces inside", format!("{head}Content-Length: {n} 0\r\n\r\n{body}").into(), 400),
        ("oversize head", big, 431),
        ("too many headers", format!("{head}{many}Content-Length: {n}\r\n\r\n{body}").into(), 431),
        ("obs-fold", format!("{head}X-A: a\r\n b\r\nContent-Length: {n}\r\n\r\n{body}").into(), 400),
        ("NUL in a value", format!("{head}X-A: a\0b\r\nContent-Length: {n}\r\n\r\n{body}").into(), 400),
        ("CTL in a name", format!("{head}X\x01A: b\r\nContent-Length: {n}\r\n\r\n{body}").into(), 400),
        ("bare CR", format!("{head}X-A: a\rb\r\nContent-Length: {n}\r\n\r\n{body}").into(), 400),
        ("chunk size overflow", format!("{chunked}ffffffffffffffffff\r\n{body}\r\n0\r\n\r\n").into(), 400),
        ("chunk longer than its size", format!("{chunked}2\r\n{body}\r\n0\r\n\r\n").into(), 400),
        (
            "oversize trailers",
            format!("{chunked}{n:x}\r\n{body}\r\n0\r\nX: {}\r\n\r\n", "a".repeat(70_000)).into(),
            400,
        ),
        (
            "HTTP/1.0 with TE",
            format!("POST {CHAT} HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").into(),
            400,
        ),
        ("CONNECT", b"CONNECT g:443 HTTP/1.1\r\nHost: g:443\r\n\r\n".to_vec(), 405),
        ("asterisk target", b"OPTIONS * HTTP/1.1\r\nHost: g\r\n\r\n".to_vec(), 400),
    ];
    for (name, bytes, status) in cases {
        let r = raw(gw.port, &bytes).await;
        assert_eq!(r.statuses, vec![status], "{name}: {}", r.text);
        assert!(r.closed, "{name}: the connection closes");
        assert!(r.text.contains("\"error\""), "{name}: a JSON error: {}", r.text);
    }
    assert_eq!(mock.requests(), 0, "nothing reached the provider");

    // A chunk extension holding a bare LF: Pingora's decoder (httparse) takes any byte in an
    // extension, so the request is served; nothing after it is read as another request.
    let ext = format!("{chunked}{n:x};a\nb\r\n{body}\r\n0\r\n\r\n{second}");
    let r = raw(gw.port, ext.as_bytes()).await;
    assert_eq!(r.statuses, vec![200], "{}", r.text);
    assert!(r.closed && mock.requests() == 1, "one request, then the close");
}

/// An HTTP/2 preface where HTTP/1.1 was negotiated (TLS with ALPN http/1.1) is refused.
#[tokio::test(flavor = "multi_thread")]
async fn h2_preface_on_an_http1_connection_is_refused() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let (gw, tls) = tls_gateway(&mock, "").await;
    let mut s = tls.client().connect(gw_tls_port(&gw), &[b"http/1.1"]).await;
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert_eq!(mock.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_heads_and_bodies_get_408() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&backend_for(&mock, "headerTimeout: 500ms, bodyTimeout: 500ms")).await;
    // Slowloris on the head: a byte every 100 ms never completes it in time.
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let t = Instant::now();
    let r = trickle(&mut s, format!("POST {CHAT} HTTP/1.1\r\nHost: g\r\n").as_bytes()).await;
    assert_eq!(r.statuses, vec![408], "{}", r.text);
    assert!(t.elapsed() < Duration::from_secs(2), "refused at the head timeout, not later");
    // Slowloris on the body: the whole body must come within bodyTimeout.
    let body = chat_json("m", false);
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    s.write_all(format!("POST {CHAT} HTTP/1.1\r\nHost: g\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes())
        .await
        .unwrap();
    let t = Instant::now();
    let r = trickle(&mut s, body.as_bytes()).await;
    assert_eq!(r.statuses, vec![408], "{}", r.text);
    assert!(t.elapsed() < Duration::from_secs(4));
    assert_eq!(mock.requests(), 0);
    let m = gw.metrics().await;
    assert_eq!(metric(&m, "switchyard_refused_total", &[("reason", "header_timeout")]), 1.0, "{m}");
    assert_eq!(metric(&m, "switchyard_refused_total", &[("reason", "body_timeout")]), 1.0, "{m}");
}

/// Sends `bytes` one every 100 ms until the gateway answers (or 3 s pass); the answer.
async fn trickle(s: &mut TcpStream, bytes: &[u8]) -> Raw {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(3);
    for b in bytes.iter().cycle() {
        let _ = s.write_all(&[*b]).await;
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                out.extend_from_slice(&buf[..n]);
                break;
            }
            Ok(_) => break,
            Err(_) if Instant::now() > deadline => break,
            Err(_) => {}
        }
    }
    let mut rest = read_all(s, Duration::from_secs(2)).await;
    rest.text = String::from_utf8_lossy(&out).into_owned() + &rest.text;
    rest.statuses = statuses(&rest.text);
    rest
}

/// Bodies held in memory at once are capped: a request that would pass the cap gets 503
/// with Retry-After, its bytes are released, and the next one goes through.
#[tokio::test(flavor = "multi_thread")]
async fn body_memory_budget_refuses_with_503() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let body = chat_json("m", false);
    let cap = body.len() + body.len() / 2;
    let gw = Gateway::start(&backend_for(&mock, &format!("maxBufferedBodyBytes: {cap}"))).await;
    // One client announces a body and sends half of it: its length is held.
    let mut holder = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let head = format!("POST {CHAT} HTTP/1.1\r\nHost: g\r\nContent-Length: {}\r\n\r\n", body.len());
    holder.write_all(head.as_bytes()).await.unwrap();
    holder.write_all(&body.as_bytes()[..10]).await.unwrap();
    // Its length is held once the gateway has read its head (before that, a request sent
    // now could take the budget first and the holder would be the one refused).
    let held = eventually(Duration::from_secs(10), || async {
        metric(&gw.metrics().await, "switchyard_buffered_body_bytes", &[]) >= body.len() as f64
    })
    .await;
    assert!(held, "the holder's announced length is held: {}", gw.metrics().await);
    // A second one would pass the cap.
    let url = gw.url(CHAT);
    let refused = eventually(Duration::from_secs(15), || {
        let (url, body) = (url.clone(), body.clone());
        async move { post(&url, body).await.status == 503 }
    })
    .await;
    assert!(refused, "a body past the budget is refused");
    let r = post(&gw.url(CHAT), body.clone()).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.body.contains("maxBufferedBodyBytes"), "{}", r.body);
    // The holder finishes: its answer comes, its bytes are released, others go through.
    holder.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut buf = [0u8; 512];
    let n = holder.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let r = post(&gw.url(CHAT), body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = gw.metrics().await;
    assert!(metric(&m, "switchyard_refused_total", &[("reason", "body_budget")]) >= 2.0, "{m}");
    assert_eq!(metric(&m, "switchyard_buffered_body_bytes", &[]), 0.0, "every body released: {m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_limit_are_closed_and_idle_ones_time_out() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&backend_for(&mock, "maxConnections: 2, idleTimeout: 1s")).await;
    // The harness's readiness probe used one connection; wait until it is gone.
    assert!(
        eventually(Duration::from_secs(3), || async {
            metric(&gw.metrics().await, "switchyard_client_connections", &[]) == 0.0
        })
        .await
    );
    let a = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let b = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(2), || async {
            metric(&gw.metrics().await, "switchyard_client_connections", &[]) == 2.0
        })
        .await
    );
    let r = raw(gw.port, b"GET /v1/models HTTP/1.1\r\nHost: g\r\n\r\n").await;
    assert!(r.statuses.is_empty() && r.closed, "a third connection is closed: {}", r.text);
    // At least this one: the harness's readiness probe connection is counted too when its
    // task runs only after `a`'s and `b`'s took the two places (seen on a loaded machine).
    let refused = metric(&gw.metrics().await, "switchyard_refused_total", &[("reason", "max_connections")]);
    assert!((1.0..=2.0).contains(&refused), "refused connections: {refused}");
    // Idle connections close after idleTimeout, freeing their places.
    let t = Instant::now();
    let (mut a, mut b) = (a, b);
    let ra = read_all(&mut a, Duration::from_secs(3)).await;
    let rb = read_all(&mut b, Duration::from_secs(3)).await;
    assert!(ra.closed && rb.closed);
    assert!(t.elapsed() < Duration::from_millis(2500), "closed at the idle timeout: {:?}", t.elapsed());
    let r = raw(gw.port, b"GET /v1/models HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n").await;
    assert_eq!(r.statuses, vec![200], "{}", r.text);
}

/// Fields named in `Connection` are for one hop: the provider never sees them.
#[tokio::test(flavor = "multi_thread")]
async fn connection_named_headers_stay_on_their_hop() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&backend_for(&mock, "")).await;
    let body = chat_json("m", false);
    let req = format!(
        "POST {CHAT} HTTP/1.1\r\nHost: g\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nX-Kept: 1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 2048];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.header("x-hop"), None);
    assert_eq!(seen.header("x-kept"), Some("1"));
}

/// curl with HTTP/2 prior knowledge on a plain listener: a chat answer and a stream.
#[tokio::test(flavor = "multi_thread")]
async fn h2c_prior_knowledge_serves_chat_and_streams() {
    let mock = MockLlm::start("p", Behavior { stream_chunks: 3, ..Behavior::default() }).await.unwrap();
    let gw = Gateway::start(&backend_for(&mock, "")).await;
    let out = curl(&["--http2-prior-knowledge", "-d", &chat_json("m", false), &gw.url(CHAT)]);
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert!(out.contains("x-switchyard-provider: p"), "{out}");
    assert!(out.contains("Hello from p"), "{out}");
    let out = curl(&["--http2-prior-knowledge", "-N", "-d", &chat_json("m", true), &gw.url(CHAT)]);
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert!(out.contains("x-switchyard-attempts: 1") && out.trim_end().ends_with("data: [DONE]"), "{out}");
    // HTTP/1.1 still works on the same listener.
    let r = post(&gw.url(CHAT), chat_json("m", false)).await;
    assert_eq!(r.status, 200);
}

/// Runs curl with `-s -i` and the arguments; its output.
fn curl(args: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", "-i", "--max-time", "10", "-H", "content-type: application/json"])
        .args(args)
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")
}

/// HTTP/2 streams that break their own framing: a `content-length` the DATA disagrees
/// with, and a reset in the middle of the body. Nothing reaches the provider.
#[tokio::test(flavor = "multi_thread")]
async fn h2_malformed_and_reset_bodies_never_reach_a_provider() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&backend_for(&mock, "")).await;
    let mut h2 = H2::connect(gw.port).await;
    let req = http::Request::post(format!("http://127.0.0.1{CHAT}")).header("content-length", "100").body(()).unwrap();
    let (resp, mut send) = h2.client.send_request(req, false).unwrap();
    send.send_data(bytes::Bytes::from_static(b"{\"short\":1}"), true).unwrap();
    match resp.await {
        Ok(r) => assert_eq!(r.status(), 400),
        Err(e) => assert!(e.is_reset() || e.is_go_away(), "{e}"),
    }
    let req = http::Request::post(format!("http://127.0.0.1{CHAT}")).body(()).unwrap();
    let (resp, mut send) = h2.client.send_request(req, false).unwrap();
    send.send_data(bytes::Bytes::from_static(b"{\"model\":"), false).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    send.send_reset(h2::Reason::CANCEL);
    assert!(resp.await.is_err(), "the stream was reset");
    // The connection still serves a good request.
    let req = http::Request::post(format!("http://127.0.0.1{CHAT}")).body(()).unwrap();
    let (resp, mut send) = h2.client.send_request(req, false).unwrap();
    send.send_data(bytes::Bytes::from(chat_json("m", false)), true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(mock.requests(), 1, "only the good request reached the provider");
}

/// An HTTP/2 client that resets its stream while waiting cancels the upstream request
/// within a second.
#[tokio::test(flavor = "multi_thread")]
async fn h2_reset_cancels_the_upstream_request() {
    let mock = MockLlm::start("p", Behavior { hang: true, ..Behavior::default() }).await.unwrap();
    let gw = Gateway::start(&backend_for(&mock, "")).await;
    let mut h2 = H2::connect(gw.port).await;
    let req = http::Request::post(format!("http://127.0.0.1{CHAT}")).body(()).unwrap();
    let (_resp, mut send) = h2.client.send_request(req, false).unwrap();
    send.send_data(bytes::Bytes::from(chat_json("m", false)), true).unwrap();
    assert!(mock.wait_for_requests(1, Duration::from_secs(5)).await);
    let t = Instant::now();
    send.send_reset(h2::Reason::CANCEL);
    assert!(mock.wait_for_cancelled(1, Duration::from_secs(1)).await, "upstream closed within 1s");
    assert!(t.elapsed() < Duration::from_secs(1));
}

/// An h2c client connection.
struct H2 {
    client: h2::client::SendRequest<bytes::Bytes>,
}

impl H2 {
    async fn connect(port: u16) -> H2 {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        H2 { client: client.ready().await.unwrap() }
    }
}

/// A certificate authority and the server pairs it signs, written as PEM files.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pub ca_file: std::path::PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("Switchyard test CA {name}"));
        let issuer = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        let ca_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, issuer.pem()).unwrap();
        TestCa { issuer, ca_file }
    }

    /// Writes a certificate for 127.0.0.1/localhost and its key (mode 0600) to the paths.
    pub fn issue(&self, cert: &Path, key: &Path) {
        let pair = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let c = params.signed_by(&pair, &self.issuer).unwrap();
        std::fs::write(cert, c.pem()).unwrap();
        std::fs::write(key, pair.serialize_pem()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// A TLS client trusting this CA.
    pub fn client(&self) -> TlsClient {
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        TlsClient { roots: std::sync::Arc::new(roots) }
    }
}

pub struct TlsClient {
    roots: std::sync::Arc<tokio_rustls::rustls::RootCertStore>,
}

impl TlsClient {
    pub async fn connect(&self, port: u16, alpn: &[&[u8]]) -> tokio_rustls::client::TlsStream<TcpStream> {
        self.try_connect(port, alpn).await.expect("TLS handshake")
    }

    pub async fn try_connect(
        &self,
        port: u16,
        alpn: &[&[u8]],
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await
    }
}

/// A gateway with a plain listener and a TLS one (`tls.pem` / `tls.key` in its directory,
/// signed by the returned CA).
async fn tls_gateway(mock: &MockLlm, limits: &str) -> (Gateway, TestCa) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "first");
    ca.issue(&dir.path().join("tls.pem"), &dir.path().join("tls.key"));
    let tls_port = free_port();
    std::fs::write(dir.path().join("tls.port"), tls_port.to_string()).unwrap();
    let listen = format!(
        "[\"127.0.0.1:{{PORT}}\", {{address: \"127.0.0.1:{tls_port}\", tls: {{certFile: \"{{DIR}}/tls.pem\", keyFile: \"{{DIR}}/tls.key\"}}}}]"
    );
    let gw = Gateway::start_in(dir, &listen, &backend_for(mock, limits), &[]).await;
    (gw, ca)
}

fn gw_tls_port(gw: &Gateway) -> u16 {
    std::fs::read_to_string(gw.dir.path().join("tls.port")).unwrap().parse().unwrap()
}

/// One HTTP/1.1 request on an open TLS connection; the answer's status line and body.
async fn tls_request(s: &mut tokio_rustls::client::TlsStream<TcpStream>, body: &str) -> String {
    let req = format!("POST {CHAT} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some(at) = text.find("\r\n\r\n") {
            let len: usize = text[..at]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap())
                })
                .unwrap();
            if out.len() >= at + 4 + len {
                return text.into_owned();
            }
        }
    }
}

/// TLS: HTTP/1.1 and HTTP/2 (ALPN), certificate reload without a restart (open
/// connections untouched, new handshakes see the new certificate), a bad pair refused.
#[tokio::test(flavor = "multi_thread")]
async fn tls_listener_serves_both_protocols_and_reloads_its_certificate() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let (gw, first) = tls_gateway(&mock, "").await;
    let port = gw_tls_port(&gw);
    let url = format!("https://localhost:{port}{CHAT}");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let ca = first.ca_file.display().to_string();
    let out = curl(&["--http2", "--cacert", &ca, "--resolve", &resolve, "-d", &chat_json("m", false), &url]);
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    let out = curl(&["--http1.1", "--cacert", &ca, "--resolve", &resolve, "-d", &chat_json("m", false), &url]);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // TLS 1.2 and 1.3 only.
    let out = curl(&["--tlsv1.1", "--tls-max", "1.1", "--cacert", &ca, "--resolve", &resolve, &url]);
    assert!(!out.contains("200"), "TLS 1.1 refused: {out}");

    let mut open = first.client().connect(port, &[b"http/1.1"]).await;
    assert!(tls_request(&mut open, &chat_json("m", false)).await.starts_with("HTTP/1.1 200"));

    // A renewed pair from another CA, then a reload.
    let second = TestCa::new(gw.dir.path(), "second");
    second.issue(&gw.dir.path().join("tls.pem"), &gw.dir.path().join("tls.key"));
    let before = metric(&gw.metrics().await, "switchyard_config_reloads_total", &[("result", "success")]);
    gw.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric(&gw.metrics().await, "switchyard_config_reloads_total", &[("result", "success")]) > before
        })
        .await
    );
    assert!(second.client().try_connect(port, &[b"h2"]).await.is_ok(), "new handshakes use the new certificate");
    assert!(first.client().try_connect(port, &[b"h2"]).await.is_err(), "the old certificate is gone");
    assert!(
        tls_request(&mut open, &chat_json("m", false)).await.starts_with("HTTP/1.1 200"),
        "the open connection keeps going"
    );

    // A key that does not match its certificate: refused, the running pair stays.
    let third = TestCa::new(gw.dir.path(), "third");
    let stray = gw.dir.path().join("stray.pem");
    third.issue(&stray, &gw.dir.path().join("tls.key"));
    gw.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric(&gw.metrics().await, "switchyard_config_reloads_total", &[("result", "failure")]) >= 1.0
        })
        .await
    );
    assert!(second.client().try_connect(port, &[b"h2"]).await.is_ok(), "still the second certificate");
    assert!(gw.stderr().contains("do not form a usable pair"), "{}", gw.stderr());
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_key_readable_by_others_and_framing_header_modifiers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    ca.issue(&cert, &key);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let config = dir.path().join("s.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: [{{address: \"127.0.0.1:8443\", tls: {{certFile: {}, keyFile: {}}}}}]\n\
             routes: [{{name: r, match: {{pathPrefix: /}}, backend: b, requestHeaders: {{set: {{Host: x}}}}, responseHeaders: {{remove: [Transfer-Encoding]}}}}]\n\
             backends: {{b: {{groups: [{{providers: [{{name: p, openai: {{}}, host: 127.0.0.1, port: 9, tls: false}}]}}]}}}}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let (code, out) = validate(&config, &[]);
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("listen[0].tls: key file") && out.contains("readable by group or others"), "{out}");
    assert!(out.contains("routes[0].requestHeaders.set: \"Host\" frames the message"), "{out}");
    assert!(out.contains("routes[0].responseHeaders.remove: \"Transfer-Encoding\" frames the message"), "{out}");
}

/// The official OpenAI Python SDK over HTTP/2 (httpx `http2=True`) on the TLS listener,
/// trusting a test CA: chat and streaming.
#[tokio::test(flavor = "multi_thread")]
async fn openai_sdk_over_http2_and_tls() {
    let python = crate::sdk::sdk_python().unwrap_or_else(|e| panic!("{e}"));
    let mock = MockLlm::start("p", Behavior { stream_chunks: 3, ..Behavior::default() }).await.unwrap();
    let (gw, ca) = tls_gateway(&mock, "").await;
    let base = format!("https://localhost:{}/v1", gw_tls_port(&gw));
    let script = repo_root().join("tests/sdk/check_http2.py");
    let out = tokio::process::Command::new(python).arg(script).arg(&base).arg(&ca.ca_file).output().await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("http2 ok"), "{text}");
    assert_eq!(mock.requests(), 2);
}

/// An answer sent before the body was read (413 here) reads and drops the rest of the body
/// first: a client that keeps uploading reads the answer, not a reset.
#[tokio::test(flavor = "multi_thread")]
async fn early_answers_read_the_rest_of_the_body_first() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&backend_for(&mock, "maxRequestBodyBytes: 1024")).await;
    let body = vec![b'x'; 4 * 1024 * 1024];
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let head = format!("POST {CHAT} HTTP/1.1\r\nHost: g\r\nContent-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).await.unwrap();
    // The whole body goes out while the answer is already on its way.
    s.write_all(&body).await.expect("the gateway reads the body it refused");
    let r = read_all(&mut s, Duration::from_secs(5)).await;
    assert_eq!(r.statuses, vec![413], "{}", r.text);
    assert!(r.closed);
    assert_eq!(mock.requests(), 0);
}
