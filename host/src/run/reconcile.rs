//! One round of a host: the instances it should run, compared with those it runs; upgrades
//! moved on; each instance's usage reported.

use std::collections::BTreeMap;
use std::sync::Arc;

use switchyard_control::registry::Registry;
use switchyard_schemas::PluginId;
use time::OffsetDateTime;

use super::instance::{Role, Running};
use super::shared::Shared;
use super::upgrade::{self, Verdict};
use super::{desired, HostOptions};
use crate::place::{HostDirectory, Slot};

/// The instances of this host, by plugin and slot.
pub(super) type Key = (PluginId, Slot);

/// What this host runs: the serving instances, the candidates of an upgrade under way, and
/// the versions whose upgrade failed here (not tried again while they are wanted).
#[derive(Default)]
pub(super) struct Instances {
    serving: BTreeMap<Key, Running>,
    candidates: BTreeMap<Key, Running>,
    refused: std::collections::BTreeSet<(PluginId, String)>,
}

impl Instances {
    /// How many instances serve.
    pub(super) fn serving_count(&self) -> usize {
        self.serving.len()
    }

    pub(super) fn all(&self) -> impl Iterator<Item = (&Key, &Running)> {
        self.serving.iter().chain(self.candidates.iter())
    }

    /// Stops every instance, candidates first.
    pub(super) async fn stop_all(&mut self) {
        let stopping: Vec<Running> = std::mem::take(&mut self.candidates)
            .into_values()
            .chain(std::mem::take(&mut self.serving).into_values())
            .collect();
        stop_together(stopping).await;
    }
}

/// Stops `instances`, all at once (each within its own grace period).
async fn stop_together(instances: Vec<Running>) {
    for instance in &instances {
        instance.cancel();
    }
    futures::future::join_all(instances.into_iter().map(Running::stop)).await;
}

/// One round: stop what this host should no longer run, start what it should, and move
/// upgrades on ([`upgrade`]).
pub(super) async fn reconcile(
    shared: &Arc<Shared>,
    directory: &HostDirectory,
    registry: &Registry,
    options: &HostOptions,
    instances: &mut Instances,
) {
    let live = match directory.live(options.host_timeout).await {
        Ok(live) => live,
        Err(error) => return tracing::warn!(%error, "cannot read the live hosts"),
    };
    let mut names: Vec<&str> = live.iter().map(|h| h.record.name.as_str()).collect();
    // This host runs whatever its own record says, even if it read the directory a moment
    // before its first heartbeat landed.
    if !names.contains(&options.name.as_str()) {
        names.push(&options.name);
    }
    let registrations = match registry.list().await {
        Ok(registrations) => registrations,
        Err(error) => return tracing::warn!(%error, "cannot read the registry"),
    };
    let (wanted, unrunnable) = desired::desired(&registrations, &names, &options.name);
    for plugin in unrunnable {
        tracing::debug!(%plugin, "enabled, but installed from a manifest: no package to run");
    }
    // A refused version no longer wanted may be tried again later.
    instances.refused.retain(|(plugin, version)| {
        wanted
            .iter()
            .any(|((p, _), w)| p == plugin && &w.version == version)
    });

    // Not wanted here any more (or a candidate of a version no longer wanted): stopped.
    let gone: Vec<Key> = instances
        .serving
        .keys()
        .filter(|key| !wanted.contains_key(*key))
        .cloned()
        .collect();
    let mut stopping: Vec<Running> = gone
        .iter()
        .filter_map(|key| instances.serving.remove(key))
        .collect();
    let stale: Vec<Key> = instances
        .candidates
        .iter()
        .filter(|(key, c)| wanted.get(*key).is_none_or(|w| w.version != c.version))
        .map(|(key, _)| key.clone())
        .collect();
    stopping.extend(
        stale
            .iter()
            .filter_map(|key| instances.candidates.remove(key)),
    );
    stop_together(stopping).await;

    for ((plugin, slot), wanted) in wanted {
        let key = (plugin.clone(), slot);
        let Some(serving) = instances.serving.get(&key) else {
            let started = Running::start(shared, plugin, slot, wanted, Role::Serving);
            instances.serving.insert(key, started);
            continue;
        };
        if serving.version == wanted.version
            || instances
                .refused
                .contains(&(plugin.clone(), wanted.version.clone()))
        {
            continue;
        }
        match instances.candidates.get(&key) {
            Some(candidate) => {
                let heard = shared.heard_since(&candidate.name, candidate.since);
                let old_beats = shared.heard_since(&serving.name, serving.since);
                match upgrade::judge(candidate, wanted.run.health_grace, old_beats, heard) {
                    Verdict::Pending => {}
                    Verdict::Healthy => {
                        let candidate = instances.candidates.remove(&key).expect("judged");
                        let old = instances.serving.remove(&key).expect("judged");
                        tracing::info!(%plugin, slot, from = %old.version, to = %candidate.version, "upgraded an instance");
                        old.stop().await;
                        candidate.promote();
                        instances.serving.insert(key, candidate);
                    }
                    Verdict::Failed(why) => {
                        let candidate = instances.candidates.remove(&key).expect("judged");
                        tracing::warn!(%plugin, slot, version = %wanted.version, %why, "an upgrade failed its health check");
                        candidate.stop().await;
                        serving.report.lock().expect("never poisoned").upgrading_to = None;
                        instances
                            .refused
                            .insert((plugin.clone(), wanted.version.clone()));
                        upgrade::roll_back(shared, &plugin, &wanted.version, &why).await;
                    }
                }
            }
            // Instance by instance: one candidate of a plugin at a time on this host.
            None if !instances.candidates.keys().any(|(p, _)| *p == plugin) => {
                tracing::info!(%plugin, slot, from = %serving.version, to = %wanted.version, "upgrading an instance");
                serving.report.lock().expect("never poisoned").upgrading_to =
                    Some(wanted.version.clone());
                let candidate = Running::start(shared, plugin, slot, wanted, Role::Candidate);
                instances.candidates.insert(key, candidate);
            }
            None => {}
        }
    }
}

/// Writes each running instance's report with its usage now.
pub(super) async fn report_usage(shared: &Shared, instances: &mut Instances) {
    for instance in instances.serving.values_mut() {
        if instance.is_finished() || !instance.is_reporting() {
            continue;
        }
        let meter = instance.meter.lock().expect("never poisoned").clone();
        let usage = meter.map(|m| m.usage()).unwrap_or_default();
        let now = tokio::time::Instant::now();
        let cpu_millicores = match (usage.cpu_micros, instance.last_cpu) {
            (Some(cpu), Some((before, at))) if now > at => {
                let elapsed = now.duration_since(at).as_micros().max(1) as u64;
                Some(cpu.saturating_sub(before).saturating_mul(1000) / elapsed)
            }
            _ => None,
        };
        instance.last_cpu = usage.cpu_micros.map(|cpu| (cpu, now));
        {
            let mut report = instance.report.lock().expect("never poisoned");
            report.memory_bytes = usage.memory_bytes;
            report.cpu_millicores = cpu_millicores;
            report.lines_lost = instance
                .lines_lost
                .load(std::sync::atomic::Ordering::Relaxed);
            report.reported_at = OffsetDateTime::now_utc();
        }
        shared.put_report(&instance.report).await;
    }
}
