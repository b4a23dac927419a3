//! One JSON line per client request: what was asked, who answered, every attempt made.
//! Only fields chosen here are written: headers (and so credentials) never are.

use serde::Serialize;
use std::io::Write;
use std::sync::Mutex;

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Off,
    Stdout,
    Stderr,
    File(String),
}

pub struct AccessLog {
    sink: Option<Mutex<Box<dyn Write + Send>>>,
}

impl AccessLog {
    pub fn open(dest: &Destination) -> std::io::Result<AccessLog> {
        let sink: Option<Box<dyn Write + Send>> = match dest {
            Destination::Off => None,
            Destination::Stdout => Some(Box::new(std::io::stdout())),
            Destination::Stderr => Some(Box::new(std::io::stderr())),
            Destination::File(path) => {
                Some(Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?))
            }
        };
        Ok(AccessLog { sink: sink.map(Mutex::new) })
    }

    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    pub fn write(&self, entry: &Entry<'_>) {
        let Some(sink) = &self.sink else {
            return;
        };
        let mut line = match serde_json::to_vec(entry) {
            Ok(l) => l,
            Err(_) => return,
        };
        line.push(b'\n');
        let mut w = sink.lock().unwrap_or_else(|e| e.into_inner());
        // One write per line keeps lines whole when several processes share the file.
        let _ = w.write_all(&line);
        let _ = w.flush();
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
