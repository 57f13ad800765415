//! The subject namespace: every NATS subject Switchyard uses is built here.
//!
//! | subject | carries |
//! |---|---|
//! | `{prefix}.events.{tenant}.{type…}` | events, stored in the events stream |
//! | `{prefix}.deliver.{plugin}` | deliveries from the dispatcher to a plugin's workers |
//! | `{prefix}.channel.{tenant}.{channel}.{sender}` | plugin-to-plugin channel messages, from `sender` |
//! | `{prefix}.dlq.{plugin}.{tenant}.{type…}` | dead letters, stored in the dead-letter stream |
//! | `{prefix}.redrive.{plugin}.{subscription}.{tenant}.{type…}` | dead letters replayed to one plugin, stored in the events stream |
//! | `{prefix}.control.{topic}` | the dispatcher's control plane |
//! | `{prefix}.audit.{action}.{target}` | the audit log's entries, stored in the audit stream |
//! | `{prefix}.control.hello.{plugin}` | a worker announcing itself |
//! | `{prefix}.control.rights.{plugin}` | a worker asking the control plane for its rights (tenants, channels) |
//! | `_SY_INBOX.{prefix}.{plugin}.…` | a plugin's own inbox: answers of the control plane to its requests |
//! | `_SY_INBOX.{prefix}.{plugin}.settings` | the plugin's settings, sent by dispatchers when they change |
//! | `_SY_REPLY.{prefix}.{plugin}.{dispatcher}.{n}` | a plugin's answers to the deliveries of one dispatcher instance |
//! | `_SY_CHREPLY.{prefix}.{tenant}.{channel}.{sender}.{n}` | answers to `sender`'s requests on a channel |
//! | `{prefix}.op.{tenant}.{plugin}.{operation}.{kind}.{caller}` | calls of a plugin's operation, answered by a dispatcher |
//! | `{prefix}.call.{plugin}` | calls forwarded by a dispatcher to a plugin's workers |
//! | `_SY_SERVICE.{prefix}.{service}.…` | a service login's own inbox: answers to its calls |
//!
//! The prefix defaults to [`DEFAULT_PREFIX`]; two deployments can share one NATS account by
//! using different prefixes.

use std::fmt;

use crate::call::{CallSubject, Caller};
use crate::manifest::EventPattern;
use crate::name::{
    ChannelName, EventType, NameError, OperationName, PluginId, ServiceName, Tenant,
};

/// The prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "switchyard";

/// Builds and parses the subjects of one Switchyard deployment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace {
    prefix: String,
}

impl Default for Namespace {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

/// A subject that does not belong to the events namespace it was parsed against.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// The subject does not start with `{prefix}.events.`.
    #[error(
        "subject `{subject}` is not an event subject (expected `{expected_prefix}<tenant>.<type>`)"
    )]
    NotAnEventSubject {
        /// The subject parsed.
        subject: String,
        /// What it should start with.
        expected_prefix: String,
    },
    /// The tenant or type inside the subject is not a valid name.
    #[error("subject `{subject}`: {source}")]
    BadName {
        /// The subject parsed.
        subject: String,
        /// What was wrong with the name.
        source: NameError,
    },
}

/// Where a channel message was published: parsed from its subject, which the broker checked
/// against the sender's permissions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelSubject {
    /// The tenant it belongs to.
    pub tenant: Tenant,
    /// The channel.
    pub channel: ChannelName,
    /// The plugin that published it.
    pub sender: PluginId,
}

/// Whether `token` is one non-empty subject token without wildcards.
fn is_plain_token(token: &str) -> bool {
    !token.is_empty()
        && !token
            .bytes()
            .any(|b| matches!(b, b'.' | b'*' | b'>') || b.is_ascii_whitespace())
}

/// Whether `subject` is `prefix` followed by one or more concrete tokens (no wildcard, none
/// empty).
fn is_concrete_below(prefix: &str, subject: &str) -> bool {
    subject
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .split('.')
                    .all(|token| !token.is_empty() && token != "*" && token != ">")
        })
}

/// The subject token of an audit entry's target: the target itself when it is a valid token,
/// else `_`.
fn audit_target_token(target: &str) -> &str {
    if PluginId::new(target).is_ok() {
        target
    } else {
        "_"
    }
}

