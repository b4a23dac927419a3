//! The process's life as a service: configuration reload (SIGHUP or `POST /reload`),
//! binary upgrade (SIGUSR2 starts the new binary with `--upgrade` and hands it the
//! listening sockets through Pingora's SIGQUIT path), graceful stop (in-flight requests
//! finish, up to `shutdown.drainTimeout`, then exit 0), and systemd notifications.

use crate::config;
use crate::edge::tls::CertStore;
use crate::fleet::handoff::HandoffWriter;
use crate::proxy::Gateway;
use crate::telemetry::metrics;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

/// Requests being served right now, across all worker threads.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Set once this process is handing over to a new one or stopping: every response then
/// closes its connection, so no idle keep-alive connection is left for the shutdown to cut
/// while a client is sending on it.
static DRAINING: AtomicBool = AtomicBool::new(false);

pub fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

fn start_draining() {
    DRAINING.store(true, Ordering::Relaxed);
}

/// Counts a request as in flight for as long as it lives.
#[derive(Debug)]
pub struct InFlight(());

impl InFlight {
    pub fn enter() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Acquire)
}

/// Reloads the configuration file into the running gateway.
pub struct Reloader {
    pub path: PathBuf,
    pub gateway: Arc<Gateway>,
    /// The certificates of the TLS listeners, re-read on every reload.
    certs: Vec<(SocketAddr, Arc<CertStore>)>,
    /// Serializes reloads (SIGHUP and the admin endpoint may race).
    lock: Mutex<()>,
}

impl Reloader {
    pub fn new(path: PathBuf, gateway: Arc<Gateway>, certs: Vec<(SocketAddr, Arc<CertStore>)>) -> Reloader {
        Reloader { path, gateway, certs, lock: Mutex::new(()) }
    }

