//! One JSON line per client request: what was asked, who answered, every attempt made.
//! Only fields chosen here are written: headers (and so credentials) never are.

use crate::telemetry::metrics;
use serde::Serialize;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// Lines waiting for the writer; past this (a disk that stalls) lines are dropped and
/// counted, and requests never wait.
const QUEUE: usize = 65_536;
/// Bytes the writer gathers into one write.
const BATCH: usize = 256 * 1024;
/// How often an idle writer looks for a reopen request.
const IDLE: Duration = Duration::from_millis(200);

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Off,
    Stdout,
    Stderr,
    File(String),
}

enum Message {
    Line(Vec<u8>),
    /// Answered once every line sent before it is written.
    Flush(mpsc::Sender<()>),
}

/// The access log: requests hand lines to a writer thread of its own, so a slow disk
/// never stalls a request; the file is reopened on request (SIGHUP, for logrotate).
pub struct AccessLog {
    tx: Option<SyncSender<Message>>,
    reopen: Arc<AtomicBool>,
}

impl AccessLog {
    /// Opens the destination now (so a bad path is an error at load) and starts its writer.
    pub fn open(dest: &Destination) -> std::io::Result<AccessLog> {
        let sink = match open_sink(dest)? {
            Some(sink) => sink,
            None => return Ok(AccessLog { tx: None, reopen: Arc::default() }),
        };
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = Writer { rx, dest: dest.clone(), sink, reopen: reopen.clone() };
        std::thread::Builder::new().name("access-log".into()).spawn(move || writer.run())?;
        Ok(AccessLog { tx: Some(tx), reopen })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one line; never waits.
    pub fn write(&self, entry: &Entry<'_>) {
        let Some(tx) = &self.tx else {
            return;
        };
        let Ok(mut line) = serde_json::to_vec(entry) else {
            return;
        };
        line.push(b'\n');
        if let Err(TrySendError::Full(_)) = tx.try_send(Message::Line(line)) {
            metrics::with(|m| m.access_log_dropped.inc());
        }
    }

    /// Asks the writer to reopen the file by its path (after logrotate moved it).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
    }

    /// Waits (at most `timeout`) until the lines queued so far are written.
    pub fn flush(&self, timeout: Duration) {
        let Some(tx) = &self.tx else {
            return;
        };
        let (done, wait) = mpsc::channel();
        if tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(timeout);
        }
    }
}

fn open_sink(dest: &Destination) -> std::io::Result<Option<Box<dyn Write + Send>>> {
    Ok(match dest {
        Destination::Off => None,
        Destination::Stdout => Some(Box::new(std::io::stdout())),
        Destination::Stderr => Some(Box::new(std::io::stderr())),
        Destination::File(path) => Some(Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?)),
    })
}

struct Writer {
    rx: Receiver<Message>,
    dest: Destination,
    sink: Box<dyn Write + Send>,
    reopen: Arc<AtomicBool>,
}

impl Writer {
    /// Gathers what is queued into one write (whole lines only, so processes sharing the
    /// file during an upgrade never split each other's lines), until every sender is gone.
    fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut flushed = Vec::new();
        loop {
            let first = match self.rx.recv_timeout(IDLE) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut next = first;
            while let Some(message) = next {
                match message {
                    Message::Line(line) => batch.extend_from_slice(&line),
                    Message::Flush(done) => flushed.push(done),
                }
                next = if batch.len() < BATCH { self.rx.try_recv().ok() } else { None };
            }
            if self.reopen.swap(false, Ordering::AcqRel) {
                self.reopen_sink();
            }
            if !batch.is_empty() {
                // A failed write (disk full) loses these lines, not the next ones.
                let _ = self.sink.write_all(&batch).and_then(|()| self.sink.flush());
                batch.clear();
            }
            for done in flushed.drain(..) {
                let _ = done.send(());
            }
        }
    }

    fn reopen_sink(&mut self) {
        match open_sink(&self.dest) {
            Ok(Some(sink)) => self.sink = sink,
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot reopen the access log; still writing to the old file"),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    pub time: String,
    pub request_id: &'a str,
    pub route: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    /// The peer address.
    pub client: Option<String>,
    /// The configured client its key names (`clients`), when known.
    pub client_name: Option<&'a str>,
    pub status: u16,
    pub duration_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub stream: bool,
    pub model_requested: Option<&'a str>,
    pub model_served: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub attempts: Vec<AttemptEntry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct AttemptEntry<'a> {
    pub provider: &'a str,
    pub endpoint: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    pub duration_ms: f64,
    pub ejected: bool,
    /// What the `drop` translation policy removed for this attempt (`thinking, cache_control`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<&'a str>,
    /// In a hedged race (`retry.hedge`): `won` or `lost`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub race: Option<&'a str>,
}

pub fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn entry() -> Entry<'static> {
        Entry {
            time: "t".into(),
            request_id: "id",
            route: None,
            method: "POST",
            path: "/v1/chat/completions",
            client: None,
            client_name: None,
            status: 200,
            duration_ms: 1.0,
            ttfb_ms: None,
            bytes_in: 0,
            bytes_out: 0,
            stream: false,
            model_requested: None,
            model_served: None,
            provider: None,
            attempts: vec![],
            error: None,
        }
    }

    #[test]
    fn lines_reach_the_file_and_follow_it_after_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(&Destination::File(path.display().to_string())).unwrap();
        log.write(&entry());
        log.flush(Duration::from_secs(5));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        log.reopen();
        log.write(&entry());
        log.flush(Duration::from_secs(5));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1, "a new file after reopening");
        let old = std::fs::read_to_string(dir.path().join("access.log.1")).unwrap();
        assert_eq!(old.lines().count(), 1, "the rotated file keeps its line");
    }

    /// A sink that blocks until told: a disk that stalls.
    struct Stalled(Arc<std::sync::Mutex<()>>);

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            drop(self.0.lock());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_disk_never_stalls_the_caller() {
        let gate = Arc::new(std::sync::Mutex::new(()));
        let held = gate.lock().unwrap();
        let (tx, rx) = mpsc::sync_channel(4);
        let writer =
            Writer { rx, dest: Destination::Off, sink: Box::new(Stalled(gate.clone())), reopen: Arc::default() };
        let thread = std::thread::spawn(move || writer.run());
        let log = AccessLog { tx: Some(tx), reopen: Arc::default() };
        let started = Instant::now();
        for _ in 0..1000 {
            log.write(&entry());
        }
        assert!(started.elapsed() < Duration::from_secs(1), "writes queue or drop, never wait");
        drop(held);
        drop(log);
        thread.join().unwrap();
    }
}