impl Namespace {
    /// A namespace with its own prefix (a single token, like a tenant name).
    ///
    /// # Errors
    /// A [`NameError`] when the prefix is not a valid token.
    pub fn new(prefix: impl Into<String>) -> Result<Self, NameError> {
        // The prefix obeys the same rules as a tenant: one token.
        let prefix = Tenant::new(prefix).map_err(|e| match e {
            NameError::Empty { value, .. } => NameError::Empty {
                what: "subject prefix",
                value,
            },
            other => other,
        })?;
        Ok(Self {
            prefix: prefix.as_str().to_owned(),
        })
    }

    /// The prefix, without a trailing dot.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The subject an event of `event_type` for `tenant` is published to.
    pub fn event(&self, tenant: &Tenant, event_type: &EventType) -> String {
        format!("{}.events.{tenant}.{event_type}", self.prefix)
    }

    /// A filter matching the events of one type for one tenant, of one type for all tenants
    /// (`tenant = None`), or of every type (`event_type = None`).
    pub fn event_filter(&self, tenant: Option<&Tenant>, event_type: Option<&EventType>) -> String {
        let tenant = tenant.map_or("*", Tenant::as_str);
        match event_type {
            Some(ty) => format!("{}.events.{tenant}.{ty}", self.prefix),
            None => format!("{}.events.{tenant}.>", self.prefix),
        }
    }

    /// A filter matching the events of a subscription's pattern (`order.*`, `invoice.>`) for
    /// one tenant, or for all tenants (`None`).
    pub fn event_pattern_filter(&self, tenant: Option<&Tenant>, pattern: &EventPattern) -> String {
        let tenant = tenant.map_or("*", Tenant::as_str);
        format!("{}.events.{tenant}.{pattern}", self.prefix)
    }

