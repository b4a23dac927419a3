//! Health across a binary upgrade: the running process keeps its ejections (with their
//! streaks, and trials once they have ended) in a file next to the upgrade socket, and the
//! process that takes its sockets over reads it before serving. Fleet or not, a provider
//! that asked for 60 s is not hit again by the new process.
//!
//! The file is rewritten after every ejection and restoration (by a background task, off
//! the request path) and once more when SIGUSR2 starts the upgrade.

use super::state::{Clocks, Record};
use crate::proxy::Gateway;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Notify;
use tracing::{info, warn};

/// The file a process hands over, and the signal that it must be rewritten.
#[derive(Debug)]
pub struct Handoff {
    pub path: PathBuf,
    dirty: Notify,
}

impl Handoff {
    /// The handoff file of the process listening on `upgrade_sock`.
    pub fn for_socket(upgrade_sock: &str) -> Handoff {
        Handoff { path: PathBuf::from(format!("{upgrade_sock}.health")), dirty: Notify::new() }
    }

    /// Asks the writer to rewrite the file (cheap; never waits).
    pub fn changed(&self) {
        self.dirty.notify_one();
    }

    /// Writes `records` whole (a temporary file renamed over the old one).
    pub fn write(&self, records: &[Record]) -> std::io::Result<()> {
        let tmp = self.path.with_extension(format!("tmp{}", std::process::id()));
        let text = serde_json::to_vec(records).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)
    }

    /// The records the previous process left; none when there is no file.
    pub fn read(&self) -> std::io::Result<Vec<Record>> {
        match std::fs::read(&self.path) {
            Ok(text) => serde_json::from_slice(&text).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// Takes over the health the previous process handed over (a binary upgrade).
pub fn take_over(gateway: &Gateway, handoff: &Handoff) {
    match handoff.read() {
        Ok(records) => {
            let applied = records.iter().filter(|r| gateway.apply_record(r, "previous process")).count();
            info!(file = %handoff.path.display(), providers = applied, "took over provider health from the previous process");
        }
        Err(e) => {
            warn!(file = %handoff.path.display(), error = %e, "cannot read the previous process's provider health; starting fresh")
        }
    }
}

/// Rewrites the handoff file whenever health changes.
pub struct HandoffWriter {
    pub gateway: Arc<Gateway>,
    pub handoff: Arc<Handoff>,
}

impl HandoffWriter {
    pub fn write_now(gateway: &Gateway, handoff: &Handoff) {
        if let Err(e) = handoff.write(&gateway.health_records(Clocks::now())) {
            warn!(file = %handoff.path.display(), error = %e, "cannot write provider health for the next process");
        }
    }
}

#[async_trait]
impl BackgroundService for HandoffWriter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = self.handoff.dirty.notified() => {}
                _ = shutdown.changed() => return,
            }
            let (gateway, handoff) = (self.gateway.clone(), self.handoff.clone());
            let _ = tokio::task::spawn_blocking(move || HandoffWriter::write_now(&gateway, &handoff)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::state::ProviderId;

    #[test]
    fn records_survive_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let h = Handoff::for_socket(&dir.path().join("up.sock").display().to_string());
        assert_eq!(h.read().unwrap(), vec![], "no file: nothing to take over");
        let id = ProviderId { backend: "b".into(), provider: "p".into(), endpoint: "http://h:1".into() };
        let records = vec![Record { id, until: 123, reason: "status".into(), streak: 2 }];
        h.write(&records).unwrap();
        assert_eq!(h.read().unwrap(), records);
        std::fs::write(&h.path, "not json").unwrap();
        assert!(h.read().is_err());
    }
}
