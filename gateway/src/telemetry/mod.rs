//! What the gateway tells operators: Prometheus metrics ([`metrics`]) and the JSON access
//! log ([`access_log`]).

pub mod access_log;
pub mod metrics;
pub mod window;