    /// The filter matching every event subject; the events stream stores this.
    pub fn all_events(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    /// Parses an event subject back into its tenant and type.
    ///
    /// # Errors
    /// A [`SubjectError`] when the subject is outside this namespace's events or holds an
    /// invalid tenant or type.
    pub fn parse_event(&self, subject: &str) -> Result<(Tenant, EventType), SubjectError> {
        let expected_prefix = format!("{}.events.", self.prefix);
        let rest = subject.strip_prefix(&expected_prefix).ok_or_else(|| {
            SubjectError::NotAnEventSubject {
                subject: subject.to_owned(),
                expected_prefix: expected_prefix.clone(),
            }
        })?;
        let (tenant, ty) = rest
            .split_once('.')
            .ok_or_else(|| SubjectError::NotAnEventSubject {
                subject: subject.to_owned(),
                expected_prefix,
            })?;
        let bad_name = |source| SubjectError::BadName {
            subject: subject.to_owned(),
            source,
        };
        Ok((
            Tenant::new(tenant).map_err(bad_name)?,
            EventType::new(ty).map_err(bad_name)?,
        ))
    }

    /// The subject a plugin's workers listen on (as one queue group) for deliveries.
    pub fn delivery(&self, plugin: &PluginId) -> String {
        format!("{}.deliver.{plugin}", self.prefix)
    }

    /// The subject `sender` publishes a channel message on, within a tenant. The sender's id
    /// is the last token: a plugin's permissions let it publish only with its own id there,
    /// so a receiver knows from the subject alone, checked by the broker, who sent it.
    pub fn channel(&self, tenant: &Tenant, channel: &ChannelName, sender: &PluginId) -> String {
        format!("{}.channel.{tenant}.{channel}.{sender}", self.prefix)
    }

    /// A filter matching one channel within one tenant, or within every tenant (`None`),
    /// from one sender, or from any sender (`None`).
    pub fn channel_filter(
        &self,
        tenant: Option<&Tenant>,
        channel: &ChannelName,
        sender: Option<&PluginId>,
    ) -> String {
        let tenant = tenant.map_or("*", Tenant::as_str);
        let sender = sender.map_or("*", PluginId::as_str);
        format!("{}.channel.{tenant}.{channel}.{sender}", self.prefix)
    }

    /// Parses a channel subject back into its tenant, channel and sender; `None` when
    /// `subject` is not a channel subject of this namespace or holds invalid names.
    pub fn parse_channel(&self, subject: &str) -> Option<ChannelSubject> {
        let rest = subject.strip_prefix(&format!("{}.channel.", self.prefix))?;
        let mut tokens = rest.split('.');
        let (tenant, channel, sender) = (tokens.next()?, tokens.next()?, tokens.next()?);
        if tokens.next().is_some() {
            return None;
        }
        Some(ChannelSubject {
            tenant: Tenant::new(tenant).ok()?,
            channel: ChannelName::new(channel).ok()?,
            sender: PluginId::new(sender).ok()?,
        })
    }

    /// The reply subject of one channel request: `token` (one subject token, unique per
    /// request) under the sender's replies for that tenant and channel. Only the sender may
    /// subscribe there, and only the plugins receiving that channel in that tenant may
    /// publish there, so an answer can come from nobody else and go nowhere else.
    pub fn channel_reply(&self, on: &ChannelSubject, token: &str) -> String {
        format!(
            "_SY_CHREPLY.{}.{}.{}.{}.{token}",
            self.prefix, on.tenant, on.channel, on.sender
        )
    }

    /// A filter matching the replies to channel requests: of one tenant or every tenant
    /// (`None`), on one channel, to one sender or to any sender (`None`).
    pub fn channel_reply_filter(
        &self,
        tenant: Option<&Tenant>,
        channel: &ChannelName,
        sender: Option<&PluginId>,
    ) -> String {
        let tenant = tenant.map_or("*", Tenant::as_str);
        let sender = sender.map_or("*", PluginId::as_str);
        format!("_SY_CHREPLY.{}.{tenant}.{channel}.{sender}.*", self.prefix)
    }

    /// Whether `reply` is a reply subject that a request on the channel subject `on` may
    /// carry: exactly [`channel_reply`](Self::channel_reply) of `on` with one token. A
    /// receiver answers nothing else.
    pub fn is_channel_reply_for(&self, reply: &str, on: &ChannelSubject) -> bool {
        let expected = self.channel_reply(on, "");
        reply.strip_prefix(&expected).is_some_and(is_plain_token)
    }

    /// The reply subject of one delivery (or probe) the dispatcher instance `instance` sends to
    /// `plugin`'s workers; `token` tells the dispatcher which request it answers. The plugin
    /// may publish under [`delivery_reply_grant`](Self::delivery_reply_grant) and nowhere
    /// else outside its own subjects, and only dispatchers subscribe there.
    pub fn delivery_reply(&self, plugin: &PluginId, instance: &str, token: &str) -> String {
        format!("_SY_REPLY.{}.{plugin}.{instance}.{token}", self.prefix)
    }

    /// What `plugin` may publish its delivery answers to.
    pub fn delivery_reply_grant(&self, plugin: &PluginId) -> String {
        format!("_SY_REPLY.{}.{plugin}.>", self.prefix)
    }

    /// The filter a dispatcher instance receives every answer to its deliveries on.
    pub fn delivery_reply_filter(&self, instance: &str) -> String {
        format!("_SY_REPLY.{}.*.{instance}.*", self.prefix)
    }

    /// The subject a plugin's workers ask the control plane for their rights on.
    pub fn plugin_rights(&self, plugin: &PluginId) -> String {
        format!("{}.control.rights.{plugin}", self.prefix)
    }

    /// The filter matching every plugin's rights request.
    pub fn all_plugin_rights(&self) -> String {
        format!("{}.control.rights.*", self.prefix)
    }

    /// The inbox prefix of a plugin's connections: replies to its own requests arrive under
    /// `{inbox prefix}.…`, where no other plugin may subscribe. Outside the deployment's
    /// prefix (and outside `_INBOX.`), so that it collides with nothing else.
    pub fn plugin_inbox_prefix(&self, plugin: &PluginId) -> String {
        format!("_SY_INBOX.{}.{plugin}", self.prefix)
    }

    /// Where dispatchers send `plugin`'s workers its settings when they change: within its own
    /// inbox, where only its connections may subscribe and only trusted clients publish.
    pub fn plugin_settings(&self, plugin: &PluginId) -> String {
        format!("{}.settings", self.plugin_inbox_prefix(plugin))
    }

    /// Whether `subject` is a concrete subject within `plugin`'s own inbox (no wildcard, no
    /// empty token): the only reply subjects a trusted component answers a plugin on, since
    /// only that plugin can listen there.
    pub fn is_plugin_inbox(&self, plugin: &PluginId, subject: &str) -> bool {
        is_concrete_below(&self.plugin_inbox_prefix(plugin), subject)
    }

    /// The subject `caller` calls `plugin`'s `operation` on, for `tenant`. Where rights are
    /// enforced, a plugin and a service may publish only with their own id in the last token.
    pub fn operation_call(
        &self,
        tenant: &Tenant,
        plugin: &PluginId,
        operation: &OperationName,
        caller: &Caller,
    ) -> String {
        format!(
            "{}.op.{tenant}.{plugin}.{operation}.{}.{}",
            self.prefix,
            caller.kind().as_str(),
            caller.id()
        )
    }

    /// The filter a dispatcher serves `plugin`'s `operation` on: every tenant and caller.
    pub fn operation_endpoint(&self, plugin: &PluginId, operation: &OperationName) -> String {
        format!("{}.op.*.{plugin}.{operation}.*.*", self.prefix)
    }

    /// Reads a call subject back; `None` when `subject` is not one of this namespace or holds
    /// invalid names.
    pub fn parse_operation_call(&self, subject: &str) -> Option<CallSubject> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix(".op.")?;
        let mut tokens = rest.split('.');
        let (tenant, plugin, operation, kind, id) = (
            tokens.next()?,
            tokens.next()?,
            tokens.next()?,
            tokens.next()?,
            tokens.next()?,
        );
        if tokens.next().is_some() {
            return None;
        }
        Some(CallSubject {
            tenant: Tenant::new(tenant).ok()?,
            plugin: PluginId::new(plugin).ok()?,
            operation: OperationName::new(operation).ok()?,
            caller: Caller::from_tokens(kind, id)?,
        })
    }

