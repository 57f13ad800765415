//! The one implementation of the management API: who is calling ([`Management::authenticate`]),
//! whether their role allows the call, the call itself, and its audit record
//! ([`Management::call`]). The HTTP routes and the NATS service only translate to and from it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::{json, Value};
use switchyard_bus::Bus;
use switchyard_bus::Calls;
use switchyard_control::audit::{Action, Actor, AuditFilter, AuditLog, Auditor};
use switchyard_control::auth::operators::{Identity, OperatorStore};
use switchyard_control::auth::{AuthError, CredentialStore, ServiceStore};
use switchyard_control::lifecycle::events;
use switchyard_control::lifecycle::operate::{Operator, Outcome};
use switchyard_control::package::{PackageStore, TrustStore, TrustedKeys};
use switchyard_control::registry::Registry;
use switchyard_control::registry::TenantScope;
use switchyard_control::settings::edit::parse_assignment;
use switchyard_control::settings::{Secret, SettingChange};
use switchyard_dispatcher::redrive::json::{RecordJson, SummaryJson};
use switchyard_dispatcher::redrive::{DeadLetterFilter, DeadLetters, Selection};
use switchyard_schemas::call::{CallOptions, Caller};
use switchyard_schemas::{ContentType, Namespace};

use crate::error::{ApiError, ErrorKind};
use crate::request::{limit, plugin_id, Install, InstallSource, Request};
use crate::views::{rfc3339, Views};
use switchyard_control::lifecycle::install::{
    Candidate, InstallOptions, PackageAllowances, PackageChoice,
};

/// How a call reached the API; part of the actor in its audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The HTTP API (and the web console).
    Http,
    /// The NATS micro service.
    Nats,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Nats => "nats",
        }
    }
}

/// At most one record of refused unauthenticated calls per transport in this time; the
/// others are counted into the next one, so that anyone who can reach the port cannot flood
/// the audit stream (and push older records out of it).
const REFUSAL_RECORD_EVERY: Duration = Duration::from_secs(1);

/// The management API of one deployment. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Management {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bus: Bus,
    client: async_nats::Client,
    js: jetstream::Context,
    namespace: Namespace,
    audit: AuditLog,
    operators: OperatorStore,
    lifecycle: Operator,
    dead_letters: DeadLetters,
    views: Views,
    refusals: Mutex<RefusalThrottle>,
}

#[derive(Debug, Default)]
struct RefusalThrottle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Management {
    /// The management API over `bus` (connected with a trusted login, in its namespace).
    ///
    /// # Errors
    /// [`ApiError`] `unavailable` when the registry, the audit stream or the operators'
    /// bucket cannot be opened.
    pub async fn open(bus: &Bus) -> Result<Self, ApiError> {
        let js = bus.jetstream().clone();
        let namespace = bus.namespace().clone();
        let registry = Registry::open(&js, &namespace).await?;
        let audit = AuditLog::open(&js, &namespace).await?;
        let operators = OperatorStore::open(&js, &namespace).await?;
        let console = Auditor::new(audit.clone(), Actor::declared("switchyard console"));
        let lifecycle = Operator::new(
            js.clone(),
            namespace.clone(),
            registry.clone(),
            console,
            bus.publisher(events::SOURCE),
        );
        let dead_letters = DeadLetters::new(js.clone(), namespace.clone(), bus.streams());
        Ok(Self {
            inner: Arc::new(Inner {
                bus: bus.clone(),
                client: bus.client().clone(),
                js: js.clone(),
                namespace: namespace.clone(),
                audit,
                operators,
                lifecycle,
                dead_letters,
                views: Views::new(js, namespace, registry),
                refusals: Mutex::new(RefusalThrottle::default()),
            }),
        })
    }

    /// The operators' store.
    pub fn operators(&self) -> &OperatorStore {
        &self.inner.operators
    }

    /// Who `token` belongs to. A missing or unknown token is refused, and recorded as
    /// `api_refused` (at most once a second per transport, with a count of the others).
    ///
    /// # Errors
    /// `unauthenticated`; `unavailable` when the operators cannot be read.
    pub async fn authenticate(
        &self,
        token: Option<&str>,
        via: Transport,
        what: &str,
    ) -> Result<Identity, ApiError> {
        let found = match token {
            Some(token) => self.inner.operators.authenticate(token).await?,
            None => None,
        };
        if let Some(identity) = found {
            return Ok(identity);
        }
        let reason = if token.is_none() {
            "no operator token (send `Authorization: Bearer <token>`)"
        } else {
            "the token is not an operator's (unknown, replaced or removed)"
        };
        self.record_anonymous_refusal(via, what, reason).await?;
        Err(ApiError::new(ErrorKind::Unauthenticated, reason))
    }

