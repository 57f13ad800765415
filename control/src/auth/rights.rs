//! What one plugin may do on the bus, and the NATS permissions that say so.
//!
//! The permissions are static lists: no response permission (`allow_responses`) is ever
//! given. nats-server grants a response right for the reply subject of *every* message a
//! connection receives, and checks it only after the allow and deny lists refused a publish,
//! so a plugin that can send itself a message (its own inbox, a channel it sends and
//! receives, a colluding plugin) could name any subject as the reply and then publish there.
//! Instead each kind of answer has a subject space of its own that only the one who waits
//! for it subscribes to: deliveries are answered under `_SY_REPLY.{prefix}.{plugin}.…`
//! (the dispatcher listens), channel requests under
//! `_SY_CHREPLY.{prefix}.{tenant}.{channel}.{sender}.…` (the sender listens).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use switchyard_schemas::{
    ChannelName, Limits, Namespace, OperationName, PluginId, ServiceName, Tenant,
};

use super::jwt::Permission;
use crate::registry::{Registration, TenantScope};

/// Subjects no plugin may publish or subscribe to, whatever its grants: the JetStream,
/// key-value and object-store APIs, the system account's subjects, and the inboxes of trusted
/// clients. The allow lists already leave them out; the deny list keeps them out should a
/// grant ever be written too wide.
const ALWAYS_DENIED: &[&str] = &["$JS.>", "$JSC.>", "$KV.>", "$O.>", "$SYS.>", "_INBOX.>"];

/// A plugin's rights: its tenants, the channels its approved manifest grants and its limits.
/// Derived from its registration; this is also what a worker is told when it asks the control
/// plane (`{prefix}.control.rights.{plugin}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRights {
    /// The plugin.
    pub plugin: PluginId,
    /// The tenants whose events and channel messages it may see.
    pub tenants: TenantScope,
    /// Channels it may publish to (and send requests on).
    pub send: Vec<ChannelName>,
    /// Channels it may receive from (and answer requests on).
    pub receive: Vec<ChannelName>,
    /// Its quotas per connection, from its manifest's `[limits]` (the defaults when an answer
    /// without them is read).
    #[serde(default)]
    pub limits: Limits,
    /// The operations of other plugins it may call: those whose approved `callers` name it,
    /// for the tenants it, the other plugin and the operation share.
    #[serde(default)]
    pub calls: Vec<CallGrant>,
}

/// One operation a plugin may call, for one tenant or every tenant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CallGrant {
    /// The plugin that answers it.
    pub plugin: PluginId,
    /// The operation.
    pub operation: OperationName,
    /// The tenant it may be called for; `None`: every tenant.
    pub tenant: Option<Tenant>,
}

/// The tenants all of `scopes` share (`None` in a list: every tenant): `[None]` when none of
/// them is restricted, else each tenant every restricted one lists.
fn shared_tenants(scopes: &[Option<Vec<&Tenant>>]) -> Vec<Option<Tenant>> {
    let mut restricted = scopes.iter().flatten();
    let Some(first) = restricted.next() else {
        return vec![None];
    };
    let rest: Vec<&Vec<&Tenant>> = restricted.collect();
    first
        .iter()
        .filter(|tenant| rest.iter().all(|other| other.contains(tenant)))
        .map(|tenant| Some((*tenant).clone()))
        .collect()
}

/// The operations of `registrations` whose callers `allows` (given the plugin that answers
/// them), for the tenants `tenants`, the answering plugin and the operation share. A
/// registration waiting for its first approval grants nothing.
fn granted_calls(
    tenants: &TenantScope,
    registrations: &[Registration],
    allows: impl Fn(&PluginId, &switchyard_schemas::Callers) -> bool,
) -> Vec<CallGrant> {
    let mut calls = Vec::new();
    for target in registrations {
        if target.awaiting_approval {
            continue;
        }
        for operation in &target.manifest.operations {
            if !allows(target.plugin_id(), &operation.callers) {
                continue;
            }
            let shared = shared_tenants(&[
                scope_tenants(tenants),
                scope_tenants(&target.tenants),
                operation
                    .callers
                    .tenants
                    .as_ref()
                    .map(|t| t.iter().collect()),
            ]);
            calls.extend(shared.into_iter().map(|tenant| CallGrant {
                plugin: target.plugin_id().clone(),
                operation: operation.name.clone(),
                tenant,
            }));
        }
    }
    calls.sort();
    calls
}

