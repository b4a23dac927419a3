//! Assembles the Pingora server: the proxy service on the configured listeners, the admin
//! service, and the background services (health probes, signals, lifecycle).

use crate::admin::AdminApp;
use crate::config::Config;
use crate::edge::tls::CertStore;
use crate::edge::Edge;
use crate::fleet::handoff::{self, Handoff, HandoffWriter};
use crate::fleet::FleetService;
use crate::lifecycle::{Lifecycle, Reloader, Signals, UpgradeCommand};
use crate::probe::Prober;
use crate::proxy::{Gateway, Proxy};
use pingora_core::apps::http_app::HttpServer;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use std::path::PathBuf;
use std::sync::Arc;

/// Bytes of an answer gathered before a write: a typical head and a chat answer fit.
const WRITE_BUFFER: usize = 4096;

/// Process-level options from the command line.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// Take over the listening sockets of a running instance (graceful upgrade).
    pub upgrade: bool,
    /// Where sockets are handed over during an upgrade.
    pub upgrade_sock: String,
    /// The configuration file (reloaded on SIGHUP, passed to the upgraded binary).
    pub config_path: PathBuf,
}

/// Builds a ready-to-run server for `config`.
pub fn build(config: Config, opts: &ProcessOptions) -> std::io::Result<(Server, Arc<Gateway>)> {
    let conf = ServerConf {
        threads: config.threads,
        work_stealing: config.work_stealing,
        // Pingora waits this long after a stop before tearing down its runtimes; the
        // lifecycle service exits earlier, as soon as in-flight requests are done.
        grace_period_seconds: Some(config.drain_timeout.as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: opts.upgrade_sock.clone(),
        ..ServerConf::default()
    };
    let opt = Opt { upgrade: opts.upgrade, ..Opt::default() };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    once_cell::sync::Lazy::force(&crate::telemetry::metrics::METRICS);
    let listen = config.listen.clone();
    let admin = config.admin_listen;
    let drain_timeout = config.drain_timeout;
    let handoff = Arc::new(Handoff::for_socket(&opts.upgrade_sock));
    let gateway = Arc::new(Gateway::new(config, Some(handoff.clone()))?);
    // Before serving: the health of the process this one replaces, then the fleet's.
    if opts.upgrade {
        handoff::take_over(&gateway, &handoff);
    }
    if let Some(fleet) = gateway.fleet().cloned() {
        let loaded = fleet.load();
        fleet.loaded(&loaded);
        for record in loaded.iter().flatten() {
            gateway.apply_record(record, "fleet");
        }
        server.add_service(background_service("fleet", FleetService { fleet, gateway: gateway.clone() }));
    }
    server.add_service(background_service("health handoff", HandoffWriter { gateway: gateway.clone(), handoff }));

    let mut proxy = Service::new("switchyard".to_string(), Edge::new(Arc::new(Proxy(gateway.clone()))));
    let mut certs = Vec::new();
    for l in &listen {
        // No read buffer in Pingora's stream (the HTTP session reads into its own buffers,
        // held only while a request is read); a small write buffer, so that a head and a
        // small body leave in one write.
        let buffers = L4BufferSettings::new(0, WRITE_BUFFER);
        let mut listener = ListenerConfig::tcp(l.addr.to_string()).l4_buffer(buffers);
        if let Some(files) = &l.tls {
            let store = CertStore::new(files.clone()).map_err(std::io::Error::other)?;
            listener = listener.tls(store.settings().map_err(std::io::Error::other)?);
            certs.push((l.addr, store));
        }
        proxy.add_listener(listener);
    }
    server.add_service(proxy);

    // Always running, so a reload can turn probes on.
    server.add_service(background_service("health probes", Prober { gateway: gateway.clone() }));
    let reloader = Arc::new(Reloader::new(opts.config_path.clone(), gateway.clone(), certs));
    let upgrade = UpgradeCommand { config: opts.config_path.clone(), upgrade_sock: opts.upgrade_sock.clone() };
    server.add_service(background_service("signals", Signals { reloader: reloader.clone(), upgrade }));
    let addrs = listen.iter().map(|l| l.addr).collect();
    server.add_service(background_service(
        "lifecycle",
        Lifecycle { listen: addrs, drain_timeout, gateway: gateway.clone() },
    ));

    if let Some(addr) = admin {
        let app = AdminApp { gateway: gateway.clone(), reloader };
        let mut svc = Service::new("switchyard admin".to_string(), HttpServer::new_app(app));
        svc.add_tcp(&addr.to_string());
        server.add_service(svc);
    }
    Ok((server, gateway))
}