    /// Records that a call by `identity` failed before it could be made (a body, path or
    /// query that cannot be read, a route that does not exist), and returns the error.
    pub async fn failed(
        &self,
        identity: &Identity,
        via: Transport,
        target: &str,
        error: ApiError,
    ) -> ApiError {
        let auditor = self.auditor_of(identity, via);
        let entry = auditor
            .entry(Action::ApiFailed, truncated(target))
            .detail(format!("{}: {}", error.kind.code(), error.message));
        if let Err(audit) = auditor.append(&entry).await {
            tracing::warn!(%audit, call = %target, "the record of a failed call was not stored");
        }
        error
    }

    /// Records a call refused before its token was looked at (a request from another site):
    /// as its operator's when the token is one, else as an anonymous refusal (throttled).
    /// Returns `error`.
    pub async fn refused(
        &self,
        token: Option<&str>,
        via: Transport,
        target: &str,
        error: ApiError,
    ) -> ApiError {
        let identity = match token {
            Some(token) => self
                .inner
                .operators
                .authenticate(token)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let recorded = match identity {
            Some(identity) => {
                let auditor = self.auditor_of(&identity, via);
                let entry = auditor
                    .entry(Action::ApiRefused, truncated(target))
                    .detail(format!("refused: {}", error.message));
                auditor.append(&entry).await.map(drop)
            }
            None => {
                self.record_anonymous_refusal(via, target, &error.message)
                    .await
            }
        };
        if let Err(audit) = recorded {
            tracing::warn!(%audit, call = %target, "the record of a refused call was not stored");
        }
        error
    }

    fn auditor_of(&self, identity: &Identity, via: Transport) -> Auditor {
        Auditor::new(
            self.inner.audit.clone(),
            Actor::declared(format!(
                "{} ({}) via {}",
                identity.name,
                identity.role,
                via.as_str()
            )),
        )
    }

    /// Records an anonymous refusal, at most once per [`REFUSAL_RECORD_EVERY`]; the next
    /// record counts the ones left out.
    async fn record_anonymous_refusal(
        &self,
        via: Transport,
        what: &str,
        reason: &str,
    ) -> Result<(), switchyard_control::audit::AuditError> {
        let suppressed = {
            let mut throttle = self
                .inner
                .refusals
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let due = throttle
                .last
                .is_none_or(|last| last.elapsed() >= REFUSAL_RECORD_EVERY);
            if due {
                throttle.last = Some(Instant::now());
                Some(std::mem::take(&mut throttle.suppressed))
            } else {
                throttle.suppressed += 1;
                None
            }
        };
        let Some(suppressed) = suppressed else {
            return Ok(());
        };
        let auditor = Auditor::new(
            self.inner.audit.clone(),
            Actor::declared(format!("anonymous via {}", via.as_str())),
        );
        let mut detail = format!("refused: {reason}");
        if suppressed > 0 {
            detail.push_str(&format!(
                " ({suppressed} more anonymous calls refused since the previous record)"
            ));
        }
        let entry = auditor
            .entry(Action::ApiRefused, truncated(what))
            .detail(detail);
        auditor.append(&entry).await.map(drop)
    }

    /// Makes `request` as `identity`: refused (and recorded) when the role does not allow it;
    /// else made, and recorded: a change by its own audit record, a read as `api_viewed`, a
    /// failure as `api_failed`. A read whose record cannot be stored is not answered.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn call(
        &self,
        identity: &Identity,
        via: Transport,
        request: Request,
    ) -> Result<Value, ApiError> {
        let auditor = self.auditor_of(identity, via);
        let target = request.target();
        let needed = request.role();
        if identity.role < needed {
            let error = ApiError::new(
                ErrorKind::Forbidden,
                format!(
                    "role {} may not `{}` (it needs {needed})",
                    identity.role,
                    request.verb()
                ),
            );
            let entry = auditor
                .entry(Action::ApiRefused, &target)
                .detail(format!("refused: {}", error.message));
            auditor.append(&entry).await?;
            return Err(error);
        }
        let read = request.is_read();
        match Box::pin(self.run(identity, &auditor, request)).await {
            Ok(answer) => {
                if read {
                    let entry = auditor.entry(Action::ApiViewed, &target);
                    auditor.append(&entry).await?;
                }
                Ok(answer)
            }
            Err(error) => {
                let entry = auditor.entry(Action::ApiFailed, &target).detail(format!(
                    "{}: {}",
                    error.kind.code(),
                    error.message
                ));
                // The call failed already; a record that cannot be stored is logged, and the
                // caller gets the call's own error.
                if let Err(audit) = auditor.append(&entry).await {
                    tracing::warn!(%audit, call = %target, "the record of a failed call was not stored");
                }
                Err(error)
            }
        }
    }