/// The subject a caller of `kind` and `id` may publish a granted call on.
fn call_grant_subject(namespace: &Namespace, grant: &CallGrant, kind: &str, id: &str) -> String {
    format!(
        "{}.op.{}.{}.{}.{kind}.{id}",
        namespace.prefix(),
        grant.tenant.as_ref().map_or("*", Tenant::as_str),
        grant.plugin,
        grant.operation
    )
}

/// A service login's rights: the events it may publish (its tenants') and the operations it
/// may call. Derived from its login and every registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRights {
    /// The service.
    pub service: ServiceName,
    /// Its tenants.
    pub tenants: TenantScope,
    /// The operations it may call: those allowing services, in the tenants it shares with
    /// them.
    pub calls: Vec<CallGrant>,
}

impl ServiceRights {
    /// The rights of `service` serving `tenants`, with every registration.
    pub fn of(service: ServiceName, tenants: TenantScope, registrations: &[Registration]) -> Self {
        let calls = granted_calls(&tenants, registrations, |_, callers| callers.services);
        Self {
            service,
            tenants,
            calls,
        }
    }

    /// The NATS permissions of its connections: publish its tenants' events and its granted
    /// calls (under its own name); its own inbox, `_SY_SERVICE.{prefix}.{name}.>`, to
    /// subscribe and publish; nothing else, and never the always-denied subjects. The limits
    /// in its JWT are the defaults of a plugin's.
    pub fn permissions(&self, namespace: &Namespace) -> Permissions {
        let denied: Vec<String> = ALWAYS_DENIED.iter().map(|s| (*s).to_owned()).collect();
        let inbox = format!("{}.>", namespace.service_inbox_prefix(&self.service));
        let mut publish = vec![inbox.clone()];
        match &self.tenants {
            TenantScope::All => publish.push(format!("{}.events.*.>", namespace.prefix())),
            TenantScope::Only(tenants) => publish.extend(
                tenants
                    .iter()
                    .map(|tenant| format!("{}.events.{tenant}.>", namespace.prefix())),
            ),
        }
        publish.extend(
            self.calls.iter().map(|grant| {
                call_grant_subject(namespace, grant, "service", self.service.as_str())
            }),
        );
        Permissions {
            publish: Permission {
                allow: publish,
                deny: denied.clone(),
            },
            subscribe: Permission {
                allow: vec![inbox],
                deny: denied,
            },
            limits: Limits::default(),
        }
    }
}

fn scope_tenants(scope: &TenantScope) -> Option<Vec<&Tenant>> {
    match scope {
        TenantScope::All => None,
        TenantScope::Only(tenants) => Some(tenants.iter().collect()),
    }
}

impl PluginRights {
    /// The rights a registration grants.
    pub fn of(registration: &Registration) -> Self {
        let manifest = &registration.manifest;
        Self {
            plugin: manifest.plugin.id.clone(),
            tenants: registration.tenants.clone(),
            send: manifest.channels.send.clone(),
            receive: manifest.channels.receive.clone(),
            limits: manifest.limits,
            calls: Vec::new(),
        }
    }

    /// The same rights with the operations `registrations` (every registered plugin) let it
    /// call. A registration waiting for its first approval grants nothing; an approved one
    /// grants what its approved manifest says, whatever its state (a disabled plugin's calls
    /// find no dispatcher).
    #[must_use]
    pub fn with_calls(mut self, registrations: &[Registration]) -> Self {
        let me = self.plugin.clone();
        self.calls = granted_calls(&self.tenants, registrations, |target, callers| {
            *target != me && callers.plugins.contains(&me)
        });
        self
    }

