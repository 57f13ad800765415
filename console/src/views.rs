//! What the management API shows of the deployment: plugin summaries with their live counts,
//! a plugin in full, approvals waiting. Read from the registry, the dispatchers' status board,
//! the consumers, the dead-letter stream and the hosts' instance reports.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use async_nats::jetstream;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};
use switchyard_bus::Streams;
use switchyard_control::lifecycle::approval::Requested;
use switchyard_control::registry::{Registration, Registry, TenantScope};
use switchyard_control::settings::{OperatorSettings, SettingsReport, SettingsStore};
use switchyard_dispatcher::consumer::consumer_name;
use switchyard_dispatcher::redrive::DeadLetterSubject;
use switchyard_dispatcher::status::{worst, SeenReport, StatusBoard};
use switchyard_host::report::{InstanceBoard, InstanceReport, InstanceState};
use switchyard_schemas::{Namespace, PluginId};
use time::OffsetDateTime;

use crate::error::ApiError;

/// One plugin at a glance (docs/management-api.md, PluginSummary).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PluginSummary {
    id: String,
    version: String,
    description: Option<String>,
    state: String,
    enabled: bool,
    pending_upgrade: Option<String>,
    failure: Option<Value>,
    tenants: Option<Vec<String>>,
    all_tenants: bool,
    subscriptions: Vec<String>,
    instances: usize,
    circuit: Option<&'static str>,
    backlog: Option<u64>,
    under_way: Option<u64>,
    dead_letters: u64,
    throughput: Option<f64>,
    failures: Option<f64>,
}

/// What one subscription's consumer says.
#[derive(Debug, Clone, Default)]
struct ConsumerCounts {
    backlog: u64,
    under_way: u64,
    redelivered: u64,
    delivered: u64,
}

/// A plugin's counters at one time, to turn two of them into rates.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    delivered: u64,
    dead_letters: u64,
}

/// Reads what the views show. Keeps the previous counters of each plugin for its rates.
#[derive(Debug)]
pub(crate) struct Views {
    js: jetstream::Context,
    namespace: Namespace,
    streams: Streams,
    registry: Registry,
    samples: Mutex<HashMap<PluginId, Sample>>,
}

/// Everything read once for a set of summaries.
struct Readings {
    registrations: Vec<Registration>,
    circuits: Vec<SeenReport>,
    consumers: HashMap<String, ConsumerCounts>,
    dead_letters: HashMap<PluginId, u64>,
    instances: Vec<InstanceReport>,
    now: OffsetDateTime,
}

impl Views {
    /// Views of the deployment `namespace`.
    pub(crate) fn new(js: jetstream::Context, namespace: Namespace, registry: Registry) -> Self {
        Self {
            streams: Streams::defaults(&namespace),
            js,
            namespace,
            registry,
            samples: Mutex::new(HashMap::new()),
        }
    }

    /// The overview: every plugin, approvals waiting, dead letters in all, dispatchers.
    ///
    /// # Errors
    /// [`ApiError`] `unavailable` when something cannot be read.
    pub(crate) async fn overview(&self) -> Result<Value, ApiError> {
        let readings = self.read(None).await?;
        let plugins = self.summaries(&readings);
        let approvals: Vec<Value> = readings.registrations.iter().filter_map(approval).collect();
        let dead_letters: u64 = readings.dead_letters.values().sum();
        let mut dispatchers: Vec<&str> = readings
            .circuits
            .iter()
            .filter(|r| !r.is_stale(readings.now))
            .map(|r| r.report.instance.as_str())
            .collect();
        dispatchers.sort_unstable();
        dispatchers.dedup();
        Ok(json!({
            "at": rfc3339(readings.now),
            "plugins": plugins,
            "approvals": approvals,
            "dead_letters": dead_letters,
            "dispatchers": dispatchers,
        }))
    }

    /// Every plugin's summary.
    ///
    /// # Errors
    /// As [`Views::overview`].
    pub(crate) async fn plugins(&self) -> Result<Value, ApiError> {
        let readings = self.read(None).await?;
        Ok(json!({ "plugins": self.summaries(&readings) }))
    }

    /// What waits for approval.
    ///
    /// # Errors
    /// As [`Views::overview`].
    pub(crate) async fn approvals(&self) -> Result<Value, ApiError> {
        let registrations = self.registry.list().await?;
        let approvals: Vec<Value> = registrations.iter().filter_map(approval).collect();
        Ok(json!({ "approvals": approvals }))
    }

