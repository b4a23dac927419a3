//! Switchyard: an LLM failover gateway on Pingora.
//!
//! Module map: [`config`] (YAML to typed model), [`routing`] (routes), [`balancer`]
//! (priority groups, round-robin), [`health`] (per-provider failure state machine),
//! [`body`] (the request fields routing reads), [`upstream`] (peers, DNS, connection pool),
//! [`edge`] (client connections on Pingora's HTTP/1.1 and HTTP/2 sessions, TLS, limits),
//! [`http1`] (HTTP/1.1 to providers), [`runtime`] (the swappable per-config
//! state), [`proxy`] (the request path),
//! [`clients`] (client keys, route allow-lists, request and token limits),
//! [`fleet`] (ejections and client limits shared through Redis, health across upgrades),
//! [`admin`] (the admin listener), [`server`] (assembling the Pingora server).

pub mod admin;
pub mod balancer;
pub mod body;
pub mod clients;
pub mod config;
pub mod edge;
pub mod error;
pub mod fleet;
pub mod health;
pub mod http1;
pub mod import;
pub mod lifecycle;
pub mod probe;
pub mod providers;
pub mod proxy;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod sse;
pub mod telemetry;
pub mod upstream;
