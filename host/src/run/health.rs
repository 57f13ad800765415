//! Whether a host's workers still answer: their hellos and heartbeats, noted as they come;
//! a worker silent past its `heartbeat_timeout` killed (its supervisor starts it again).

use std::sync::Arc;

use futures::StreamExt as _;

use super::reconcile::Instances;
use super::shared::Shared;

/// Notes when each instance of this host is heard from. A hello counts for the instance it
/// names only when it came on that plugin's own subject, which only the plugin may publish on.
pub(super) async fn listen(mut hellos: async_nats::Subscriber, shared: Arc<Shared>) {
    while let Some(message) = hellos.next().await {
        let Some(plugin) = message.subject.rsplit('.').next() else {
            continue;
        };
        let hello = switchyard_schemas::delivery::Hello::read(&message.payload);
        let Some(instance) = hello.instance.as_deref().and_then(|i| i.split(' ').next()) else {
            continue;
        };
        // `{plugin}.{slot}@{version}`
        let named_plugin = instance
            .split_once('@')
            .and_then(|(slot, _)| slot.rsplit_once('.'))
            .map(|(p, _)| p);
        if named_plugin == Some(plugin) {
            let mut heard = shared.heard.lock().expect("never poisoned");
            if heard.len() < 100_000 || heard.contains_key(instance) {
                heard.insert(instance.to_owned(), tokio::time::Instant::now());
            }
        }
    }
}

/// Kills each worker that was heard from since it started and then not for its
/// `heartbeat_timeout`: it is hung (or its connection is), and its supervisor starts it again.
pub(super) fn kill_the_unresponsive(shared: &Shared, instances: &Instances) {
    let now = tokio::time::Instant::now();
    let mut heard = shared.heard.lock().expect("never poisoned");
    // Forget what no instance here is.
    heard.retain(|name, _| instances.all().any(|(_, i)| i.name == *name));
    for ((plugin, slot), instance) in instances.all() {
        let Some((started, _)) = *instance.started.lock().expect("never poisoned") else {
            continue;
        };
        let Some(last) = heard.get(&instance.name).copied() else {
            continue;
        };
        if last < started {
            continue;
        }
        let silent = now.duration_since(last);
        if silent > instance.heartbeat_timeout {
            tracing::warn!(%plugin, slot, ?silent, "a worker stopped sending heartbeats; killing it");
            instance.kill(format!(
                "stopped answering (no heartbeat for {} s, heartbeat_timeout = {} s)",
                silent.as_secs(),
                instance.heartbeat_timeout.as_secs()
            ));
            heard.remove(&instance.name);
        }
    }
}