    /// One plugin in full.
    ///
    /// # Errors
    /// `not-found` when it is not registered; else as [`Views::overview`].
    pub(crate) async fn plugin(&self, plugin: &PluginId) -> Result<Value, ApiError> {
        let readings = self.read(Some(plugin)).await?;
        let Some(registration) = readings
            .registrations
            .iter()
            .find(|r| r.plugin_id() == plugin)
        else {
            return Err(ApiError::new(
                crate::ErrorKind::NotFound,
                format!(
                    "no plugin `{plugin}` is registered (in `{}`)",
                    self.registry.bucket()
                ),
            ));
        };
        let summary = self.summary(registration, &readings);
        let manifest = &registration.manifest;
        let settings = match SettingsStore::open_existing(&self.js, &self.namespace).await? {
            Some(store) => store.get(plugin).await?,
            None => OperatorSettings::default(),
        };
        let asks = match &registration.pending_upgrade {
            Some(upgrade) => Requested::of(&upgrade.manifest, &registration.tenants).describe(),
            None if registration.awaiting_approval => {
                Requested::of(manifest, &registration.tenants).describe()
            }
            None => Vec::new(),
        };
        let subscriptions: Vec<Value> = manifest
            .subscriptions
            .iter()
            .map(|subscription| {
                let name = subscription.name.as_str();
                let counts = readings.consumers.get(&consumer_name(plugin, name));
                let dispatchers: Vec<Value> = readings
                    .circuits
                    .iter()
                    .filter(|r| &r.report.plugin == plugin && r.report.subscription == name)
                    .map(|r| {
                        json!({
                            "instance": r.report.instance,
                            "circuit": r.report.state.name(),
                            "last_seen_secs_ago": r.age(readings.now).as_secs(),
                            "presumed_gone": r.is_stale(readings.now),
                        })
                    })
                    .collect();
                json!({
                    "name": name,
                    "events": subscription.events.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                    "backlog": counts.map(|c| c.backlog),
                    "under_way": counts.map(|c| c.under_way),
                    "redelivered": counts.map(|c| c.redelivered),
                    "circuit": circuit(&readings.circuits, plugin, Some(name), readings.now),
                    "dispatchers": dispatchers,
                })
            })
            .collect();
        let operations: Vec<Value> = manifest
            .operations
            .iter()
            .map(|operation| {
                json!({
                    "name": operation.name.as_str(),
                    "description": operation.description,
                    "request": format!("{} {}", operation.request.name, operation.request.version),
                    "response": format!("{} {}", operation.response.name, operation.response.version),
                })
            })
            .collect();
        let instances: Vec<Value> = readings
            .instances
            .iter()
            .filter(|r| r.plugin == plugin.as_str())
            .map(|r| {
                let ago = |then: OffsetDateTime| {
                    u64::try_from((readings.now - then).whole_seconds()).unwrap_or(0)
                };
                json!({
                    "host": r.host,
                    "slot": r.slot,
                    "version": r.version,
                    "state": r.state.to_string(),
                    "pid": r.pid,
                    "restarts": r.restarts,
                    "memory_bytes": r.memory_bytes,
                    "uptime_secs": r.pid.and(r.started_at).map(ago),
                    "reported_secs_ago": ago(r.reported_at),
                    "last_end": r.last_end,
                })
            })
            .collect();
        let history: Vec<Value> = self
            .registry
            .history(plugin)
            .await?
            .iter()
            .rev()
            .map(|revision| {
                let stored = revision.registration.as_ref();
                json!({
                    "revision": revision.revision,
                    "at": rfc3339(revision.at),
                    "state": stored.map_or_else(|| "removed".to_owned(), state_name),
                    "version": stored.map(|r| r.manifest.plugin.version.to_string()),
                    "pending_upgrade": stored
                        .and_then(|r| r.pending_upgrade.as_ref())
                        .map(|p| p.manifest.plugin.version.to_string()),
                    "approved_by": stored.and_then(|r| r.approval.as_ref()).map(|a| a.by.clone()),
                })
            })
            .collect();
        Ok(json!({
            "summary": summary,
            "manifest": manifest.to_toml_string(),
            "pending_manifest": registration
                .pending_upgrade
                .as_ref()
                .map(|u| u.manifest.to_toml_string()),
            "approved_by": registration.approval.as_ref().map(|a| a.by.clone()),
            // A plugin registered without an approval record (by `switchyard dev`, or before
            // approvals existed) runs with what its manifest asks; a new installation waiting
            // for approval may do nothing yet.
            "rights": if registration.awaiting_approval {
                Vec::new()
            } else {
                registration.approved_rights().describe()
            },
            "asks": asks,
            "settings": SettingsReport::of(manifest, &settings).settings,
            "subscriptions": subscriptions,
            "operations": operations,
            "instances": instances,
            "history": history,
            "registered_at": rfc3339(registration.registered_at),
            "provenance": registration.provenance,
        }))
    }

