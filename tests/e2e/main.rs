//! End-to-end tests: the real `switchyard` binary against mock providers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]

mod harness;

mod bad_input;
mod claude;
mod clients;
mod config;
mod edge;
mod failover;
mod fleet;
mod health;
mod http1;
mod import;
mod observability;
mod operations;
mod paths;
mod providers;
mod references;
mod routing;
mod sdk;