    /// Validates the file first; a bad file leaves the running configuration in place.
    pub fn reload(&self) -> Result<(), Vec<String>> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        notify(&[sd_notify::NotifyState::Reloading]);
        let result = self.apply();
        // Even when the new file is refused: logrotate's SIGHUP must move the access log.
        self.gateway.reopen_access_log();
        notify(&[sd_notify::NotifyState::Ready]);
        let label = if result.is_ok() { "success" } else { "failure" };
        metrics::with(|m| m.reloads.with_label_values(&[label]).inc());
        match &result {
            Ok(()) => info!(config = %self.path.display(), "configuration reloaded"),
            Err(errors) => {
                for e in errors {
                    error!(config = %self.path.display(), error = %e, "configuration reload refused; keeping the running configuration");
                }
            }
        }
        result
    }

    fn apply(&self) -> Result<(), Vec<String>> {
        let new = config::load_file(&self.path).map_err(|e| e.errors)?;
        let current = self.gateway.runtime();
        let old = &current.config;
        let addrs = |c: &config::Config| c.listen.iter().map(|l| (l.addr, l.tls.is_some())).collect::<Vec<_>>();
        if addrs(&new) != addrs(old)
            || new.admin_listen != old.admin_listen
            || new.threads != old.threads
            || new.limits.max_connections != old.limits.max_connections
            || new.fleet != old.fleet
        {
            warn!("listen, admin.listen, threads, limits.maxConnections and fleet changes take effect on the next binary upgrade (SIGUSR2), not on reload");
        }
        // Certificates and keys are read again (certbot renewals): loading the config
        // checked every pair, so a bad one was refused above and the old pairs stay.
        let mut errors = Vec::new();
        for (addr, store) in &self.certs {
            let files = new.listen.iter().find(|l| l.addr == *addr).and_then(|l| l.tls.as_ref());
            if let Some(files) = files {
                if let Err(e) = store.reload(files) {
                    errors.push(format!("listen {addr}: {e}"));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        self.gateway.reload(new).map_err(|e| vec![format!("accessLog.path: {e}")])
    }
}

/// Handles SIGHUP (reload) and SIGUSR2 (binary upgrade).
pub struct Signals {
    pub reloader: Arc<Reloader>,
    pub upgrade: UpgradeCommand,
}

/// How to start the next process of a binary upgrade.
#[derive(Debug, Clone)]
pub struct UpgradeCommand {
    pub config: PathBuf,
    pub upgrade_sock: String,
}

impl UpgradeCommand {
    /// Starts the new binary with `--upgrade` (it waits for the sockets), then asks this
    /// process to hand them over (SIGQUIT, Pingora's graceful upgrade).
    fn run(&self) -> std::io::Result<u32> {
        let exe = std::env::current_exe()?;
        let child = std::process::Command::new(exe)
            .arg("--upgrade")
            .arg("-c")
            .arg(&self.config)
            .arg("--upgrade-sock")
            .arg(&self.upgrade_sock)
            .spawn()?;
        let pid = child.id();
        nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGQUIT)
            .map_err(std::io::Error::from)?;
        Ok(pid)
    }
}

#[async_trait]
impl BackgroundService for Signals {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let kinds = (
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined2()),
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
        );
        // Pingora handles SIGQUIT and SIGTERM itself; these listeners only mark the process
        // as draining as early as possible.
        let (mut hup, mut usr2, mut quit, mut term) = match kinds {
            (Ok(h), Ok(u), Ok(q), Ok(t)) => (h, u, q, t),
            _ => {
                error!("cannot install signal handlers");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    info!("SIGHUP: reloading configuration");
                    let reloader = self.reloader.clone();
                    // Config parsing reads files: keep it off the async workers.
                    let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
                }
                _ = quit.recv() => start_draining(),
                _ = term.recv() => start_draining(),
                _ = usr2.recv() => {
                    info!("SIGUSR2: starting the new binary for a graceful upgrade");
                    start_draining();
                    // The new process reads provider health before it serves.
                    if let Some(handoff) = self.reloader.gateway.handoff() {
                        HandoffWriter::write_now(&self.reloader.gateway, handoff);
                    }
                    match self.upgrade.run() {
                        Ok(pid) => info!(new_pid = pid, "handing listening sockets to the new process"),
                        Err(e) => error!(error = %e, "upgrade failed; still serving"),
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Tells systemd when the gateway is ready (its listeners accept) and when it stops, and
/// ends the process once in-flight requests have drained after a stop or an upgrade.
pub struct Lifecycle {
    pub listen: Vec<SocketAddr>,
    pub drain_timeout: Duration,
    pub gateway: Arc<Gateway>,
}

#[async_trait]
impl BackgroundService for Lifecycle {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Ready once every listener accepts connections, unless a stop comes first.
        tokio::select! {
            _ = self.wait_listening() => {}
            _ = shutdown.changed() => {}
        }
        if !*shutdown.borrow() {
            notify(&[sd_notify::NotifyState::MainPid(std::process::id()), sd_notify::NotifyState::Ready]);
            info!(pid = std::process::id(), "switchyard ready");
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        notify(&[sd_notify::NotifyState::Stopping]);
        let started = Instant::now();
        info!(in_flight = in_flight(), drain_timeout_s = self.drain_timeout.as_secs_f64(), "draining");
        while in_flight() > 0 && started.elapsed() < self.drain_timeout {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = in_flight();
        if left > 0 {
            warn!(in_flight = left, "drain timeout reached; exiting with requests in flight");
        } else {
            info!(drained_in_ms = started.elapsed().as_millis() as u64, "drained; exiting");
        }
        self.gateway.flush_access_log(Duration::from_secs(2));
        std::process::exit(0);
    }
}

impl Lifecycle {
    async fn wait_listening(&self) {
        for addr in &self.listen {
            let target = if addr.ip().is_unspecified() {
                SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
            } else {
                *addr
            };
            while tokio::net::TcpStream::connect(target).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    // Without NOTIFY_SOCKET (not under systemd) this does nothing.
    let _ = sd_notify::notify(states);
}
