//! The matrix: what each throwaway plugin tries, and what must happen.
//!
//! The expectations are written out here cell by cell, not derived from
//! [`PluginRights::permissions`](crate::auth::PluginRights::permissions), so that the probe
//! checks the permissions instead of repeating them.

use std::fmt;

use switchyard_schemas::{ChannelName, ChannelSubject, PluginId, Tenant};

use super::Cast;

/// What must happen to a cell's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// It must arrive: a right the plugin was granted (the positive control).
    Allowed,
    /// It must never arrive.
    Refused,
}

/// How a reply trick brings a message with a chosen reply subject to the one who answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// The plugin sends it to its own inbox and answers it itself.
    OwnInbox,
    /// The plugin sends it on a channel subject, and `receiver` (itself, or an accomplice)
    /// receives it there and answers.
    Channel {
        /// The channel subject the request is sent on.
        subject: String,
        /// Who receives and answers it.
        receiver: PluginId,
    },
}

/// What a cell tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Connect with this user name and password (`None`: a wrong one).
    Connect {
        /// The user name.
        user: String,
        /// The password; `None` for a wrong one.
        password: Option<String>,
    },
    /// Publish to `subject`; the observer watches it.
    Publish {
        /// The subject.
        subject: String,
    },
    /// Subscribe to `subject`; the observer publishes to `sample`, a subject it matches.
    Subscribe {
        /// The subscription's subject (may hold wildcards).
        subject: String,
        /// A concrete subject matching it.
        sample: String,
    },
    /// Get an answer published to `target` by the reply trick `via`.
    ReplyTrick {
        /// How the request reaches its answerer.
        via: Via,
        /// The subject the answer must not reach.
        target: String,
    },
    /// Ask the control plane for the rights with reply subject `reply`.
    RightsAnswerTo {
        /// The reply subject named.
        reply: String,
    },
}

/// One try of one plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// The plugin trying.
    pub plugin: PluginId,
    /// The subject class, for the report (`events`, `$JS`, `reply trick`, …).
    pub class: &'static str,
    /// What it tries.
    pub action: Action,
    /// What must happen.
    pub expect: Expect,
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expect = match self.expect {
            Expect::Allowed => "allowed",
            Expect::Refused => "refused",
        };
        let what = match &self.action {
            Action::Connect { user, password } => format!(
                "connect as {user} with {}",
                if password.is_some() {
                    "another plugin's secret"
                } else {
                    "a wrong secret"
                }
            ),
            Action::Publish { subject } => format!("publish {subject}"),
            Action::Subscribe { subject, .. } => format!("subscribe {subject}"),
            Action::ReplyTrick {
                via: Via::OwnInbox,
                target,
            } => format!("answer onto {target} via its own inbox"),
            Action::ReplyTrick {
                via: Via::Channel { subject, receiver },
                target,
            } => format!("answer onto {target} via {subject}, answered by {receiver}"),
            Action::RightsAnswerTo { reply } => format!("rights answered onto {reply}"),
        };
        write!(
            f,
            "{:<22} {:<12} {what} → {expect}",
            self.plugin, self.class
        )
    }
}

/// Connections that must be refused.
pub(super) fn connect_cells(cast: &Cast) -> Vec<Cell> {
    let refused = |user: String, password: Option<String>, class| Cell {
        plugin: cast.a.clone(),
        class,
        action: Action::Connect { user, password },
        expect: Expect::Refused,
    };
    vec![
        refused(format!("probe-{}-ghost", cast.nonce), None, "unknown id"),
        refused(cast.a.to_string(), None, "wrong secret"),
        refused("admin".to_owned(), None, "trusted name"),
        refused("dispatcher".to_owned(), None, "trusted name"),
    ]
}

