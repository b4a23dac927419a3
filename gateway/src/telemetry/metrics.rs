//! Prometheus metrics, registered in the default registry of the `prometheus` crate that
//! pingora-prometheus re-exports. Every label value comes from the configuration (route,
//! provider and model names) or a closed set (status class, outcome, reason), never from
//! the client.

use once_cell::sync::Lazy;
use pingora_prometheus::prometheus::{
    exponential_buckets, register_gauge_vec, register_histogram_vec, register_int_counter, register_int_counter_vec,
    register_int_gauge, register_int_gauge_vec, GaugeVec, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec,
};

pub struct Metrics {
    pub requests: IntCounterVec,
    pub attempts: IntCounterVec,
    pub failovers: IntCounterVec,
    pub ejections: IntCounterVec,
    pub floor_kept: IntCounterVec,
    pub provider_state: IntGaugeVec,
    pub provider_headroom: GaugeVec,
    pub hedges: IntCounterVec,
    pub request_duration: HistogramVec,
    pub ttfb: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub tokens: IntCounterVec,
    pub reloads: IntCounterVec,
    pub connections: IntGauge,
    pub buffered_body_bytes: IntGauge,
    pub refused: IntCounterVec,
    pub client_requests: IntCounterVec,
    pub client_tokens: IntCounterVec,
    pub client_limited: IntCounterVec,
    pub fleet_connected: IntGauge,
    pub fleet_events: IntCounterVec,
    pub fleet_local_limits: IntCounter,
    pub access_log_dropped: IntCounter,
}

fn buckets() -> Vec<f64> {
    // 1 ms .. ~131 s
    exponential_buckets(0.001, 2.0, 18).unwrap_or_default()
}

/// Registers everything once; a registration failure (a name clash) leaves that metric
/// unregistered rather than stopping the gateway.
fn build() -> Result<Metrics, pingora_prometheus::prometheus::Error> {
    Ok(Metrics {
        requests: register_int_counter_vec!(
            "switchyard_requests_total",
            "Client requests by route and final status class.",
            &["route", "status_class"]
        )?,
        attempts: register_int_counter_vec!(
            "switchyard_attempts_total",
            "Upstream attempts by provider and outcome (success, status, transport, timeout, stream, client_gone).",
            &["provider", "outcome"]
        )?,
        failovers: register_int_counter_vec!(
            "switchyard_failovers_total",
            "Requests moved from one provider to the next within the same request.",
            &["from", "to"]
        )?,
        ejections: register_int_counter_vec!(
            "switchyard_ejections_total",
            "Provider ejections by reason (status, transport, timeout, stream, probe, quota).",
            &["provider", "reason"]
        )?,
        floor_kept: register_int_counter_vec!(
            "switchyard_ejections_prevented_total",
            "Ejections not done because maxEjectionPercent keeps that share of the group in service.",
            &["provider"]
        )?,
        provider_state: register_int_gauge_vec!(
            "switchyard_provider_state",
            "1 for the provider's current state (healthy, trial, ejected), 0 for the others.",
            &["backend", "provider", "state"]
        )?,
        provider_headroom: register_gauge_vec!(
            "switchyard_provider_headroom",
            "Remaining / limit of the provider's rate-limit budget (requests, tokens) as its last answer announced it.",
            &["provider", "kind"]
        )?,
        hedges: register_int_counter_vec!(
            "switchyard_hedges_total",
            "Hedged attempts (retry.hedge), from the hedge's side: won = its content was delivered.",
            &["outcome"]
        )?,
        request_duration: register_histogram_vec!(
            "switchyard_request_duration_seconds",
            "Client request duration, by the provider that served it.",
            &["provider"],
            buckets()
        )?,
        ttfb: register_histogram_vec!(
            "switchyard_time_to_first_byte_seconds",
            "Time from the client request to the first response byte sent to it, by provider.",
            &["provider"],
            buckets()
        )?,
        upstream_duration: register_histogram_vec!(
            "switchyard_upstream_duration_seconds",
            "Duration of each upstream attempt, by provider.",
            &["provider"],
            buckets()
        )?,
        tokens: register_int_counter_vec!(
            "switchyard_tokens_total",
            "Tokens reported in responses' usage, by provider, configured model and type (input, output).",
            &["provider", "model", "type"]
        )?,
        reloads: register_int_counter_vec!(
            "switchyard_config_reloads_total",
            "Configuration reloads by result (success, failure).",
            &["result"]
        )?,
        connections: register_int_gauge!(
            "switchyard_client_connections",
            "Client connections open now (HTTP/1.1 and HTTP/2, plain and TLS)."
        )?,
        buffered_body_bytes: register_int_gauge!(
            "switchyard_buffered_body_bytes",
            "Request body bytes held in memory by all requests now (announced or arrived), against limits.maxBufferedBodyBytes."
        )?,
        refused: register_int_counter_vec!(
            "switchyard_refused_total",
            "Client connections and requests refused by the edge, by reason (max_connections, bad_request, header_too_large, header_timeout, body_timeout, body_budget).",
            &["reason"]
        )?,
        client_requests: register_int_counter_vec!(
            "switchyard_client_requests_total",
            "Requests by configured client (\"none\" without a known key), route and final status class; only with clients configured.",
            &["client", "route", "status_class"]
        )?,
        client_tokens: register_int_counter_vec!(
            "switchyard_client_tokens_total",
            "Tokens in the usage of answers, by configured client and type (input, output).",
            &["client", "type"]
        )?,
        client_limited: register_int_counter_vec!(
            "switchyard_client_limited_total",
            "Requests refused with 429 because the client reached a limit (requests, tokens).",
            &["client", "limit"]
        )?,
        fleet_connected: register_int_gauge!(
            "switchyard_fleet_connected",
            "1 while this instance is connected to its fleet's Redis, 0 otherwise (and without a fleet)."
        )?,
        fleet_events: register_int_counter_vec!(
            "switchyard_fleet_events_total",
            "Health events shared with the fleet, by direction (out: published, in: applied from a peer).",
            &["direction"]
        )?,
        fleet_local_limits: register_int_counter!(
            "switchyard_fleet_local_limit_checks_total",
            "Client limit checks decided on this instance's own counts because Redis was slow (over 5 ms) or down."
        )?,
        access_log_dropped: register_int_counter!(
            "switchyard_access_log_dropped_total",
            "Access log lines dropped because the writer fell behind (a slow disk)."
        )?,
    })
}

pub static METRICS: Lazy<Option<Metrics>> = Lazy::new(|| match build() {
    Ok(m) => Some(m),
    Err(e) => {
        tracing::error!(error = %e, "metrics registration failed; metrics disabled");
        None
    }
});

/// Runs `f` with the metrics, when they are registered.
pub fn with(f: impl FnOnce(&Metrics)) {
    if let Some(m) = METRICS.as_ref() {
        f(m);
    }
}

/// `2xx`, `4xx`, ...
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