    /// The overview, for the live view (recorded once per viewer, when the stream opens).
    ///
    /// # Errors
    /// As [`Views::overview`].
    pub async fn overview(&self) -> Result<Value, ApiError> {
        self.inner.views.overview().await
    }

    async fn run(
        &self,
        identity: &Identity,
        auditor: &Auditor,
        request: Request,
    ) -> Result<Value, ApiError> {
        let inner = &*self.inner;
        let lifecycle = || inner.lifecycle.acting_as(auditor.clone());
        match request {
            Request::Whoami => Ok(json!({ "name": identity.name, "role": identity.role })),
            Request::Overview | Request::Live => inner.views.overview().await,
            Request::ListPlugins => inner.views.plugins().await,
            Request::ShowPlugin(plugin) => inner.views.plugin(&plugin).await,
            Request::Approve { plugin, disabled } => {
                outcome(&lifecycle().approve(&plugin, disabled).await?)
            }
            Request::Reject(plugin) => outcome(&lifecycle().reject(&plugin).await?),
            Request::Enable(plugin) => outcome(&lifecycle().set_enabled(&plugin, true).await?),
            Request::Disable(plugin) => outcome(&lifecycle().set_enabled(&plugin, false).await?),
            Request::Rollback { plugin, to } => outcome(&lifecycle().rollback(&plugin, to).await?),
            Request::RemovePlugin { plugin, cascade } => {
                outcome(&lifecycle().remove(&plugin, cascade).await?)
            }
            Request::IssueCredentials(plugin) => {
                if inner.lifecycle.registry().get(&plugin).await?.is_none() {
                    return Err(ApiError::new(
                        ErrorKind::NotFound,
                        format!("no plugin `{plugin}` is registered"),
                    ));
                }
                let credentials = CredentialStore::open(&inner.js, &inner.namespace).await?;
                match credentials.issue_audited(&plugin, auditor).await {
                    Ok(secret) => Ok(json!({
                        "plugin": plugin,
                        "secret": secret.expose(),
                        "message": format!(
                            "issued a new secret for {plugin}; give it to its workers as \
                             SWITCHYARD_PLUGIN_TOKEN (any earlier one no longer works)"
                        ),
                    })),
                    // The secret works, but the record of it is missing: it is not handed
                    // out; issuing again replaces it.
                    Err(AuthError::IssuedNotRecorded { audit, .. }) => {
                        Err(ApiError::unavailable(audit))
                    }
                    Err(other) => Err(other.into()),
                }
            }
            Request::RevokeCredentials(plugin) => {
                let credentials = CredentialStore::open(&inner.js, &inner.namespace).await?;
                let revoked = credentials.revoke_audited(&plugin, None, auditor).await?;
                Ok(json!({
                    "plugin": plugin,
                    "revoked": revoked,
                    "message": if revoked {
                        format!("revoked the credential of {plugin}")
                    } else {
                        format!("{plugin} had no credential")
                    },
                }))
            }
            Request::ShowSettings(plugin) => inner.views.settings(&plugin).await,
            Request::ChangeSettings { plugin, set, unset } => {
                let registration =
                    inner
                        .lifecycle
                        .registry()
                        .get(&plugin)
                        .await?
                        .ok_or_else(|| {
                            ApiError::new(
                                ErrorKind::NotFound,
                                format!("no plugin `{plugin}` is registered"),
                            )
                        })?;
                let mut changes = Vec::new();
                for (name, text) in set {
                    let (name, value) =
                        parse_assignment(&format!("{name}={text}"), &registration.manifest)
                            .map_err(ApiError::bad_request)?;
                    changes.push(SettingChange::Set(name, value));
                }
                changes.extend(unset.into_iter().map(SettingChange::Unset));
                outcome(&Box::pin(lifecycle().change_settings(&plugin, &changes)).await?)
            }
            Request::SetSecret {
                plugin,
                name,
                value,
            } => {
                let changes = [SettingChange::SetSecret(name, Secret::new(value))];
                outcome(&Box::pin(lifecycle().change_settings(&plugin, &changes)).await?)
            }
            Request::CallOperation {
                target,
                data,
                timeout,
                attempts,
            } => {
                let calls = Calls::new(
                    inner.client.clone(),
                    inner.namespace.clone(),
                    Caller::Operator(identity.name.to_string()),
                );
                let options = CallOptions {
                    timeout,
                    attempts,
                    version: None,
                };
                let body = serde_json::to_vec(&data).map_err(internal)?;
                let called = calls
                    .call_raw(
                        &target,
                        ContentType::Json,
                        body.into(),
                        &options,
                        async_nats::HeaderMap::new(),
                    )
                    .await;
                let (answer, outcome) = match called {
                    Ok(reply) => {
                        let response: Value = match reply.content_type {
                            ContentType::Json => serde_json::from_slice(&reply.body).ok(),
                            ContentType::MessagePack => rmp_serde::from_slice(&reply.body).ok(),
                        }
                        .unwrap_or(Value::Null);
                        (
                            json!({
                                "ok": true,
                                "response": response,
                                "attempts": reply.attempts,
                                "took_ms": reply.elapsed.as_secs_f64() * 1000.0,
                                "handled_ms": reply.handled_in.as_secs_f64() * 1000.0,
                            }),
                            format!("answered in {} attempts", reply.attempts),
                        )
                    }
                    Err(error) => (
                        json!({
                            "ok": false,
                            "error": {
                                "code": error.code.to_string(),
                                "status": error.kind.status(),
                                "reason": error.reason,
                                "retry_after_ms": error.retry_after.map(|after| after.as_millis() as u64),
                            },
                        }),
                        format!("failed: {}", error.code),
                    ),
                };
                let entry = auditor
                    .entry(
                        Action::OperationCalled,
                        format!("{}.{}", target.plugin, target.operation),
                    )
                    .detail(format!("for tenant {}: {outcome}", target.tenant));
                auditor.append(&entry).await?;
                Ok(answer)
            }
            Request::ListApprovals => inner.views.approvals().await,
            Request::ListDeadLetters(query) => {
                let limit = limit(query.limit);
                let plugin = query
                    .plugin
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .map(plugin_id)
                    .transpose()?;
                let tenant = query.tenant.filter(|t| !t.is_empty());
                if let Some(tenant) = &tenant {
                    switchyard_schemas::Tenant::new(tenant)
                        .map_err(|e| ApiError::bad_request(format!("bad tenant filter: {e}")))?;
                }
                let code = query.code.filter(|c| !c.is_empty());
                if let Some(code) = &code {
                    switchyard_schemas::delivery::ErrorCode::new(code)
                        .map_err(|e| ApiError::bad_request(format!("bad code filter: {e}")))?;
                }
                let filter = DeadLetterFilter {
                    plugin,
                    code,
                    since: None,
                    until: None,
                    // The tenant is matched here, so the stream is read to the end for it.
                    limit: tenant.is_none().then_some(limit + 1),
                };
                let mut found = inner.dead_letters.list(&filter).await?;
                if let Some(tenant) = &tenant {
                    found.retain(|letter| letter.tenant.as_str() == tenant);
                }
                let truncated = found.len() > limit;
                found.truncate(limit);
                let letters: Vec<SummaryJson> = found.iter().map(SummaryJson::of).collect();
                Ok(json!({ "dead_letters": letters, "truncated": truncated }))
            }
            Request::ShowDeadLetter(sequence) => {
                let record = inner.dead_letters.show(sequence).await?;
                Ok(serde_json::to_value(RecordJson::of(&record)).map_err(internal)?)
            }
            Request::Replay { plugin, sequences } => {
                let selection = if sequences.is_empty() {
                    Selection::all(plugin.clone())
                } else {
                    Selection::sequences(plugin.clone(), sequences)
                };
                let report = inner.dead_letters.replay(&selection, auditor).await?;
                Ok(json!({
                    "plugin": plugin,
                    "replayed": report.count(),
                    "event_sequences": report.event_sequences(),
                    "gone": report.gone,
                    "skipped": report.skipped,
                    "message": format!("replayed {} dead letters of {plugin}", report.count()),
                }))
            }
            Request::Purge {
                plugin,
                sequences,
                all,
            } => {
                let selection = if all {
                    Selection::all(plugin.clone())
                } else {
                    Selection::sequences(plugin.clone(), sequences)
                };
                let purged = inner.dead_letters.purge(&selection, auditor).await?;
                Ok(json!({
                    "plugin": plugin,
                    "purged": purged,
                    "message": format!("purged {purged} dead letters of {plugin}"),
                }))
            }
            Request::ListAudit(query) => {
                let action = query.action()?;
                let filter = AuditFilter {
                    action,
                    target: query.plugin.clone().filter(|p| !p.is_empty()),
                    ..AuditFilter::default()
                };
                let limit = limit(query.limit);
                let mut entries = inner.audit.list(&filter).await?;
                if action.is_none() && !query.include_reads {
                    entries.retain(|stored| stored.entry.action != Action::ApiViewed);
                }
                let newest: Vec<Value> = entries
                    .iter()
                    .rev()
                    .take(limit)
                    .map(|stored| {
                        json!({
                            "sequence": stored.sequence,
                            "at": rfc3339(stored.stored),
                            "actor": stored.entry.actor.name,
                            "action": stored.entry.action,
                            "target": stored.entry.target,
                            "detail": stored.entry.detail,
                            "before": stored.entry.before,
                            "after": stored.entry.after,
                        })
                    })
                    .collect();
                Ok(json!({ "entries": newest, "truncated": entries.len() > limit }))
            }
            Request::ListOperators => {
                let operators: Vec<Value> = inner
                    .operators
                    .list()
                    .await?
                    .iter()
                    .map(|login| {
                        json!({
                            "name": login.name,
                            "role": login.role,
                            "added_at": rfc3339(login.credential.issued_at),
                        })
                    })
                    .collect();
                Ok(json!({ "operators": operators }))
            }
            Request::AddOperator { name, role } => {
                refuse_self(identity, &name, "re-key")?;
                let token = inner.operators.add(&name, role, auditor).await?;
                Ok(json!({ "name": name, "role": role, "token": token.expose() }))
            }
            Request::ListTrust => {
                let keys = match TrustStore::open_existing(&inner.js, &inner.namespace).await? {
                    Some(store) => store.list().await?,
                    None => Vec::new(),
                };
                Ok(json!({ "keys": keys }))
            }
            Request::AddTrust { key, name } => {
                let store = TrustStore::open(&inner.js, &inner.namespace).await?;
                let new = store.add_audited(&key, &name, auditor).await?;
                let verb = if new { "trusted" } else { "renamed" };
                Ok(
                    json!({ "key": key, "name": name, "added": new, "message": format!("{verb} {key} as {name:?}") }),
                )
            }
            Request::RemoveTrust(key) => {
                let store = TrustStore::open(&inner.js, &inner.namespace).await?;
                if store.remove_audited(&key, auditor).await? {
                    Ok(
                        json!({ "key": key, "removed": true, "message": format!("no longer trusted: {key}") }),
                    )
                } else {
                    Err(ApiError::new(
                        ErrorKind::NotFound,
                        format!("{key} is not trusted"),
                    ))
                }
            }
            Request::Catalog => {
                let trust = match TrustStore::open_existing(&inner.js, &inner.namespace).await? {
                    Some(store) => store.trusted_keys().await?,
                    None => TrustedKeys::none(),
                };
                let store = PackageStore::open(&inner.js, &inner.namespace).await?;
                Ok(json!({ "packages": store.catalog(&trust).await? }))
            }
            Request::ListServices => {
                let services = ServiceStore::open(&inner.js, &inner.namespace).await?;
                let logins: Vec<Value> = services
                    .list()
                    .await?
                    .iter()
                    .map(|login| {
                        json!({
                            "name": login.name.as_str(),
                            "tenants": match &login.tenants {
                                TenantScope::All => None,
                                TenantScope::Only(t) => Some(t.iter().map(ToString::to_string).collect::<Vec<_>>()),
                            },
                            "issued_at": rfc3339(login.credential.issued_at),
                        })
                    })
                    .collect();
                Ok(json!({ "services": logins }))
            }
            Request::AddService { name, tenants } => {
                let services = ServiceStore::open(&inner.js, &inner.namespace).await?;
                let secret = match services.add(&name, tenants.clone(), auditor).await {
                    Ok(secret) => secret,
                    Err(AuthError::IssuedNotRecorded { audit, .. }) => {
                        // Stored but not recorded: the secret is not handed out; adding the
                        // service again issues a new one.
                        return Err(ApiError::unavailable(audit));
                    }
                    Err(other) => return Err(other.into()),
                };
                Ok(json!({
                    "name": name.as_str(),
                    "tenants": tenants.to_string(),
                    "user": format!("service:{name}"),
                    "inbox_prefix": inner.namespace.service_inbox_prefix(&name),
                    "secret": secret.expose(),
                    "message": format!("service {name} may act for {tenants}"),
                }))
            }
            Request::RemoveService(name) => {
                let services = ServiceStore::open(&inner.js, &inner.namespace).await?;
                if services.remove(&name, auditor).await? {
                    Ok(
                        json!({ "name": name.as_str(), "removed": true, "message": format!("removed service {name}: its secret no longer works") }),
                    )
                } else {
                    Err(ApiError::new(
                        ErrorKind::NotFound,
                        format!("there is no service {name}"),
                    ))
                }
            }
            Request::Install(install) => Box::pin(self.install(auditor, *install)).await,
            Request::PublishPackage { package, replace } => {
                crate::deploy::publish_package(
                    &inner.js,
                    &inner.namespace,
                    inner.lifecycle.registry(),
                    auditor,
                    package,
                    replace,
                )
                .await
            }
            Request::StreamsInfo => crate::deploy::streams_info(&inner.bus).await,
            Request::Provision(limits) => {
                Box::pin(crate::deploy::provision(&inner.bus, auditor, &limits)).await
            }
            Request::Explain { event_id, from } => {
                crate::deploy::explain(&inner.bus, &event_id, from).await
            }
            Request::Logs { plugin, lines } => {
                crate::deploy::logs(&inner.js, &inner.namespace, &plugin, lines).await
            }
            Request::PublishEvent(event) => {
                crate::deploy::publish_event(&inner.bus, auditor, &event).await
            }
            Request::RemoveOperator(name) => {
                refuse_self(identity, &name, "remove")?;
                if inner.operators.remove(&name, auditor).await? {
                    Ok(json!({ "name": name, "removed": true }))
                } else {
                    Err(ApiError::new(
                        ErrorKind::NotFound,
                        format!("no operator `{name}`"),
                    ))
                }
            }
        }
    }
}