/// Every cell, for every plugin of the cast.
pub(super) fn matrix(cast: &Cast) -> Vec<Cell> {
    let mut cells = Vec::new();
    for (me, other, tenant, other_tenant) in [
        (&cast.a, &cast.c, &cast.t1, &cast.t2),
        (&cast.b, &cast.c, &cast.t1, &cast.t2),
        (&cast.c, &cast.a, &cast.t2, &cast.t1),
    ] {
        let rights = Rights::of(cast, me);
        cells.extend(publish_cells(
            cast,
            me,
            other,
            tenant,
            other_tenant,
            &rights,
        ));
        cells.extend(subscribe_cells(
            cast,
            me,
            other,
            tenant,
            other_tenant,
            &rights,
        ));
        cells.extend(reply_cells(cast, me, other, tenant, other_tenant, &rights));
        cells.extend(operation_cells(cast, me, other, tenant, other_tenant));
    }
    cells
}

/// Calls of `a`'s operation, which `b` alone may call, in their tenant; the calls forwarded
/// to a plugin's workers; NATS micro's `$SRV` subjects; services' inboxes.
fn operation_cells(
    cast: &Cast,
    me: &PluginId,
    other: &PluginId,
    tenant: &Tenant,
    other_tenant: &Tenant,
) -> Vec<Cell> {
    use switchyard_schemas::call::Caller;
    use Expect::{Allowed, Refused};
    let ns = &cast.ns;
    let p = ns.prefix();
    let call =
        |tenant: &Tenant, caller: Caller| ns.operation_call(tenant, &cast.a, &cast.op, &caller);
    let as_me = Caller::Plugin(me.clone());
    let mut cells = vec![
        publish(
            me,
            "operations",
            call(&cast.t1, as_me.clone()),
            if *me == cast.b { Allowed } else { Refused },
        ),
        publish(
            me,
            "operations",
            call(tenant, Caller::Plugin(other.clone())),
            Refused,
        ),
        publish(me, "operations", call(other_tenant, as_me), Refused),
        publish(
            me,
            "operations",
            call(tenant, Caller::Operator("admin".to_owned())),
            Refused,
        ),
        publish(me, "operations", ns.call_delivery(&cast.a), Refused),
        publish(me, "operations", ns.call_delivery(me), Refused),
        publish(me, "$SRV", "$SRV.PING".to_owned(), Refused),
        publish(me, "$SRV", format!("$SRV.INFO.{}", cast.a), Refused),
        subscribe(me, "operations", ns.call_delivery(me), Allowed),
        subscribe(me, "operations", ns.call_delivery(other), Refused),
        subscribe(me, "operations", format!("{p}.call.*"), Refused),
        subscribe(me, "operations", format!("{p}.op.>"), Refused),
        subscribe(me, "$SRV", "$SRV.>".to_owned(), Refused),
        subscribe(me, "services", "_SY_SERVICE.>".to_owned(), Refused),
    ];
    if *me != cast.a {
        cells.push(subscribe(
            me,
            "operations",
            ns.call_delivery(&cast.a),
            Refused,
        ));
    }
    cells
}

/// What a cast member was granted, as the probe set it up.
struct Rights {
    send: Vec<ChannelName>,
    receive: Vec<ChannelName>,
}

impl Rights {
    fn of(cast: &Cast, plugin: &PluginId) -> Self {
        if *plugin == cast.a {
            Self {
                send: vec![cast.c1.clone()],
                receive: vec![cast.c1.clone()],
            }
        } else if *plugin == cast.b {
            Self {
                send: vec![cast.c2.clone()],
                receive: vec![cast.c1.clone()],
            }
        } else {
            Self {
                send: vec![cast.c1.clone()],
                receive: vec![cast.c1.clone(), cast.c2.clone()],
            }
        }
    }

    fn not_sent(&self, cast: &Cast) -> ChannelName {
        [&cast.c1, &cast.c2]
            .into_iter()
            .find(|c| !self.send.contains(c))
            .cloned()
            .unwrap_or_else(|| cast.c2.clone())
    }

    fn not_received(&self, cast: &Cast) -> Option<ChannelName> {
        [&cast.c1, &cast.c2]
            .into_iter()
            .find(|c| !self.receive.contains(c))
            .cloned()
    }
}

fn cell(plugin: &PluginId, class: &'static str, action: Action, expect: Expect) -> Cell {
    Cell {
        plugin: plugin.clone(),
        class,
        action,
        expect,
    }
}

fn publish(plugin: &PluginId, class: &'static str, subject: String, expect: Expect) -> Cell {
    cell(plugin, class, Action::Publish { subject }, expect)
}

