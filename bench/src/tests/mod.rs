//! Tests of the mock over real loopback connections.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod apis;
mod chat;
mod client;
mod connection;
mod control;
mod stream;
mod tools;

use std::time::Duration;

use crate::{Behavior, MockLlm};

/// Upper bound for anything that should happen promptly.
const PROMPTLY: Duration = Duration::from_secs(1);

async fn start(name: &str, behavior: Behavior) -> MockLlm {
    MockLlm::start(name, behavior).await.unwrap()
}