    /// The tenants as subject tokens: each one, or `None` (the `*` wildcard) for all.
    fn tenant_tokens(&self) -> Vec<Option<&Tenant>> {
        match &self.tenants {
            TenantScope::All => vec![None],
            TenantScope::Only(tenants) => tenants.iter().map(Some).collect(),
        }
    }

    /// One subject per (channel, tenant) of `channels`, built by `subject`.
    fn per_channel_and_tenant(
        &self,
        channels: &[ChannelName],
        subject: impl Fn(Option<&Tenant>, &ChannelName) -> String,
    ) -> Vec<String> {
        let tenants = self.tenant_tokens();
        channels
            .iter()
            .flat_map(|channel| tenants.iter().map(|tenant| subject(*tenant, channel)))
            .collect()
    }

    /// The NATS permissions of the plugin's connections:
    ///
    /// - subscribe: its delivery subject, its own inbox, its `receive` channels from any
    ///   sender, and the answers to its own requests on its `send` channels;
    /// - publish: its hello and rights subjects, its own inbox, answers to its deliveries,
    ///   its `send` channels under its own id, and answers to requests on its `receive`
    ///   channels;
    /// - all channel subjects for its tenants only;
    /// - no response permission, and never the JetStream, key-value, object-store or system
    ///   APIs, nor trusted clients' inboxes;
    /// - its limits.
    pub fn permissions(&self, namespace: &Namespace) -> Permissions {
        let denied: Vec<String> = ALWAYS_DENIED.iter().map(|s| (*s).to_owned()).collect();
        let me = &self.plugin;
        let inbox = format!("{}.>", namespace.plugin_inbox_prefix(me));
        let mut subscribe = vec![
            namespace.delivery(me),
            namespace.call_delivery(me),
            inbox.clone(),
        ];
        subscribe.extend(
            self.per_channel_and_tenant(&self.receive, |tenant, channel| {
                namespace.channel_filter(tenant, channel, None)
            }),
        );
        subscribe.extend(self.per_channel_and_tenant(&self.send, |tenant, channel| {
            namespace.channel_reply_filter(tenant, channel, Some(me))
        }));
        // Its own inbox too: only it can subscribe there, and a message to itself is how a
        // client learns that the server has processed everything it sent before (the SDK
        // checks a channel publish that way).
        let mut publish = vec![
            namespace.worker_hello(me),
            namespace.plugin_rights(me),
            inbox,
            namespace.delivery_reply_grant(me),
        ];
        publish.extend(self.per_channel_and_tenant(&self.send, |tenant, channel| {
            namespace.channel_filter(tenant, channel, Some(me))
        }));
        publish.extend(
            self.per_channel_and_tenant(&self.receive, |tenant, channel| {
                namespace.channel_reply_filter(tenant, channel, None)
            }),
        );
        // Calls under its own id only: the dispatcher reads the caller from the subject.
        publish.extend(
            self.calls
                .iter()
                .map(|grant| call_grant_subject(namespace, grant, "plugin", me.as_str())),
        );
        Permissions {
            publish: Permission {
                allow: publish,
                deny: denied.clone(),
            },
            subscribe: Permission {
                allow: subscribe,
                deny: denied,
            },
            limits: self.limits,
        }
    }
}

/// The NATS permissions and limits of one plugin's connections, as written into its user JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub(crate) publish: Permission,
    pub(crate) subscribe: Permission,
    pub(crate) limits: Limits,
}

impl Permissions {
    /// Subjects it may publish to.
    pub fn publish_allowed(&self) -> &[String] {
        &self.publish.allow
    }

    /// Subjects it may subscribe to.
    pub fn subscribe_allowed(&self) -> &[String] {
        &self.subscribe.allow
    }

    /// Subjects denied whatever else is allowed.
    pub fn denied(&self) -> &[String] {
        &self.publish.deny
    }

