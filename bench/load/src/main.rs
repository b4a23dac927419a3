//! `bench-load`: the parts of Switchyard's benchmark that wrk cannot do.
//!
//! * `body`: print a chat-completions request body of an exact size.
//! * `ttfb`: time to first body byte, proxy versus direct. Sends requests one at a time,
//!   interleaving the targets (direct, gateway, peer, direct, ...) so that every target sees
//!   the same machine noise; one keep-alive connection per target, opened outside the timed
//!   part.
//! * `hold`: open N keep-alive connections, send one request on each (all in flight at
//!   once), keep them open and read the resident memory of the given processes.
//!
//! * `streams`: open N streaming requests at once (slow streams: the upstream sends an event
//!   a second), read each to its end, and report the proxy's resident memory and CPU use
//!   while all of them are open.
//!
//! Results are printed as `RESULT key=value ...` lines for `bench/run.sh`.

mod http;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(name = "bench-load", version, about = "Load helpers for bench/run.sh")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print an OpenAI chat-completions request body of exactly BYTES bytes (no newline).
    Body {
        #[arg(long)]
        bytes: usize,
        /// Add `"stream":true`.
        #[arg(long)]
        stream: bool,
        #[arg(long, default_value = "gpt-4o")]
        model: String,
    },
    /// Time to first body byte and to the end of the response, per target.
    Ttfb {
        /// NAME=HOST:PORT; repeat for each target (e.g. direct, switchyard, nginx).
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        #[arg(long, default_value = "/v1/chat/completions")]
        path: String,
        /// Request body (JSON).
        #[arg(long)]
        body_file: PathBuf,
        /// Measuring time in seconds (after the warm-up).
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Untimed requests per target first.
        #[arg(long, default_value_t = 200)]
        warmup: usize,
        /// Stop after this many timed requests per target even if time is left.
        #[arg(long)]
        max_requests: Option<usize>,
    },
    /// Hold N keep-alive connections that have each done a request; report RSS.
    Hold {
        /// HOST:PORT of the proxy.
        #[arg(long)]
        addr: String,
        #[arg(long, default_value_t = 1000)]
        conns: usize,
        #[arg(long, default_value = "/v1/chat/completions")]
        path: String,
        #[arg(long)]
        body_file: PathBuf,
        /// NAME=PID of a process whose VmRSS/VmHWM to report; repeatable.
        #[arg(long = "pid")]
        pids: Vec<String>,
        /// Pause between the last response and reading the memory figures.
        #[arg(long, default_value_t = 1000)]
        settle_ms: u64,
    },
    /// Open N streaming requests at once and read them to their end; report the proxy's
    /// RSS and CPU use while all are open.
    Streams {
        /// HOST:PORT of the proxy.
        #[arg(long)]
        addr: String,
        #[arg(long, default_value_t = 10_000)]
        streams: usize,
        #[arg(long, default_value = "/v1/chat/completions")]
        path: String,
        /// Request body (JSON, `"stream":true`).
        #[arg(long)]
        body_file: PathBuf,
        /// PID of the proxy process (RSS and CPU time from /proc).
        #[arg(long)]
        pid: String,
        /// Seconds of CPU and memory sampling once every stream is open.
        #[arg(long, default_value_t = 5.0)]
        window: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Body { bytes, stream, model } => body(bytes, stream, &model),
        Cmd::Ttfb { targets, path, body_file, duration, warmup, max_requests } => {
            ttfb(&targets, &path, &body_file, duration, warmup, max_requests)
        }
        Cmd::Hold { addr, conns, path, body_file, pids, settle_ms } => {
            hold(&addr, conns, &path, &body_file, &pids, settle_ms)
        }
        Cmd::Streams { addr, streams, path, body_file, pid, window } => {
            slow_streams(&addr, streams, &path, &body_file, &pid, window)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn body(bytes: usize, stream: bool, model: &str) -> Result<()> {
    let stream_field = if stream { "\"stream\":true," } else { "" };
    let prefix = format!(
        "{{\"model\":\"{model}\",{stream_field}\"messages\":[{{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"}},{{\"role\":\"user\",\"content\":\""
    );
    let suffix = "\"}],\"temperature\":0.2,\"max_tokens\":256}";
    let fixed = prefix.len() + suffix.len();
    if bytes < fixed {
        bail!("--bytes must be at least {fixed}");
    }
    let words = b"Summarize the following text in three sentences. The quick brown fox jumps over the lazy dog. ";
    let filler: Vec<u8> = words.iter().copied().cycle().take(bytes - fixed).collect();
    let mut out = std::io::stdout().lock();
    out.write_all(prefix.as_bytes())?;
    out.write_all(&filler)?;
    out.write_all(suffix.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn split_named(spec: &str) -> Result<(&str, &str)> {
    spec.split_once('=')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        .with_context(|| format!("expected NAME=VALUE, got {spec:?}"))
}

struct Target {
    name: String,
    addr: String,
    req: Vec<u8>,
    conn: Option<std::net::TcpStream>,
    buf: Vec<u8>,
    head: Vec<u64>,
    ttfb: Vec<u64>,
    total: Vec<u64>,
    errors: u64,
    bad_status: u64,
    reconnects: u64,
    last_events: usize,
    last_bytes: usize,
}

impl Target {
    /// One request; returns the timings in nanoseconds when it succeeded with a 200.
    fn once(&mut self) -> Option<(u64, u64, u64)> {
        let timeout = Duration::from_secs(10);
        if self.conn.is_none() {
            self.reconnects += 1;
            self.buf.clear();
            match http::connect(&self.addr, timeout) {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    eprintln!("bench-load: {}: {e:#}", self.name);
                    self.errors += 1;
                    std::thread::sleep(Duration::from_millis(10));
                    return None;
                }
            }
        }
        let conn = self.conn.as_mut()?;
        match http::roundtrip(conn, &mut self.buf, &self.req) {
            Ok(resp) => {
                if !resp.keep_alive {
                    self.conn = None;
                }
                if resp.status != 200 {
                    self.bad_status += 1;
                    return None;
                }
                self.last_events = count(&resp.body, b"data:");
                self.last_bytes = resp.body.len();
                Some((nanos(resp.head_at), nanos(resp.first_body_at), nanos(resp.done_at)))
            }
            Err(e) => {
                if self.errors < 5 {
                    eprintln!("bench-load: {}: {e:#}", self.name);
                }
                self.errors += 1;
                self.conn = None;
                None
            }
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Nearest-rank percentile in microseconds.
fn pct_us(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted.len()) - 1;
    sorted[idx] as f64 / 1000.0
}

fn ttfb(
    specs: &[String],
    path: &str,
    body_file: &PathBuf,
    duration: f64,
    warmup: usize,
    max_requests: Option<usize>,
) -> Result<()> {
    let body = std::fs::read(body_file).with_context(|| format!("read {}", body_file.display()))?;
    let mut targets = Vec::new();
    for spec in specs {
        let (name, addr) = split_named(spec)?;
        targets.push(Target {
            name: name.to_owned(),
            addr: addr.to_owned(),
            req: http::post_request(addr, path, &body, &[("Accept", "text/event-stream")]),
            conn: None,
            buf: Vec::with_capacity(128 * 1024),
            head: Vec::new(),
            ttfb: Vec::new(),
            total: Vec::new(),
            errors: 0,
            bad_status: 0,
            reconnects: 0,
            last_events: 0,
            last_bytes: 0,
        });
    }
    let n = targets.len();
    for round in 0..warmup {
        for i in 0..n {
            targets[(round + i) % n].once();
        }
    }
    for t in &mut targets {
        t.errors = 0;
        t.bad_status = 0;
        t.reconnects = 0;
    }
    let limit = Duration::from_secs_f64(duration);
    let started = Instant::now();
    let mut round = 0usize;
    while started.elapsed() < limit && max_requests.is_none_or(|m| round < m) {
        for i in 0..n {
            let t = &mut targets[(round + i) % n];
            if let Some((h, f, d)) = t.once() {
                t.head.push(h);
                t.ttfb.push(f);
                t.total.push(d);
            }
        }
        round += 1;
    }
    for t in &mut targets {
        t.head.sort_unstable();
        t.ttfb.sort_unstable();
        t.total.sort_unstable();
        println!(
            "RESULT name={} n={} errors={} non200={} reconnects={} head_p50_us={:.1} ttfb_p50_us={:.1} ttfb_p99_us={:.1} total_p50_us={:.1} total_p99_us={:.1} events={} body_bytes={}",
            t.name,
            t.ttfb.len(),
            t.errors,
            t.bad_status,
            t.reconnects,
            pct_us(&t.head, 50.0),
            pct_us(&t.ttfb, 50.0),
            pct_us(&t.ttfb, 99.0),
            pct_us(&t.total, 50.0),
            pct_us(&t.total, 99.0),
            t.last_events,
            t.last_bytes,
        );
    }
    Ok(())
}

/// VmRSS and VmHWM of a process, in KiB.
fn memory_kib(pid: &str) -> Result<(u64, u64)> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("read /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("{name} missing in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn hold(addr: &str, n: usize, path: &str, body_file: &PathBuf, pids: &[String], settle_ms: u64) -> Result<()> {
    let body = std::fs::read(body_file).with_context(|| format!("read {}", body_file.display()))?;
    let req = http::post_request(addr, path, &body, &[]);
    let timeout = Duration::from_secs(30);
    let started = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let c = http::connect(addr, timeout).with_context(|| format!("connection {i}"))?;
        conns.push((c, Vec::new()));
    }
    let connect_ms = started.elapsed().as_millis();

    // Round 1: every connection has a request in flight at the same time.
    let ok1 = round(&mut conns, &req)?;
    let round_ms = started.elapsed().as_millis() - connect_ms;
    std::thread::sleep(Duration::from_millis(settle_ms));
    let mut mem = String::new();
    for spec in pids {
        let (name, pid) = split_named(spec)?;
        let (rss, hwm) = memory_kib(pid)?;
        mem.push_str(&format!(" rss_kib_{name}={rss} hwm_kib_{name}={hwm}"));
    }
    // Round 2 proves the connections were still open (kept alive) while measured.
    let ok2 = round(&mut conns, &req)?;
    println!("RESULT conns={n} ok1={ok1} ok2={ok2} connect_ms={connect_ms} round_ms={round_ms}{mem}");
    Ok(())
}

/// Writes the request on every connection, then reads every response. Returns how many
/// were 200 with the connection kept alive.
fn round(conns: &mut [(std::net::TcpStream, Vec<u8>)], req: &[u8]) -> Result<usize> {
    let start = Instant::now();
    for (c, _) in conns.iter_mut() {
        c.write_all(req).context("write request")?;
    }
    let mut ok = 0;
    let mut first_error = None;
    for (c, buf) in conns.iter_mut() {
        match http::read_response(c, buf, start) {
            Ok(r) if r.status == 200 && r.keep_alive => ok += 1,
            Ok(r) => {
                first_error.get_or_insert_with(|| format!("status {} keep_alive {}", r.status, r.keep_alive));
            }
            Err(e) => {
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    if let Some(e) = first_error {
        eprintln!("bench-load: hold: first failure: {e}");
    }
    Ok(ok)
}

/// CPU time (user + system) a process has used, in seconds.
fn cpu_seconds(pid: &str) -> Result<f64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("read /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).context("short stat")?.iter().filter_map(|v| v.parse::<f64>().ok()).sum();
    Ok(ticks / 100.0)
}

/// How one slow stream went.
#[derive(Default)]
struct StreamStats {
    opened: bool,
    complete: bool,
}

fn slow_streams(addr: &str, n: usize, path: &str, body_file: &PathBuf, pid: &str, window: f64) -> Result<()> {
    let body = std::fs::read(body_file).with_context(|| format!("read {}", body_file.display()))?;
    let req = std::sync::Arc::new(http::post_request(addr, path, &body, &[("connection", "close")]));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let addr = addr.to_string();
    rt.block_on(async move {
        // Streams that showed their first event, and streams that ended without one.
        let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let failed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let (addr, req, opened, failed) = (addr.clone(), req.clone(), opened.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                let stats = one_stream(&addr, &req, &opened).await;
                if !stats.opened {
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                stats
            }));
            // Connect in batches, so that the listen backlogs are not the test.
            if i % 256 == 255 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Every stream has its first event: sample CPU and memory over the window.
        let deadline = Instant::now() + Duration::from_secs(120);
        let settled = || {
            opened.load(std::sync::atomic::Ordering::Relaxed) + failed.load(std::sync::atomic::Ordering::Relaxed)
        };
        while settled() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let open_ms = started.elapsed().as_millis();
        let cpu0 = cpu_seconds(pid)?;
        tokio::time::sleep(Duration::from_secs_f64(window)).await;
        let cpu1 = cpu_seconds(pid)?;
        let (rss, hwm) = memory_kib(pid)?;
        let mut ok = 0;
        let mut open = 0;
        for t in tasks {
            let s = t.await.unwrap_or_default();
            open += usize::from(s.opened);
            ok += usize::from(s.complete);
        }
        let cpu_pct = (cpu1 - cpu0) / window * 100.0;
        println!(
            "RESULT streams={n} opened={open} complete={ok} errors={} open_ms={open_ms} cpu_pct={cpu_pct:.1} rss_kib={rss} hwm_kib={hwm}",
            n - ok
        );
        Ok(())
    })
}

/// One streaming request: counts as opened at its first event, complete at `[DONE]`.
async fn one_stream(addr: &str, req: &[u8], opened: &std::sync::atomic::AtomicUsize) -> StreamStats {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stats = StreamStats::default();
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else { return stats };
    if s.write_all(req).await.is_err() {
        return stats;
    }
    let mut buf = vec![0u8; 4096];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let read = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await;
        let Ok(Ok(got)) = read else { return stats };
        if got == 0 {
            return stats;
        }
        tail.extend_from_slice(&buf[..got]);
        if !stats.opened && tail.windows(5).any(|w| w == b"data:") {
            stats.opened = true;
            opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if tail.windows(6).any(|w| w == b"[DONE]") {
            stats.complete = true;
            return stats;
        }
        // Keep only what a marker split across reads needs.
        if tail.len() > 16 {
            tail.drain(..tail.len() - 16);
        }
    }
}
