//! What one plugin may do on the bus, and the NATS permissions that say so.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use switchyard_schemas::{ChannelName, Namespace, PluginId, Tenant};

use super::jwt::{Permission, ResponsePermission};
use crate::registry::{Registration, TenantScope};

/// Subjects no plugin may publish or subscribe to, whatever its grants: the JetStream,
/// key-value and object-store APIs, the system account's subjects, and Switchyard's stored
/// subjects (events, dead letters, replays). The allow lists already leave them out; the deny
/// list keeps them out should a grant ever be written too wide.
const ALWAYS_DENIED: &[&str] = &["$JS.>", "$JSC.>", "$KV.>", "$O.>", "$SYS.>"];

/// How long a worker may take to answer a request it received, beyond the longest delivery
/// timeout of its subscriptions: the reply is still allowed then.
const REPLY_GRACE: Duration = Duration::from_secs(60);
/// The shortest reply window given (nats-server's own default).
const MIN_REPLY_WINDOW: Duration = Duration::from_secs(120);

/// A plugin's rights: its tenants and the channels its approved manifest grants. Derived from
/// its registration; this is also what a worker is told when it asks the control plane
/// (`{prefix}.control.rights.{plugin}`).
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
    /// How long after receiving a request (a delivery, a channel request) it may still reply.
    #[serde(with = "millis")]
    pub reply_window: Duration,
}

impl PluginRights {
    /// The rights a registration grants.
    pub fn of(registration: &Registration) -> Self {
        let manifest = &registration.manifest;
        let longest = manifest
            .subscriptions
            .iter()
            .map(|s| s.policy.timeout)
            .max()
            .unwrap_or_default();
        Self {
            plugin: manifest.plugin.id.clone(),
            tenants: registration.tenants.clone(),
            send: manifest.channels.send.clone(),
            receive: manifest.channels.receive.clone(),
            reply_window: (longest + REPLY_GRACE).max(MIN_REPLY_WINDOW),
        }
    }

    /// The channel subjects (or filters) of `channels` for the plugin's tenants.
    fn channel_subjects(&self, namespace: &Namespace, channels: &[ChannelName]) -> Vec<String> {
        let mut subjects = Vec::new();
        for channel in channels {
            match &self.tenants {
                TenantScope::All => subjects.push(namespace.channel_filter(None, channel)),
                TenantScope::Only(tenants) => subjects.extend(
                    tenants
                        .iter()
                        .map(|tenant: &Tenant| namespace.channel(tenant, channel)),
                ),
            }
        }
        subjects
    }

    /// The NATS permissions of the plugin's connections:
    ///
    /// - subscribe: its delivery subject, its own inbox, and its `receive` channels for its
    ///   tenants;
    /// - publish: its hello and rights subjects, its own inbox, and its `send` channels for
    ///   its tenants;
    /// - replies to requests it received (deliveries, channel requests), once each, within
    ///   [`reply_window`](Self::reply_window);
    /// - never the JetStream, key-value, object-store or system APIs.
    pub fn permissions(&self, namespace: &Namespace) -> Permissions {
        let denied: Vec<String> = ALWAYS_DENIED.iter().map(|s| (*s).to_owned()).collect();
        let inbox = format!("{}.>", namespace.plugin_inbox_prefix(&self.plugin));
        let mut subscribe = vec![namespace.delivery(&self.plugin), inbox.clone()];
        subscribe.extend(self.channel_subjects(namespace, &self.receive));
        // Its own inbox too: only it can subscribe there, and a message to itself is how a
        // client learns that the server has processed everything it sent before (the SDK
        // checks a channel publish that way).
        let mut publish = vec![
            namespace.worker_hello(&self.plugin),
            namespace.plugin_rights(&self.plugin),
            inbox,
        ];
        publish.extend(self.channel_subjects(namespace, &self.send));
        Permissions {
            publish: Permission {
                allow: publish,
                deny: denied.clone(),
            },
            subscribe: Permission {
                allow: subscribe,
                deny: denied,
            },
            reply_window: self.reply_window,
        }
    }
}