    /// The limits written into the user JWT (`subs`, `payload`).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A short digest of these permissions, the limits in their JWT and the credential they
    /// were granted to: two connections with the same fingerprint have the same rights. It is
    /// part of the name the server shows for a plugin's connection, so that the control plane
    /// can tell stale connections (older rights or limits, or a rotated credential) from
    /// current ones. `max_connections` and `max_bytes_per_second` are left out: they are not in
    /// the JWT, the quota checks read them afresh, and a change of them replaces nothing.
    pub fn fingerprint(&self, credential_id: &str) -> String {
        let mut hash = Sha256::new();
        for list in [
            &self.publish.allow,
            &self.publish.deny,
            &self.subscribe.allow,
            &self.subscribe.deny,
        ] {
            for subject in list {
                hash.update(subject.as_bytes());
                hash.update([0]);
            }
            hash.update([1]);
        }
        hash.update(self.limits.max_subscriptions.get().to_be_bytes());
        hash.update(self.limits.max_payload.get().to_be_bytes());
        hash.update(credential_id.as_bytes());
        data_encoding::HEXLOWER.encode(&hash.finalize()[..6])
    }
}

/// The name a service's connection gets: `service:{name}:{fingerprint}`.
pub(crate) fn service_connection_name(service: &ServiceName, fingerprint: &str) -> String {
    format!("service:{service}:{fingerprint}")
}

/// The name a plugin's connection gets: `plugin:{id}:{fingerprint}`. nats-server shows it as
/// the connection's user (`authorized_user` in CONNZ).
pub(crate) fn connection_name(plugin: &PluginId, fingerprint: &str) -> String {
    format!("plugin:{plugin}:{fingerprint}")
}

/// Reads a [`service_connection_name`] back; `None` for any other user name.
pub(crate) fn parse_service_connection_name(name: &str) -> Option<(ServiceName, &str)> {
    let (service, fingerprint) = name.strip_prefix("service:")?.rsplit_once(':')?;
    Some((ServiceName::new(service).ok()?, fingerprint))
}

