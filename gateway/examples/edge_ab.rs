//! The client side alone, for the A/B in `bench/edge-ab.sh`: one listener answering every
//! request with a fixed answer (`--answer-file`; the script gives the mock upstream's chat
//! answer, which nginx returns too) after reading its whole body, served either by
//! the gateway's own edge (`--server pingora`: Pingora's HTTP sessions exactly as the proxy
//! drives them, head checks and the body budget included) or by hyper's server over the same
//! Pingora listener streams (`--server hyper`: HTTP/1.1 and h2c, as `hyper_util`'s auto
//! builder serves them). Both run on Pingora's runtime with the same listener settings, so
//! what differs is only the HTTP server.

use async_trait::async_trait;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pingora_core::apps::ServerApp;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::protocols::http::ReusableHttpStream;
use pingora_core::protocols::Stream;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::listening::Service;
use std::sync::Arc;
use switchyard::config::{Limits, TlsFiles};
use switchyard::edge::budget::BodyBudget;
use switchyard::edge::session::ClientSession;
use switchyard::edge::tls::CertStore;
use switchyard::edge::{checks, Edge, Handler};

#[derive(Copy, Clone, Debug, ValueEnum)]
enum Kind {
    Pingora,
    Hyper,
}

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, value_enum)]
    server: Kind,
    /// Plain listener (HTTP/1.1, h2c).
    #[arg(long)]
    listen: String,
    /// TLS listener (ALPN h2, http/1.1), with --cert and --key.
    #[arg(long)]
    listen_tls: Option<String>,
    #[arg(long)]
    cert: Option<String>,
    #[arg(long)]
    key: Option<String>,
    /// The JSON answer every request gets.
    #[arg(long)]
    answer_file: std::path::PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let answer = Bytes::from(std::fs::read(&args.answer_file)?);
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut listeners = vec![ListenerConfig::tcp(args.listen.clone())];
    if let (Some(addr), Some(cert), Some(key)) = (&args.listen_tls, &args.cert, &args.key) {
        // The gateway's own TLS settings (TLS 1.2 and 1.3, ALPN h2 and http/1.1).
        let files = TlsFiles { cert_file: cert.into(), key_file: key.into() };
        let store = CertStore::new(files).map_err(anyhow::Error::msg)?;
        listeners.push(ListenerConfig::tcp(addr.clone()).tls(store.settings().map_err(anyhow::Error::msg)?));
    }
    // The gateway's listener buffers (gateway/src/server.rs): no read buffer, 4 KiB write.
    let listeners = listeners.into_iter().map(|l| l.l4_buffer(L4BufferSettings::new(0, 4096)));
    match args.server {
        Kind::Pingora => {
            let budget = BodyBudget::new(Limits::default().max_buffered_body_bytes);
            let mut svc = Service::new("edge".into(), Edge::new(Arc::new(Fixed { budget, answer })));
            listeners.for_each(|l| svc.add_listener(l));
            server.add_service(svc);
        }
        Kind::Hyper => {
            let mut svc = Service::new("edge".into(), HyperApp::new(answer));
            listeners.for_each(|l| svc.add_listener(l));
            server.add_service(svc);
        }
    }
    server.run_forever()
}

fn answer_headers(answer: &Bytes) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(2);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(answer.len()));
    headers
}

/// The gateway's edge with the proxy replaced by the fixed answer.
struct Fixed {
    budget: Arc<BodyBudget>,
    answer: Bytes,
}

#[async_trait]
impl Handler for Fixed {
    async fn handle(&self, mut session: ClientSession, _: &ShutdownWatch) -> Option<ReusableHttpStream> {
        let limits = self.limits();
        if !session.is_h2() && !session.read_head().await.ok()? {
            return None;
        }
        checks::check_head(session.req_header(), session.raw_head().as_deref(), limits.max_header_bytes).ok()?;
        let mut held = self.budget.reservation();
        session.read_body(&limits, &mut held).await.ok()?;
        drop(held);
        session.write_response_header(StatusCode::OK, answer_headers(&self.answer), false).await.ok()?;
        session.write_response_body(Some(self.answer.clone()), true).await.ok()?;
        session.finish().await
    }

    fn limits(&self) -> Limits {
        Limits::default()
    }
}

/// hyper's server (HTTP/1.1 and HTTP/2 by the preface, as `hyper_util` detects it) over a
/// Pingora listener stream.
struct HyperApp {
    builder: hyper_util::server::conn::auto::Builder<TokioExecutor>,
    budget: Arc<BodyBudget>,
    answer: Bytes,
}

impl HyperApp {
    fn new(answer: Bytes) -> HyperApp {
        let limits = Limits::default();
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192));
        builder.http2().timer(TokioTimer::new()).max_header_list_size(limits.max_header_bytes as u32);
        HyperApp { builder, budget: BodyBudget::new(limits.max_buffered_body_bytes), answer }
    }
}

#[async_trait]
impl ServerApp for HyperApp {
    async fn process_new(self: &Arc<Self>, stream: Stream, _: &ShutdownWatch) -> Option<Stream> {
        let app = self.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let app = app.clone();
            async move {
                let limits = Limits::default();
                let mut held = app.budget.reservation();
                let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
                if !held.hold(declared.unwrap_or(0)) {
                    return Err(anyhow::anyhow!("over the body budget"));
                }
                let body = tokio::time::timeout(
                    limits.body_timeout,
                    Limited::new(req.into_body(), limits.max_request_body_bytes).collect(),
                )
                .await
                .map_err(|_| anyhow::anyhow!("body timeout"))?
                .map_err(|e| anyhow::anyhow!("body: {e}"))?
                .to_bytes();
                if !held.hold(body.len() as u64) {
                    return Err(anyhow::anyhow!("over the body budget"));
                }
                drop(held);
                let mut answer = Response::new(Full::new(app.answer.clone()));
                *answer.headers_mut() = answer_headers(&app.answer);
                Ok::<_, anyhow::Error>(answer)
            }
        });
        let _ = self.builder.serve_connection(TokioIo::new(stream), service).await;
        None
    }
}