    /// What is in force for the plugin's settings (secrets named, never shown).
    ///
    /// # Errors
    /// `not-found` when it is not registered; else `unavailable`.
    pub(crate) async fn settings(&self, plugin: &PluginId) -> Result<Value, ApiError> {
        let registration = self.registry.get(plugin).await?.ok_or_else(|| {
            ApiError::new(
                crate::ErrorKind::NotFound,
                format!("no plugin `{plugin}` is registered"),
            )
        })?;
        let set = match SettingsStore::open_existing(&self.js, &self.namespace).await? {
            Some(store) => store.get(plugin).await?,
            None => OperatorSettings::default(),
        };
        serde_json::to_value(SettingsReport::of(&registration.manifest, &set))
            .map_err(|e| ApiError::new(crate::ErrorKind::Internal, e.to_string()))
    }

    /// Reads what summaries need, for every plugin or one.
    async fn read(&self, only: Option<&PluginId>) -> Result<Readings, ApiError> {
        let mut registrations = self.registry.list().await?;
        if let Some(only) = only {
            registrations.retain(|r| r.plugin_id() == only);
        }
        let circuits = match StatusBoard::open(&self.js, &self.namespace).await {
            Ok(board) => board.circuits().await.map_err(ApiError::unavailable)?,
            Err(error) => return Err(ApiError::unavailable(error)),
        };
        let consumers = self.consumers(&registrations).await?;
        let dead_letters = self.dead_letter_counts(only).await?;
        let instances = match InstanceBoard::open_existing(&self.js, &self.namespace)
            .await
            .map_err(ApiError::unavailable)?
        {
            Some(board) => board
                .list(only.map(PluginId::as_str))
                .await
                .map_err(ApiError::unavailable)?,
            None => Vec::new(),
        };
        Ok(Readings {
            registrations,
            circuits,
            consumers,
            dead_letters,
            instances,
            now: OffsetDateTime::now_utc(),
        })
    }

    /// Each subscription's consumer counts, by consumer name; a consumer no dispatcher has
    /// made yet is absent.
    async fn consumers(
        &self,
        registrations: &[Registration],
    ) -> Result<HashMap<String, ConsumerCounts>, ApiError> {
        let events = self
            .js
            .get_stream(&self.streams.events.name)
            .await
            .map_err(|e| ApiError::unavailable(format!("cannot open the events stream: {e}")))?;
        let mut counts = HashMap::new();
        for registration in registrations {
            for subscription in &registration.manifest.subscriptions {
                let name = consumer_name(registration.plugin_id(), subscription.name.as_str());
                if let Ok(info) = events.consumer_info(&name).await {
                    counts.insert(
                        name,
                        ConsumerCounts {
                            backlog: info.num_pending,
                            under_way: info.num_ack_pending as u64,
                            redelivered: info.num_redelivered as u64,
                            delivered: info.delivered.consumer_sequence,
                        },
                    );
                }
            }
        }
        Ok(counts)
    }

    /// How many dead letters each plugin has: the dead-letter stream's count per subject.
    async fn dead_letter_counts(
        &self,
        only: Option<&PluginId>,
    ) -> Result<HashMap<PluginId, u64>, ApiError> {
        let unavailable = |e: &dyn std::fmt::Display| {
            ApiError::unavailable(format!("cannot count dead letters: {e}"))
        };
        let stream = self
            .js
            .get_stream(&self.streams.dead_letters.name)
            .await
            .map_err(|e| unavailable(&e))?;
        let mut subjects = stream
            .info_with_subjects(self.namespace.dead_letter_filter(only))
            .await
            .map_err(|e| unavailable(&e))?;
        let mut counts = HashMap::new();
        while let Some(entry) = subjects.next().await {
            let (subject, count) = entry.map_err(|e| unavailable(&e))?;
            if let Some(parsed) = DeadLetterSubject::parse(&self.namespace, &subject) {
                *counts.entry(parsed.plugin).or_default() += count as u64;
            }
        }
        Ok(counts)
    }

    fn summaries(&self, readings: &Readings) -> Vec<PluginSummary> {
        readings
            .registrations
            .iter()
            .map(|registration| self.summary(registration, readings))
            .collect()
    }