fn publish_cells(
    cast: &Cast,
    me: &PluginId,
    other: &PluginId,
    tenant: &Tenant,
    other_tenant: &Tenant,
    rights: &Rights,
) -> Vec<Cell> {
    use Expect::{Allowed, Refused};
    let ns = &cast.ns;
    let p = ns.prefix();
    let upper = p.to_uppercase();
    let sent = &rights.send[0];
    let received = &rights.receive[0];
    let not_sent = rights.not_sent(cast);
    let n = &cast.nonce;
    vec![
        publish(me, "channels", ns.channel(tenant, sent, me), Allowed),
        publish(
            me,
            "inbox",
            format!("{}.probe-{n}", ns.plugin_inbox_prefix(me)),
            Allowed,
        ),
        publish(
            me,
            "replies",
            format!("_SY_REPLY.{p}.{me}.probe-{n}.1"),
            Allowed,
        ),
        publish(
            me,
            "replies",
            ns.channel_reply(
                &ChannelSubject {
                    tenant: tenant.clone(),
                    channel: received.clone(),
                    sender: other.clone(),
                },
                "1",
            ),
            Allowed,
        ),
        publish(me, "channels", ns.channel(tenant, &not_sent, me), Refused),
        publish(me, "channels", ns.channel(other_tenant, sent, me), Refused),
        publish(me, "channels", ns.channel(tenant, sent, other), Refused),
        publish(
            me,
            "events",
            format!("{p}.events.{tenant}.probe.forged"),
            Refused,
        ),
        publish(
            me,
            "events",
            format!("{p}.events.{other_tenant}.probe.forged"),
            Refused,
        ),
        publish(me, "deliveries", ns.delivery(me), Refused),
        publish(me, "deliveries", ns.delivery(other), Refused),
        publish(
            me,
            "dead letters",
            format!("{p}.dlq.{me}.{tenant}.probe.forged"),
            Refused,
        ),
        publish(
            me,
            "redrive",
            format!("{p}.redrive.{me}.probe.{tenant}.probe.forged"),
            Refused,
        ),
        publish(me, "control", ns.worker_hello(other), Refused),
        publish(me, "control", ns.plugin_rights(other), Refused),
        publish(me, "control", format!("{p}.control.registry"), Refused),
        // Asking the dispatchers which events they hold is for operators only.
        publish(me, "control", ns.explain_requests(), Refused),
        publish(me, "$JS", "$JS.API.INFO".to_owned(), Refused),
        publish(me, "$JS", "$JS.API.STREAM.NAMES".to_owned(), Refused),
        publish(
            me,
            "$JS",
            format!("$JS.API.STREAM.PURGE.{upper}_EVENTS"),
            Refused,
        ),
        publish(
            me,
            "$JS",
            format!("$JS.ACK.{upper}_EVENTS.x.1.1.1.1.1"),
            Refused,
        ),
        publish(me, "$JSC", format!("$JSC.R.probe-{n}"), Refused),
        publish(me, "$KV", format!("$KV.{upper}_REGISTRY.{me}"), Refused),
        publish(
            me,
            "$KV",
            format!("$KV.{upper}_CREDENTIALS.{other}"),
            Refused,
        ),
        publish(me, "$O", format!("$O.probe-{n}.M.x"), Refused),
        publish(me, "$SYS", "$SYS.REQ.SERVER.PING".to_owned(), Refused),
        publish(me, "$SYS", "$SYS.REQ.USER.AUTH".to_owned(), Refused),
        publish(me, ">", format!("probe-{n}.anything"), Refused),
        publish(me, "_INBOX", format!("_INBOX.probe-{n}"), Refused),
        publish(
            me,
            "inbox",
            format!("{}.probe-{n}", ns.plugin_inbox_prefix(other)),
            Refused,
        ),
        // Forged settings for another plugin.
        publish(me, "settings", ns.plugin_settings(other), Refused),
        publish(
            me,
            "replies",
            format!("_SY_REPLY.{p}.{other}.probe-{n}.1"),
            Refused,
        ),
        publish(
            me,
            "replies",
            ns.channel_reply(
                &ChannelSubject {
                    tenant: tenant.clone(),
                    channel: not_sent.clone(),
                    sender: me.clone(),
                },
                "1",
            ),
            // Answers to requests on a channel it receives are its to give, not on others.
            if rights.receive.contains(&not_sent) {
                Allowed
            } else {
                Refused
            },
        ),
        publish(
            me,
            "replies",
            ns.channel_reply(
                &ChannelSubject {
                    tenant: other_tenant.clone(),
                    channel: received.clone(),
                    sender: other.clone(),
                },
                "1",
            ),
            Refused,
        ),
    ]
}

