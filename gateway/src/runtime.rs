//! Everything a request needs from the current configuration, built once per (re)load and
//! swapped atomically. Provider health lives in a registry outside it, keyed by provider
//! name and endpoint, so it survives reloads that keep both.

use crate::balancer::Balancer;
use crate::clients::{ClientRegistry, ClientTable};
use crate::config::{Auth, Config, ProviderConfig};
use crate::health::ProviderHealth;
use crate::routing::RouteTable;
use crate::upstream::Endpoint;
use http::HeaderValue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Health state by (provider name, endpoint).
#[derive(Debug, Default)]
pub struct HealthRegistry {
    map: Mutex<HashMap<(String, String), Arc<ProviderHealth>>>,
}

impl HealthRegistry {
    fn get(&self, p: &ProviderConfig) -> Arc<ProviderHealth> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((p.name.clone(), p.endpoint())).or_default().clone()
    }

    /// Drops the state of providers no longer configured.
    fn retain(&self, config: &Config) {
        let keep: std::collections::HashSet<(String, String)> =
            config.backends.iter().flat_map(|b| b.providers().map(|p| (p.name.clone(), p.endpoint()))).collect();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|k, _| keep.contains(k));
    }
}

/// Per provider: where to send and how to authenticate.
#[derive(Debug)]
pub struct Upstream {
    pub endpoint: Endpoint,
    /// Provider auth header in the provider's own header (marked sensitive).
    pub auth_header: Option<(http::HeaderName, HeaderValue)>,
    /// `host` header value.
    pub host_header: HeaderValue,
}

#[derive(Debug)]
pub struct BackendRuntime {
    pub balancer: Balancer,
    /// Parallel to `balancer.providers`.
    pub upstreams: Vec<Upstream>,
}

#[derive(Debug)]
pub struct Runtime {
    pub config: Config,
    pub routes: RouteTable,
    pub backends: Vec<BackendRuntime>,
    /// `None`: no client authentication.
    pub clients: Option<ClientTable>,
}

impl Runtime {
    /// Health state and client windows come from the registries, which keep them across
    /// reloads for providers and clients still configured.
    pub fn build(config: Config, registry: &HealthRegistry, clients: &ClientRegistry) -> Runtime {
        let backends = config
            .backends
            .iter()
            .map(|b| {
                let balancer = Balancer::new(b.clone(), |p| registry.get(p));
                let upstreams = balancer.providers.iter().map(|s| upstream(&s.config)).collect();
                BackendRuntime { balancer, upstreams }
            })
            .collect();
        registry.retain(&config);
        // Without `clients` the table is empty and the registry forgets every window.
        let table = ClientTable::build(config.clients.as_deref().unwrap_or_default(), &config.routes, clients);
        let clients = config.clients.is_some().then_some(table);
        Runtime { routes: RouteTable::new(&config.routes), backends, config, clients }
    }
}

fn upstream(p: &ProviderConfig) -> Upstream {
    let auth_header = match &p.auth {
        Auth::ApiKey(key) => crate::providers::api_key_header(&p.kind, key.expose()).ok(),
        Auth::None | Auth::Passthrough | Auth::Aws(_) | Auth::Google(_) => None,
    };
    let host = crate::providers::host_header(p);
    Upstream {
        endpoint: Endpoint::new(p),
        auth_header,
        host_header: HeaderValue::from_str(&host).unwrap_or_else(|_| HeaderValue::from_static("localhost")),
    }
}
