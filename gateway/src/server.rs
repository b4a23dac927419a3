//! Assembles the Pingora server: the proxy service on the configured listeners and the
//! admin service.

use crate::admin::AdminApp;
use crate::config::Config;
use crate::proxy::{Gateway, Proxy};
use pingora_core::apps::http_app::HttpServer;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::services::listening::Service;
use std::sync::Arc;

/// Process-level options from the command line.
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions {
    /// Take over the listening sockets of a running instance (graceful upgrade).
    pub upgrade: bool,
    /// Where sockets are handed over during an upgrade.
    pub upgrade_sock: Option<String>,
}

/// Builds a ready-to-run server for `config`.
pub fn build(config: Config, opts: &ProcessOptions) -> std::io::Result<(Server, Arc<Gateway>)> {
    let mut conf = ServerConf {
        threads: config.threads,
        work_stealing: config.work_stealing,
        grace_period_seconds: Some(config.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.drain_timeout.as_secs()),
        ..ServerConf::default()
    };
    if let Some(sock) = &opts.upgrade_sock {
        conf.upgrade_sock = sock.clone();
    }
    let opt = Opt {
        upgrade: opts.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    once_cell::sync::Lazy::force(&crate::telemetry::metrics::METRICS);
    let listen = config.listen.clone();
    let admin = config.admin_listen;
    let gateway = Arc::new(Gateway::new(config)?);
    let mut proxy =
        pingora_proxy::http_proxy_service_with_name(&server.configuration, Proxy(gateway.clone()), "switchyard");
    for addr in &listen {
        proxy.add_tcp(&addr.to_string());
    }
    server.add_service(proxy);
    // Always running, so a reload can turn probes on.
    let prober = crate::probe::Prober {
        gateway: gateway.clone(),
    };
    server.add_service(pingora_core::services::background::background_service(
        "health probes",
        prober,
    ));
    if let Some(addr) = admin {
        let mut svc = Service::new(
            "switchyard admin".to_string(),
            HttpServer::new_app(AdminApp {
                gateway: gateway.clone(),
            }),
        );
        svc.add_tcp(&addr.to_string());
        server.add_service(svc);
    }
    Ok((server, gateway))
}