/// The NATS permissions of one plugin's connections, as written into its user JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub(crate) publish: Permission,
    pub(crate) subscribe: Permission,
    pub(crate) reply_window: Duration,
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

    /// The response permission: one reply per request received, within the reply window.
    pub(crate) fn responses(&self) -> ResponsePermission {
        ResponsePermission {
            max: 1,
            ttl: i64::try_from(self.reply_window.as_nanos()).unwrap_or(i64::MAX),
        }
    }

    /// A short digest of these permissions and of the credential they were granted to: two
    /// connections with the same fingerprint have the same rights. It is part of the name the
    /// server shows for a plugin's connection, so that the control plane can tell stale
    /// connections (older rights, or a rotated credential) from current ones.
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
        hash.update(self.reply_window.as_millis().to_le_bytes());
        hash.update(credential_id.as_bytes());
        data_encoding::HEXLOWER.encode(&hash.finalize()[..6])
    }
}

/// The name a plugin's connection gets: `plugin:{id}:{fingerprint}`. nats-server shows it as
/// the connection's user (`authorized_user` in CONNZ).
pub(crate) fn connection_name(plugin: &PluginId, fingerprint: &str) -> String {
    format!("plugin:{plugin}:{fingerprint}")
}

/// Reads a [`connection_name`] back; `None` for any other user name.
pub(crate) fn parse_connection_name(name: &str) -> Option<(PluginId, &str)> {
    let (plugin, fingerprint) = name.strip_prefix("plugin:")?.rsplit_once(':')?;
    Some((PluginId::new(plugin).ok()?, fingerprint))
}

/// Durations as whole milliseconds in the rights' JSON.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_schemas::Manifest;

    fn registration(tenants: TenantScope) -> Registration {
        let manifest = Manifest::from_toml_str(
            r#"
            [plugin]
            id = "audit"
            version = "1.0.0"
            core = "*"
            [[subscriptions]]
            name = "orders"
            events = ["order.*"]
            policy = { timeout = "5m" }
            [channels]
            send = ["alerts"]
            receive = ["alerts", "audit"]
            "#,
        )
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
                "_SY_INBOX.switchyard.audit.>",
                "switchyard.channel.acme.alerts",
                "switchyard.channel.globex.alerts",
                "switchyard.channel.acme.audit",
                "switchyard.channel.globex.audit",
            ]
        );
        assert_eq!(
            permissions.publish_allowed(),
            [
                "switchyard.control.hello.audit",
                "switchyard.control.rights.audit",
                "_SY_INBOX.switchyard.audit.>",
                "switchyard.channel.acme.alerts",
                "switchyard.channel.globex.alerts",
            ]
        );
        assert!(permissions.denied().contains(&"$JS.>".to_owned()));
        // The longest delivery timeout (5 minutes) plus a minute to answer.
        assert_eq!(rights.reply_window, Duration::from_secs(360));
        assert_eq!(permissions.responses().ttl, 360_000_000_000);
    }

    #[test]
    fn an_all_tenants_plugin_gets_channel_wildcards() {
        let rights = PluginRights::of(&registration(TenantScope::All));
        let permissions = rights.permissions(&Namespace::new("staging").unwrap());
        assert!(permissions
            .subscribe_allowed()
            .contains(&"staging.channel.*.audit".to_owned()));
        assert!(permissions
            .publish_allowed()
            .contains(&"staging.channel.*.alerts".to_owned()));
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
        let rights = PluginRights::of(&registration(TenantScope::All));
        let json = serde_json::to_value(&rights).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "plugin": "audit", "tenants": "all", "send": ["alerts"],
                "receive": ["alerts", "audit"], "reply_window": 360_000
            })
        );
        assert_eq!(
            serde_json::from_value::<PluginRights>(json).unwrap(),
            rights
        );
    }
}