impl Management {
    /// Installs or upgrades a plugin as `auditor`.
    async fn install(&self, auditor: &Auditor, install: Install) -> Result<Value, ApiError> {
        let operator = self.inner.lifecycle.acting_as(auditor.clone());
        let candidate = match install.source {
            InstallSource::Manifest { manifest, text } => {
                let label = format!("{} (manifest)", manifest.plugin.id);
                Candidate::from_manifest(*manifest, label, text)
            }
            InstallSource::Stored { plugin, version } => {
                let allow = PackageAllowances {
                    unsigned: install.allow_unsigned,
                    untrusted: install.allow_untrusted,
                };
                Box::pin(Candidate::from_package(
                    &self.inner.js,
                    &self.inner.namespace,
                    PackageChoice::Stored { plugin, version },
                    allow,
                    &auditor.actor().name,
                ))
                .await?
                .candidate
            }
        };
        let options = InstallOptions {
            tenants: install.tenants,
            allow_downgrade: install.allow_downgrade,
            approve: install.approve,
            upgrade_only: install.upgrade.is_some(),
        };
        outcome(&Box::pin(operator.install(&candidate, &options)).await?)
    }
}

/// Refuses an admin's call that would re-key or remove their own operator: the session in
/// use would end, and a new token would be shown to nobody.
fn refuse_self(
    identity: &Identity,
    name: &switchyard_control::auth::operators::OperatorName,
    what: &str,
) -> Result<(), ApiError> {
    if identity.name == *name {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!(
                "an operator cannot {what} themselves through the API (the session in use would \
                 end, and no admin might be left): ask another admin, or use `switchyard operators`"
            ),
        ));
    }
    Ok(())
}

/// A lifecycle verb's outcome as JSON.
fn outcome(outcome: &Outcome) -> Result<Value, ApiError> {
    Ok(json!({
        "plugin": outcome.plugin,
        "changed": outcome.changed,
        "message": outcome.message,
        "rights": outcome.rights,
        "also": outcome.also,
        "warnings": outcome.warnings,
        "state": outcome.registration.as_ref().map(crate::views::state_name),
    }))
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::Internal, error.to_string())
}

/// A target of at most 200 characters: what an anonymous caller sent is not stored whole.
fn truncated(what: &str) -> String {
    what.chars().take(200).collect()
}