    /// The subject a plugin's workers receive calls of its operations on (one queue group),
    /// from dispatchers only.
    pub fn call_delivery(&self, plugin: &PluginId) -> String {
        format!("{}.call.{plugin}", self.prefix)
    }

    /// The inbox prefix of a service login's connections: answers to its calls arrive under
    /// `{inbox prefix}.…`, where only that service may subscribe.
    pub fn service_inbox_prefix(&self, service: &ServiceName) -> String {
        format!("_SY_SERVICE.{}.{service}", self.prefix)
    }

    /// Whether a dispatcher may answer `caller`'s call on `reply`: a concrete subject in the
    /// caller's own inbox for a plugin or a service (where no one else can listen), any
    /// concrete subject for an operator (only trusted logins can call as one where rights are
    /// enforced).
    pub fn is_caller_reply(&self, caller: &Caller, reply: &str) -> bool {
        match caller {
            Caller::Plugin(plugin) => self.is_plugin_inbox(plugin, reply),
            Caller::Service(service) => {
                is_concrete_below(&self.service_inbox_prefix(service), reply)
            }
            Caller::Operator(_) => !reply.is_empty() && reply.split('.').all(is_plain_token),
        }
    }

    /// The subject a dead letter of `plugin` for an event of `tenant` and `event_type` is
    /// stored under.
    pub fn dead_letter(
        &self,
        plugin: &PluginId,
        tenant: &Tenant,
        event_type: &EventType,
    ) -> String {
        format!("{}.dlq.{plugin}.{tenant}.{event_type}", self.prefix)
    }

    /// A filter matching the dead letters of one plugin, or of all plugins (`None`).
    pub fn dead_letter_filter(&self, plugin: Option<&PluginId>) -> String {
        match plugin {
            Some(plugin) => format!("{}.dlq.{plugin}.>", self.prefix),
            None => format!("{}.dlq.>", self.prefix),
        }
    }

    /// The subject a worker announces itself on when it connects, so that events held for an
    /// absent plugin flow at once.
    pub fn worker_hello(&self, plugin: &PluginId) -> String {
        format!("{}.control.hello.{plugin}", self.prefix)
    }

    /// The filter matching every worker's hello.
    pub fn all_worker_hellos(&self) -> String {
        format!("{}.control.hello.*", self.prefix)
    }

    /// The subject a dead letter is replayed to: stored in the events stream, but seen only by
    /// the consumer of this plugin's subscription.
    pub fn redrive(
        &self,
        plugin: &PluginId,
        subscription: &str,
        tenant: &Tenant,
        event_type: &EventType,
    ) -> String {
        format!(
            "{}.redrive.{plugin}.{subscription}.{tenant}.{event_type}",
            self.prefix
        )
    }

    /// The filter matching every replay to one plugin's subscription.
    pub fn redrive_filter(&self, plugin: &PluginId, subscription: &str) -> String {
        format!("{}.redrive.{plugin}.{subscription}.>", self.prefix)
    }