/// Reads a [`connection_name`] back; `None` for any other user name.
pub(crate) fn parse_connection_name(name: &str) -> Option<(PluginId, &str)> {
    let (plugin, fingerprint) = name.strip_prefix("plugin:")?.rsplit_once(':')?;
    Some((PluginId::new(plugin).ok()?, fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_schemas::Manifest;

    fn registration(tenants: TenantScope) -> Registration {
        registration_with(tenants, "")
    }

    /// The test plugin's registration, with `limits` as its `[limits]` table.
    fn registration_with(tenants: TenantScope, limits: &str) -> Registration {
        let manifest = Manifest::from_toml_str(&format!(
            r#"
            [plugin]
            id = "audit"
            version = "1.0.0"
            core = "*"
            [[subscriptions]]
            name = "orders"
            events = ["order.*"]
            policy = {{ timeout = "5m" }}
            [channels]
            send = ["alerts"]
            receive = ["alerts", "audit"]
            [limits]
            {limits}
            "#,
        ))
        .unwrap();
        Registration::new(manifest, tenants)
    }

    #[test]
    fn a_tenant_scoped_plugin_gets_its_own_subjects_only() {
        let tenants =
            TenantScope::only([Tenant::new("acme").unwrap(), Tenant::new("globex").unwrap()])
                .unwrap();
        let rights = PluginRights::of(&registration(tenants));
        let permissions = rights.permissions(&Namespace::default());
        assert_eq!(
            permissions.subscribe_allowed(),
            [
                "switchyard.deliver.audit",
                "switchyard.call.audit",
                "_SY_INBOX.switchyard.audit.>",
                "switchyard.channel.acme.alerts.*",
                "switchyard.channel.globex.alerts.*",
                "switchyard.channel.acme.audit.*",
                "switchyard.channel.globex.audit.*",
                "_SY_CHREPLY.switchyard.acme.alerts.audit.*",
                "_SY_CHREPLY.switchyard.globex.alerts.audit.*",
            ]
        );
        assert_eq!(
            permissions.publish_allowed(),
            [
                "switchyard.control.hello.audit",
                "switchyard.control.rights.audit",
                "_SY_INBOX.switchyard.audit.>",
                "_SY_REPLY.switchyard.audit.>",
                "switchyard.channel.acme.alerts.audit",
                "switchyard.channel.globex.alerts.audit",
                "_SY_CHREPLY.switchyard.acme.alerts.*.*",
                "_SY_CHREPLY.switchyard.globex.alerts.*.*",
                "_SY_CHREPLY.switchyard.acme.audit.*.*",
                "_SY_CHREPLY.switchyard.globex.audit.*.*",
            ]
        );
        for denied in ["$JS.>", "$KV.>", "$SYS.>", "_INBOX.>"] {
            assert!(permissions.denied().contains(&denied.to_owned()));
        }
    }

    /// A plugin `pricing` offering `quote` to `audit`, for `tenants` of the operation.
    fn pricing(plugin_tenants: TenantScope, operation_tenants: &str) -> Registration {
        let manifest = Manifest::from_toml_str(&format!(
            r#"
            [plugin]
            id = "pricing"
            version = "1.0.0"
            core = "*"
            [[operations]]
            name = "quote"
            request = {{ type = "quote.request", version = "1.0.0" }}
            response = {{ type = "quote.response", version = "1.0.0" }}
            callers = {{ plugins = ["audit", "shop"] {operation_tenants} }}
            [[operations]]
            name = "internal"
            request = {{ type = "quote.request", version = "1.0.0" }}
            response = {{ type = "quote.response", version = "1.0.0" }}
            "#,
        ))
        .unwrap();
        Registration::new(manifest, plugin_tenants)
    }

    #[test]
    fn a_plugin_may_call_only_what_others_grant_it_in_shared_tenants_under_its_own_id() {
        let only = |names: &[&str]| {
            TenantScope::only(names.iter().map(|n| Tenant::new(*n).unwrap())).unwrap()
        };
        let ns = Namespace::default();
        let calls = |caller: TenantScope, target: Registration| {
            let rights = PluginRights::of(&registration(caller)).with_calls(&[target]);
            let permissions = rights.permissions(&ns);
            permissions
                .publish_allowed()
                .iter()
                .filter(|s| s.starts_with("switchyard.op."))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            calls(TenantScope::All, pricing(TenantScope::All, "")),
            ["switchyard.op.*.pricing.quote.plugin.audit"]
        );
        assert_eq!(
            calls(
                only(&["acme", "globex"]),
                pricing(only(&["globex", "initech"]), "")
            ),
            ["switchyard.op.globex.pricing.quote.plugin.audit"]
        );
        assert_eq!(
            calls(
                TenantScope::All,
                pricing(TenantScope::All, r#", tenants = ["acme"]"#)
            ),
            ["switchyard.op.acme.pricing.quote.plugin.audit"]
        );
        assert!(calls(
            only(&["globex"]),
            pricing(TenantScope::All, r#", tenants = ["acme"]"#)
        )
        .is_empty());
        let mut waiting = pricing(TenantScope::All, "");
        waiting.awaiting_approval = true;
        assert!(
            calls(TenantScope::All, waiting).is_empty(),
            "an unapproved manifest grants nothing"
        );
        let before = PluginRights::of(&registration(TenantScope::All)).permissions(&ns);
        let after = PluginRights::of(&registration(TenantScope::All))
            .with_calls(&[pricing(TenantScope::All, "")])
            .permissions(&ns);
        assert_ne!(
            before.fingerprint("c"),
            after.fingerprint("c"),
            "a grant replaces connections"
        );
    }

    #[test]
    fn an_all_tenants_plugin_gets_channel_wildcards() {
        let rights = PluginRights::of(&registration(TenantScope::All));
        let permissions = rights.permissions(&Namespace::new("staging").unwrap());
        assert!(permissions
            .subscribe_allowed()
            .contains(&"staging.channel.*.audit.*".to_owned()));
        assert!(permissions
            .publish_allowed()
            .contains(&"staging.channel.*.alerts.audit".to_owned()));
    }

    #[test]
    fn fingerprints_change_with_rights_and_credentials_only() {
        let ns = Namespace::default();
        let all = PluginRights::of(&registration(TenantScope::All)).permissions(&ns);
        let acme = PluginRights::of(&registration(
            TenantScope::only([Tenant::new("acme").unwrap()]).unwrap(),
        ))
        .permissions(&ns);
        assert_eq!(all.fingerprint("c1"), all.clone().fingerprint("c1"));
        assert_ne!(all.fingerprint("c1"), acme.fingerprint("c1"));
        assert_ne!(all.fingerprint("c1"), all.fingerprint("c2"));

        // Limits are part of the rights: changing either replaces live connections.
        for limits in ["max_subscriptions = 999", "max_payload = \"512KiB\""] {
            let limited =
                PluginRights::of(&registration_with(TenantScope::All, limits)).permissions(&ns);
            assert_eq!(limited.publish_allowed(), all.publish_allowed());
            assert_eq!(limited.subscribe_allowed(), all.subscribe_allowed());
            assert_ne!(limited.fingerprint("c1"), all.fingerprint("c1"), "{limits}");
        }
        // The limits that are not in the JWT are not in the fingerprint.
        let plugin_wide = PluginRights::of(&registration_with(
            TenantScope::All,
            "max_connections = 1\nmax_bytes_per_second = \"1KiB\"",
        ))
        .permissions(&ns);
        assert_eq!(plugin_wide.fingerprint("c1"), all.fingerprint("c1"));
        // Writing out the defaults changes nothing.
        let written = PluginRights::of(&registration_with(
            TenantScope::All,
            "max_subscriptions = 1000\nmax_payload = \"1MiB\"",
        ))
        .permissions(&ns);
        assert_eq!(written.fingerprint("c1"), all.fingerprint("c1"));

        let plugin = PluginId::new("audit").unwrap();
        let name = connection_name(&plugin, &all.fingerprint("c1"));
        assert_eq!(
            parse_connection_name(&name),
            Some((plugin, all.fingerprint("c1").as_str()))
        );
        assert_eq!(parse_connection_name("dispatcher"), None);
    }

    #[test]
    fn rights_travel_as_json() {
        let rights = PluginRights::of(&registration_with(
            TenantScope::All,
            "max_subscriptions = 5\nmax_payload = \"2KiB\"",
        ));
        let json = serde_json::to_value(&rights).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "plugin": "audit", "tenants": "all", "send": ["alerts"],
                "receive": ["alerts", "audit"],
                "limits": {"max_subscriptions": 5, "max_payload": 2048,
                    "max_connections": 8, "max_bytes_per_second": 8_388_608},
                "calls": []
            })
        );
        assert_eq!(
            serde_json::from_value::<PluginRights>(json).unwrap(),
            rights
        );
    }

    #[test]
    fn rights_without_limits_read_with_the_defaults() {
        let json = serde_json::json!({
            "plugin": "audit", "tenants": "all", "send": [], "receive": []
        });
        let rights = serde_json::from_value::<PluginRights>(json).unwrap();
        assert_eq!(rights.limits, Limits::default());
    }

    #[test]
    fn the_limits_are_those_of_the_manifest() {
        let rights = PluginRights::of(&registration_with(
            TenantScope::All,
            "max_subscriptions = 7\nmax_payload = 4096",
        ));
        let limits = rights.permissions(&Namespace::default()).limits();
        assert_eq!(
            (limits.max_subscriptions.get(), limits.max_payload.get()),
            (7, 4096)
        );
        let defaults = PluginRights::of(&registration(TenantScope::All))
            .permissions(&Namespace::default())
            .limits();
        assert_eq!(defaults, Limits::default());
    }
}