    fn summary(&self, registration: &Registration, readings: &Readings) -> PluginSummary {
        let plugin = registration.plugin_id();
        let info = &registration.manifest.plugin;
        let mut made = false;
        let mut totals = ConsumerCounts::default();
        for subscription in &registration.manifest.subscriptions {
            if let Some(counts) = readings
                .consumers
                .get(&consumer_name(plugin, subscription.name.as_str()))
            {
                made = true;
                totals.backlog += counts.backlog;
                totals.under_way += counts.under_way;
                totals.delivered += counts.delivered;
            }
        }
        let dead_letters = readings.dead_letters.get(plugin).copied().unwrap_or(0);
        let (throughput, failures) = self.rates(plugin, totals.delivered, dead_letters);
        let (tenants, all_tenants) = match &registration.tenants {
            TenantScope::All => (None, true),
            TenantScope::Only(tenants) => (
                Some(tenants.iter().map(ToString::to_string).collect()),
                false,
            ),
        };
        PluginSummary {
            id: info.id.to_string(),
            version: info.version.to_string(),
            description: info.description.clone(),
            state: state_name(registration),
            enabled: registration.enabled,
            pending_upgrade: registration
                .pending_upgrade
                .as_ref()
                .map(|u| u.manifest.plugin.version.to_string()),
            failure: registration
                .failure
                .as_ref()
                .map(|f| json!({ "reason": f.reason, "since": rfc3339(f.since), "by": f.by })),
            tenants,
            all_tenants,
            subscriptions: registration
                .manifest
                .subscriptions
                .iter()
                .map(|s| s.name.to_string())
                .collect(),
            instances: readings
                .instances
                .iter()
                .filter(|r| r.plugin == plugin.as_str() && r.state == InstanceState::Running)
                .count(),
            circuit: circuit(&readings.circuits, plugin, None, readings.now),
            backlog: made.then_some(totals.backlog),
            under_way: made.then_some(totals.under_way),
            dead_letters,
            throughput,
            failures,
        }
    }

    /// Deliveries and dead letters per second since the previous reading of `plugin`.
    fn rates(
        &self,
        plugin: &PluginId,
        delivered: u64,
        dead_letters: u64,
    ) -> (Option<f64>, Option<f64>) {
        let now = Sample {
            at: Instant::now(),
            delivered,
            dead_letters,
        };
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let previous = samples.insert(plugin.clone(), now);
        let Some(previous) = previous else {
            return (None, None);
        };
        let seconds = now.at.duration_since(previous.at).as_secs_f64();
        if seconds < 0.05 {
            // Two readings this close say nothing about a rate; keep the older one.
            samples.insert(plugin.clone(), previous);
            return (None, None);
        }
        let per_second = |now: u64, then: u64| Some(now.saturating_sub(then) as f64 / seconds);
        (
            per_second(delivered, previous.delivered),
            per_second(dead_letters, previous.dead_letters),
        )
    }
}

/// The lifecycle state as the API names it: `pending_approval`, `enabled`, `disabled`,
/// `failed`.
pub(crate) fn state_name(registration: &Registration) -> String {
    match serde_json::to_value(registration.state()) {
        Ok(Value::String(name)) => name,
        _ => registration.state().to_string(),
    }
}

/// The tenants of a scope: a list, or null for every tenant.
fn tenant_list(scope: &TenantScope) -> Option<Vec<String>> {
    match scope {
        TenantScope::All => None,
        TenantScope::Only(tenants) => Some(tenants.iter().map(ToString::to_string).collect()),
    }
}

/// What waits for approval in `registration`, if anything.
fn approval(registration: &Registration) -> Option<Value> {
    let tenants = tenant_list(&registration.tenants);
    if let Some(upgrade) = &registration.pending_upgrade {
        let asks = Requested::of(&upgrade.manifest, &registration.tenants);
        let beyond = match &registration.approval {
            Some(_) => asks.beyond(&registration.approved_rights()),
            None => asks.describe(),
        };
        return Some(json!({
            "plugin": registration.plugin_id().as_str(),
            "kind": "upgrade",
            "version": upgrade.manifest.plugin.version.to_string(),
            "from": registration.manifest.plugin.version.to_string(),
            "tenants": tenants,
            "asks": asks.describe(),
            "beyond": beyond,
            "proposed_at": rfc3339(upgrade.proposed_at),
        }));
    }
    registration.awaiting_approval.then(|| {
        json!({
            "plugin": registration.plugin_id().as_str(),
            "kind": "install",
            "version": registration.manifest.plugin.version.to_string(),
            "from": null,
            "tenants": tenants,
            "asks": Requested::of(&registration.manifest, &registration.tenants).describe(),
            "beyond": Vec::<String>::new(),
            "proposed_at": rfc3339(registration.registered_at),
        })
    })
}

/// The worst circuit of `plugin` (of one subscription, or all) among the dispatchers that are
/// not presumed gone.
fn circuit(
    reports: &[SeenReport],
    plugin: &PluginId,
    subscription: Option<&str>,
    now: OffsetDateTime,
) -> Option<&'static str> {
    worst(
        reports
            .iter()
            .filter(|r| &r.report.plugin == plugin && !r.is_stale(now))
            .filter(|r| subscription.is_none_or(|s| r.report.subscription == s))
            .map(|r| r.report.state),
    )
    .map(|state| state.name())
}

/// A time as RFC 3339.
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}