    /// The filter matching every replay; the events stream stores this too.
    pub fn all_redrives(&self) -> String {
        format!("{}.redrive.>", self.prefix)
    }

    /// Parses an event or replay subject into its tenant and type.
    ///
    /// # Errors
    /// A [`SubjectError`] when the subject is neither, or holds invalid names.
    pub fn parse_event_or_redrive(
        &self,
        subject: &str,
    ) -> Result<(Tenant, EventType), SubjectError> {
        let redrive_prefix = format!("{}.redrive.", self.prefix);
        match subject.strip_prefix(&redrive_prefix) {
            // plugin.subscription.tenant.type…
            Some(rest) => {
                let mut parts = rest.splitn(3, '.');
                let (_plugin, _subscription) = (parts.next(), parts.next());
                let tail = parts.next().unwrap_or("");
                self.parse_event(&format!("{}.events.{tail}", self.prefix))
                    .map_err(|_| SubjectError::NotAnEventSubject {
                        subject: subject.to_owned(),
                        expected_prefix: redrive_prefix,
                    })
            }
            None => self.parse_event(subject),
        }
    }

    /// The subject with its tenant token replaced by `{tenant}`, for the subjects that carry a
    /// tenant (events, replays, dead letters, channels); `None` for others. Telemetry names
    /// spans by it, so that their number does not grow with the tenants.
    pub fn destination_template(&self, subject: &str) -> Option<String> {
        let rest = subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('.')?;
        let mut tokens: Vec<&str> = rest.split('.').collect();
        // The tenant's position after the prefix, by kind of subject.
        let position = match tokens.first().copied()? {
            "events" | "channel" | "op" => 1,
            "dlq" => 2,
            "redrive" => 3,
            _ => return None,
        };
        if tokens.len() <= position + 1 {
            return None;
        }
        tokens[position] = "{tenant}";
        Some(format!("{}.{}", self.prefix, tokens.join(".")))
    }

    /// The subject an audit entry of `action` about `target` is stored under:
    /// `{prefix}.audit.{action}.{target}`. A target that is not a single token (1 to 64 ASCII
    /// letters, digits, `-`, `_`) is written as `_`; the entry itself holds it in full, so the
    /// subject only narrows a search.
    ///
    /// # Panics
    /// When `action` is not a valid token: actions are Switchyard's own names, never input.
    pub fn audit(&self, action: &str, target: &str) -> String {
        assert!(
            PluginId::new(action).is_ok(),
            "audit action `{action}` must be a single token"
        );
        format!(
            "{}.audit.{action}.{}",
            self.prefix,
            audit_target_token(target)
        )
    }

    /// A filter matching the audit entries of one action (or all, `None`) about one target
    /// (or all, `None`); see [`audit`](Self::audit) for targets that are not a token.
    pub fn audit_filter(&self, action: Option<&str>, target: Option<&str>) -> String {
        format!(
            "{}.audit.{}.{}",
            self.prefix,
            action.unwrap_or("*"),
            target.map_or("*", audit_target_token)
        )
    }

    /// The filter matching every audit entry; the audit stream stores this.
    pub fn all_audit(&self) -> String {
        format!("{}.audit.>", self.prefix)
    }

    /// The subject on which `switchyard explain` asks the running dispatchers which events they
    /// hold; operators only (no plugin is granted it).
    pub fn explain_requests(&self) -> String {
        self.control("explain")
    }