fn subscribe(plugin: &PluginId, class: &'static str, subject: String, expect: Expect) -> Cell {
    let sample = subject
        .split('.')
        .map(|token| match token {
            "*" => "probe",
            ">" => "probe.x",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(".");
    cell(plugin, class, Action::Subscribe { subject, sample }, expect)
}

fn subscribe_cells(
    cast: &Cast,
    me: &PluginId,
    other: &PluginId,
    tenant: &Tenant,
    other_tenant: &Tenant,
    rights: &Rights,
) -> Vec<Cell> {
    use Expect::{Allowed, Refused};
    let ns = &cast.ns;
    let p = ns.prefix();
    let upper = p.to_uppercase();
    let sent = &rights.send[0];
    let received = &rights.receive[0];
    let n = &cast.nonce;
    let mut cells = vec![
        subscribe(
            me,
            "channels",
            ns.channel_filter(Some(tenant), received, None),
            Allowed,
        ),
        subscribe(
            me,
            "replies",
            ns.channel_reply_filter(Some(tenant), sent, Some(me)),
            Allowed,
        ),
        subscribe(
            me,
            "inbox",
            format!("{}.>", ns.plugin_inbox_prefix(me)),
            Allowed,
        ),
        subscribe(
            me,
            "channels",
            ns.channel_filter(Some(other_tenant), received, None),
            Refused,
        ),
        subscribe(
            me,
            "channels",
            ns.channel_filter(None, received, None),
            Refused,
        ),
        subscribe(me, "channels", format!("{p}.channel.>"), Refused),
        subscribe(me, "events", format!("{p}.events.{tenant}.>"), Refused),
        subscribe(me, "events", format!("{p}.events.>"), Refused),
        subscribe(me, "deliveries", ns.delivery(other), Refused),
        subscribe(me, "deliveries", format!("{p}.deliver.*"), Refused),
        subscribe(me, "dead letters", format!("{p}.dlq.>"), Refused),
        subscribe(me, "redrive", format!("{p}.redrive.>"), Refused),
        subscribe(me, "control", format!("{p}.control.>"), Refused),
        subscribe(me, "control", ns.plugin_rights(other), Refused),
        subscribe(me, "$JS", "$JS.API.>".to_owned(), Refused),
        subscribe(me, "$JS", "$JS.>".to_owned(), Refused),
        subscribe(me, "$KV", format!("$KV.{upper}_CREDENTIALS.>"), Refused),
        subscribe(me, "$KV", "$KV.>".to_owned(), Refused),
        subscribe(me, "$O", "$O.>".to_owned(), Refused),
        subscribe(me, "$SYS", "$SYS.>".to_owned(), Refused),
        subscribe(me, ">", ">".to_owned(), Refused),
        subscribe(me, ">", format!("probe-{n}.*"), Refused),
        subscribe(me, "_INBOX", "_INBOX.>".to_owned(), Refused),
        subscribe(
            me,
            "inbox",
            format!("{}.>", ns.plugin_inbox_prefix(other)),
            Refused,
        ),
        // Another plugin's settings carry its secrets.
        subscribe(me, "settings", ns.plugin_settings(other), Refused),
        subscribe(me, "settings", "_SY_INBOX.*.*.settings".to_owned(), Refused),
        subscribe(me, "replies", "_SY_REPLY.>".to_owned(), Refused),
        subscribe(me, "replies", format!("_SY_REPLY.{p}.{me}.>"), Refused),
        subscribe(me, "replies", "_SY_CHREPLY.>".to_owned(), Refused),
        subscribe(
            me,
            "replies",
            ns.channel_reply_filter(Some(tenant), sent, Some(other)),
            Refused,
        ),
    ];
    if let Some(not_received) = rights.not_received(cast) {
        cells.push(subscribe(
            me,
            "channels",
            ns.channel_filter(Some(tenant), &not_received, None),
            Refused,
        ));
    }
    cells
}

fn reply_cells(
    cast: &Cast,
    me: &PluginId,
    other: &PluginId,
    tenant: &Tenant,
    other_tenant: &Tenant,
    rights: &Rights,
) -> Vec<Cell> {
    let ns = &cast.ns;
    let p = ns.prefix();
    let upper = p.to_uppercase();
    let n = &cast.nonce;
    // Where an answer would do harm: another plugin's deliveries (a forged delivery), another
    // tenant's channel, the JetStream API, a credential, trusted inboxes.
    let targets = [
        ns.delivery(other),
        ns.channel(other_tenant, &cast.c1, other),
        "$JS.API.STREAM.NAMES".to_owned(),
        format!("$KV.{upper}_CREDENTIALS.{other}"),
        format!("_INBOX.probe-{n}"),
        format!("{p}.events.{tenant}.probe.forged"),
    ];
    let mut cells = Vec::new();
    for target in &targets {
        let trick = |via: Via| {
            cell(
                me,
                "reply trick",
                Action::ReplyTrick {
                    via,
                    target: target.clone(),
                },
                Expect::Refused,
            )
        };
        cells.push(trick(Via::OwnInbox));
        let sent = &rights.send[0];
        // Through a channel it both sends and receives, answering itself.
        if rights.receive.contains(sent) {
            cells.push(trick(Via::Channel {
                subject: ns.channel(tenant, sent, me),
                receiver: me.clone(),
            }));
        }
        // Through a colluding plugin that receives what it sends.
        for accomplice in [&cast.a, &cast.b, &cast.c] {
            let accomplice_rights = Rights::of(cast, accomplice);
            let same_tenant = (*accomplice == cast.c) == (*me == cast.c);
            if accomplice != me && same_tenant && accomplice_rights.receive.contains(sent) {
                cells.push(trick(Via::Channel {
                    subject: ns.channel(tenant, sent, me),
                    receiver: accomplice.clone(),
                }));
            }
        }
        cells.push(cell(
            me,
            "rights answer",
            Action::RightsAnswerTo {
                reply: target.clone(),
            },
            Expect::Refused,
        ));
    }
    cells.push(cell(
        me,
        "rights answer",
        Action::RightsAnswerTo {
            reply: format!("{}.probe-{n}", ns.plugin_inbox_prefix(other)),
        },
        Expect::Refused,
    ));
    cells
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_schemas::Namespace;

    #[test]
    fn the_matrix_covers_every_plugin_and_class_with_positive_controls() {
        let cast = Cast::new(&Namespace::default());
        let cells = matrix(&cast);
        for plugin in cast.plugins() {
            let mine: Vec<_> = cells.iter().filter(|c| c.plugin == *plugin).collect();
            assert!(mine.iter().any(|c| c.expect == Expect::Allowed));
            for class in [
                "events",
                "deliveries",
                "channels",
                "dead letters",
                "control",
                "$JS",
                "$KV",
                "$SYS",
                ">",
                "_INBOX",
                "reply trick",
                "rights answer",
            ] {
                assert!(
                    mine.iter().any(|c| c.class == class),
                    "{plugin} has no {class} cell"
                );
            }
        }
        // A tries the colluding path through B, and its own channel.
        assert!(cells.iter().any(|c| c.plugin == cast.a
            && matches!(&c.action, Action::ReplyTrick { via: Via::Channel { receiver, .. }, .. } if *receiver == cast.b)));
        assert!(cells.iter().any(|c| c.plugin == cast.a
            && matches!(&c.action, Action::ReplyTrick { via: Via::Channel { receiver, .. }, .. } if *receiver == cast.a)));
        // Subscription samples are concrete subjects.
        for cell in &cells {
            if let Action::Subscribe { sample, .. } = &cell.action {
                assert!(!sample.split('.').any(|t| t == "*" || t == ">"), "{sample}");
            }
        }
        assert!(cells.len() > 150, "{}", cells.len());
    }
}
