//! Provider health as other processes see it: announcing this process's ejections and
//! restorations (to the fleet and to the next process of an upgrade), and applying theirs.

use super::Gateway;
use crate::balancer::ProviderSlot;
use crate::fleet::state::{self, Clocks, Event, ProviderId, Record};
use crate::health::Transition;
use crate::runtime::{BackendRuntime, Runtime};
use tracing::info;

fn provider_id(backend: &BackendRuntime, slot: &ProviderSlot) -> ProviderId {
    ProviderId {
        backend: backend.balancer.backend.name.clone(),
        provider: slot.config.name.clone(),
        endpoint: slot.config.endpoint(),
    }
}

fn find<'a>(rt: &'a Runtime, id: &ProviderId) -> Option<(&'a BackendRuntime, &'a ProviderSlot)> {
    let backend = rt.backends.iter().find(|b| b.balancer.backend.name == id.backend)?;
    let slot = backend.balancer.providers.iter().find(|s| s.config.name == id.provider)?;
    (slot.config.endpoint() == id.endpoint).then_some((backend, slot))
}

impl Gateway {
    /// Tells the fleet and the upgrade handoff about an ejection or a restoration.
    pub(crate) fn announce(&self, backend: &BackendRuntime, slot: &ProviderSlot, transition: Transition) {
        let from = || self.fleet.as_ref().map(|f| f.instance.clone()).unwrap_or_default();
        let event = match transition {
            Transition::Ejected { .. } => slot.health.shared().map(|s| Event::Ejected {
                from: from(),
                record: state::record(provider_id(backend, slot), &s, Clocks::now()),
            }),
            Transition::Restored { ended } => Some(Event::Restored {
                from: from(),
                id: provider_id(backend, slot),
                ended: Clocks::now().to_wall(ended),
            }),
            Transition::Nothing | Transition::KeptByFloor => return,
        };
        if let Some(h) = &self.handoff {
            h.changed();
        }
        if let (Some(fleet), Some(event)) = (&self.fleet, event) {
            fleet.publish(event);
        }
    }

    /// Every provider currently out of rotation (ejected, or on trial after it).
    pub fn health_records(&self, clocks: Clocks) -> Vec<Record> {
        let rt = self.runtime();
        rt.backends
            .iter()
            .flat_map(|b| b.balancer.providers.iter().map(move |s| (b, s)))
            .filter_map(|(b, s)| s.health.shared().map(|sh| state::record(provider_id(b, s), &sh, clocks)))
            .collect()
    }

    /// Takes over an ejection decided elsewhere (`source`: who, for the log). Returns
    /// whether it changed this process's state.
    pub fn apply_record(&self, record: &Record, source: &str) -> bool {
        let rt = self.runtime();
        let Some((_, slot)) = find(&rt, &record.id) else {
            return false;
        };
        let clocks = Clocks::now();
        let Some(shared) = state::shared(record, clocks) else {
            return false;
        };
        let before = slot.health.shared().map(|s| s.until);
        if !slot.health.apply_shared(&shared) {
            return false;
        }
        if before.is_none_or(|b| shared.until > b) {
            let seconds = shared.until.saturating_sub(clocks.mono) as f64 / 1000.0;
            info!(provider = %slot.config.name, reason = %record.reason, seconds, source, "provider ejected elsewhere; taken over");
        }
        self.handoff_changed();
        true
    }

    /// Applies a fleet peer's event.
    pub fn apply_event(&self, event: &Event) -> bool {
        match event {
            Event::Ejected { record, .. } => self.apply_record(record, "fleet"),
            Event::Restored { id, ended, .. } => {
                let rt = self.runtime();
                let Some((backend, slot)) = find(&rt, id) else {
                    return false;
                };
                let clocks = Clocks::now();
                let latest = clocks.to_mono(state::restorable_until(*ended));
                let restored =
                    slot.health.apply_restore(latest, clocks.mono, &backend.balancer.backend.health.recovery);
                if restored {
                    info!(provider = %slot.config.name, source = "fleet", "provider restored elsewhere; back in rotation");
                    self.handoff_changed();
                }
                restored
            }
        }
    }

    fn handoff_changed(&self) {
        if let Some(h) = &self.handoff {
            h.changed();
        }
    }
}