    /// A control-plane subject, e.g. `control("registry")`.
    ///
    /// # Panics
    /// When `topic` is not a valid token: topics are chosen by Switchyard's own code, never
    /// by input, so a bad one is a bug.
    pub fn control(&self, topic: &str) -> String {
        assert!(
            PluginId::new(topic).is_ok(),
            "control topic `{topic}` must be a single token"
        );
        format!("{}.control.{topic}", self.prefix)
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> (Tenant, EventType, PluginId) {
        (
            Tenant::new("acme").unwrap(),
            EventType::new("order.created").unwrap(),
            PluginId::new("audit").unwrap(),
        )
    }

    #[test]
    fn builds_each_subject() {
        let ns = Namespace::default();
        let (tenant, ty, plugin) = names();
        assert_eq!(
            ns.event(&tenant, &ty),
            "switchyard.events.acme.order.created"
        );
        assert_eq!(ns.all_events(), "switchyard.events.>");
        assert_eq!(
            ns.event_filter(Some(&tenant), None),
            "switchyard.events.acme.>"
        );
        assert_eq!(
            ns.event_filter(None, Some(&ty)),
            "switchyard.events.*.order.created"
        );
        assert_eq!(
            ns.audit("plugin_removed", "billing"),
            "switchyard.audit.plugin_removed.billing"
        );
        assert_eq!(
            ns.audit("trust_added", "key 1.a"),
            "switchyard.audit.trust_added._"
        );
        assert_eq!(ns.audit_filter(None, None), "switchyard.audit.*.*");
        assert_eq!(
            ns.audit_filter(Some("dlq_purged"), Some("a.b")),
            "switchyard.audit.dlq_purged._"
        );
        assert_eq!(ns.all_audit(), "switchyard.audit.>");
        assert_eq!(ns.delivery(&plugin), "switchyard.deliver.audit");
        assert_eq!(
            ns.channel(&tenant, &ChannelName::new("alerts").unwrap(), &plugin),
            "switchyard.channel.acme.alerts.audit"
        );
        assert_eq!(
            ns.dead_letter(&plugin, &tenant, &ty),
            "switchyard.dlq.audit.acme.order.created"
        );
        assert_eq!(
            ns.dead_letter_filter(Some(&plugin)),
            "switchyard.dlq.audit.>"
        );
        assert_eq!(ns.control("registry"), "switchyard.control.registry");
        assert_eq!(
            ns.destination_template("switchyard.events.acme.order.created")
                .as_deref(),
            Some("switchyard.events.{tenant}.order.created")
        );
        assert_eq!(
            ns.destination_template("switchyard.dlq.billing.acme.order.created")
                .as_deref(),
            Some("switchyard.dlq.billing.{tenant}.order.created")
        );
        assert_eq!(
            ns.destination_template("switchyard.redrive.billing.orders.acme.order.created")
                .as_deref(),
            Some("switchyard.redrive.billing.orders.{tenant}.order.created")
        );
        assert_eq!(
            ns.destination_template("switchyard.channel.acme.alerts.billing")
                .as_deref(),
            Some("switchyard.channel.{tenant}.alerts.billing")
        );
        assert_eq!(ns.destination_template("switchyard.deliver.billing"), None);
        assert_eq!(ns.destination_template("switchyard.events.acme"), None);
        assert_eq!(ns.destination_template("other.events.acme.x"), None);
        let alerts = ChannelName::new("alerts").unwrap();
        assert_eq!(
            ns.channel_filter(None, &alerts, None),
            "switchyard.channel.*.alerts.*"
        );
        let on = ChannelSubject {
            tenant: tenant.clone(),
            channel: alerts.clone(),
            sender: plugin.clone(),
        };
        assert_eq!(
            ns.parse_channel("switchyard.channel.acme.alerts.audit"),
            Some(on.clone())
        );
        assert_eq!(ns.parse_channel("switchyard.channel.acme.alerts"), None);
        assert_eq!(ns.parse_channel("switchyard.channel.acme.a.b.c"), None);
        assert_eq!(ns.parse_channel("switchyard.events.acme.alerts.x"), None);
        assert_eq!(
            ns.channel_reply(&on, "r1"),
            "_SY_CHREPLY.switchyard.acme.alerts.audit.r1"
        );
        assert_eq!(
            ns.channel_reply_filter(Some(&tenant), &alerts, None),
            "_SY_CHREPLY.switchyard.acme.alerts.*.*"
        );
        assert!(ns.is_channel_reply_for("_SY_CHREPLY.switchyard.acme.alerts.audit.r1", &on));
        for wrong in [
            "_SY_CHREPLY.switchyard.acme.alerts.audit",
            "_SY_CHREPLY.switchyard.acme.alerts.audit.",
            "_SY_CHREPLY.switchyard.acme.alerts.audit.r1.r2",
            "_SY_CHREPLY.switchyard.acme.alerts.audit.*",
            "_SY_CHREPLY.switchyard.acme.alerts.other.r1",
            "_SY_CHREPLY.switchyard.globex.alerts.audit.r1",
            "$JS.API.STREAM.PURGE.x",
            "_INBOX.abc",
        ] {
            assert!(!ns.is_channel_reply_for(wrong, &on), "{wrong}");
        }
        assert_eq!(
            ns.delivery_reply(&plugin, "d1", "7"),
            "_SY_REPLY.switchyard.audit.d1.7"
        );
        assert_eq!(
            ns.delivery_reply_grant(&plugin),
            "_SY_REPLY.switchyard.audit.>"
        );
        assert_eq!(
            ns.delivery_reply_filter("d1"),
            "_SY_REPLY.switchyard.*.d1.*"
        );
        assert_eq!(ns.plugin_rights(&plugin), "switchyard.control.rights.audit");
        assert_eq!(ns.all_plugin_rights(), "switchyard.control.rights.*");
        assert_eq!(
            ns.plugin_inbox_prefix(&plugin),
            "_SY_INBOX.switchyard.audit"
        );
        assert_eq!(
            ns.redrive(&plugin, "orders", &tenant, &ty),
            "switchyard.redrive.audit.orders.acme.order.created"
        );
        assert_eq!(
            ns.redrive_filter(&plugin, "orders"),
            "switchyard.redrive.audit.orders.>"
        );
        assert_eq!(
            ns.parse_event_or_redrive("switchyard.redrive.audit.orders.acme.order.created")
                .unwrap(),
            (tenant.clone(), ty.clone())
        );
        assert_eq!(
            ns.parse_event_or_redrive("switchyard.events.acme.order.created")
                .unwrap(),
            (tenant, ty)
        );
    }

    #[test]
    fn call_subjects_read_back_and_replies_stay_in_the_callers_inbox() {
        let ns = Namespace::default();
        let (tenant, _, plugin) = names();
        let operation = OperationName::new("quote").unwrap();
        let billing = Caller::Plugin(PluginId::new("billing").unwrap());
        let subject = ns.operation_call(&tenant, &plugin, &operation, &billing);
        assert_eq!(subject, "switchyard.op.acme.audit.quote.plugin.billing");
        let parsed = ns.parse_operation_call(&subject).unwrap();
        assert_eq!(
            (parsed.plugin, parsed.caller),
            (plugin.clone(), billing.clone())
        );
        for bad in [
            "switchyard.op.acme.audit.quote.plugin",
            "switchyard.op.acme.audit.quote.plugin.billing.x",
            "switchyard.op.acme.audit.quote.robot.billing",
            "other.op.acme.audit.quote.plugin.billing",
        ] {
            assert_eq!(ns.parse_operation_call(bad), None, "{bad}");
        }
        assert!(ns.is_caller_reply(&billing, "_SY_INBOX.switchyard.billing.x.1"));
        assert!(!ns.is_caller_reply(&billing, "_SY_INBOX.switchyard.billingx.1"));
        assert!(!ns.is_caller_reply(&billing, "_INBOX.x"));
        let shop = Caller::Service(ServiceName::new("shop").unwrap());
        assert!(ns.is_caller_reply(&shop, "_SY_SERVICE.switchyard.shop.abc"));
        assert!(!ns.is_caller_reply(&shop, "_SY_SERVICE.switchyard.shop.*"));
        assert!(!ns.is_caller_reply(&shop, "_SY_INBOX.switchyard.shop.abc"));
        let operator = Caller::Operator("cli".into());
        assert!(ns.is_caller_reply(&operator, "_INBOX.abc.def"));
        assert!(!ns.is_caller_reply(&operator, "_INBOX.>"));
        assert!(!ns.is_caller_reply(&operator, "a..b"));
    }

    #[test]
    fn custom_prefix_is_validated_and_used() {
        let ns = Namespace::new("staging").unwrap();
        let (tenant, ty, _) = names();
        assert_eq!(ns.event(&tenant, &ty), "staging.events.acme.order.created");
        assert!(matches!(Namespace::new("a.b"), Err(NameError::Dot { .. })));
        assert!(matches!(
            Namespace::new(""),
            Err(NameError::Empty {
                what: "subject prefix",
                ..
            })
        ));
    }

    #[test]
    fn parses_event_subjects_back() {
        let ns = Namespace::default();
        let (tenant, ty, _) = names();
        assert_eq!(
            ns.parse_event("switchyard.events.acme.order.created")
                .unwrap(),
            (tenant, ty)
        );
        assert!(matches!(
            ns.parse_event("other.events.acme.order"),
            Err(SubjectError::NotAnEventSubject { .. })
        ));
        assert!(matches!(
            ns.parse_event("switchyard.events.acme"),
            Err(SubjectError::NotAnEventSubject { .. })
        ));
        assert!(matches!(
            ns.parse_event("switchyard.events.acme.order.*"),
            Err(SubjectError::BadName { .. })
        ));
    }
}
