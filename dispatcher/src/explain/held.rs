//! Asking the running dispatchers which events they hold: the request, the answer, and the
//! dispatcher's side that answers it.
//!
//! JetStream knows an event's consumer position (pending, delivered, below the ack floor) but
//! not whether a delivered event is being attempted, waiting for a retry, or was acknowledged
//! out of order; each dispatcher knows that of the events it holds. So `explain` sends one
//! request on `{prefix}.control.explain` and gathers every dispatcher's answer.
//!
//! Only trusted users may publish there: the rights a plugin is given never include the
//! control subjects (docs/security.md).

use std::collections::BTreeMap;
use std::sync::Arc;

use dashmap::DashMap;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use switchyard_schemas::{Namespace, PluginId};
use tokio_util::sync::CancellationToken;

use crate::consumer::consumer_name;
use crate::pipeline::in_hand::Held;
use crate::pipeline::DeliveryPath;

/// The most sequences one request may ask about; a larger request is answered with an error.
pub const MAX_SEQUENCES: usize = 256;

/// What `explain` asks every dispatcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldQuery {
    /// The events' sequences in the events stream.
    pub sequences: Vec<u64>,
}

/// One dispatcher's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldAnswer {
    /// The dispatcher instance that answers.
    pub instance: String,
    /// The asked-about events it holds, for each (plugin, subscription).
    #[serde(default)]
    pub held: Vec<HeldEvent>,
    /// How many events it holds per consumer (`{plugin}~{subscription}`), all of them, not
    /// only those asked about.
    #[serde(default)]
    pub held_per_consumer: BTreeMap<String, usize>,
    /// Why the request was refused, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One held event of one (plugin, subscription).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldEvent {
    /// The plugin.
    pub plugin: PluginId,
    /// The subscription.
    pub subscription: String,
    /// The event's sequence in the events stream.
    pub sequence: u64,
    /// Where it is.
    #[serde(flatten)]
    pub held: Held,
}

/// The running delivery paths, by (plugin, subscription).
pub(crate) type Paths = Arc<DashMap<(PluginId, String), Arc<DeliveryPath>>>;

/// Answers held-event queries on `{prefix}.control.explain` until `stop` is cancelled.
pub(crate) async fn answer(
    client: async_nats::Client,
    namespace: Namespace,
    instance: String,
    paths: Paths,
    stop: CancellationToken,
) {
    let mut requests = match client.subscribe(namespace.explain_requests()).await {
        Ok(requests) => requests,
        Err(error) => {
            tracing::warn!(%error, "cannot answer explain requests");
            return;
        }
    };
    loop {
        let request = tokio::select! {
            request = requests.next() => match request {
                Some(request) => request,
                None => return,
            },
            () = stop.cancelled() => return,
        };
        let Some(reply) = request.reply else {
            continue;
        };
        let answer = answer_one(&instance, &paths, &request.payload);
        let Ok(body) = serde_json::to_vec(&answer) else {
            continue;
        };
        if let Err(error) = client.publish(reply, body.into()).await {
            tracing::debug!(%error, "explain answer not sent");
        }
    }
}

/// Reads a query from a request's bytes: JSON, at most [`MAX_SEQUENCES`] sequences.
///
/// # Errors
/// Why the bytes are not such a query.
pub fn read_query(payload: &[u8]) -> Result<HeldQuery, String> {
    match serde_json::from_slice::<HeldQuery>(payload) {
        Ok(query) if query.sequences.len() <= MAX_SEQUENCES => Ok(query),
        Ok(query) => Err(format!(
            "{} sequences asked about; at most {MAX_SEQUENCES} are answered",
            query.sequences.len()
        )),
        Err(error) => Err(format!("not a held-events query: {error}")),
    }
}

/// The answer to one request's bytes.
fn answer_one(instance: &str, paths: &Paths, payload: &[u8]) -> HeldAnswer {
    let mut answer = HeldAnswer {
        instance: instance.to_owned(),
        held: Vec::new(),
        held_per_consumer: BTreeMap::new(),
        error: None,
    };
    let query = match read_query(payload) {
        Ok(query) => query,
        Err(error) => {
            answer.error = Some(error);
            return answer;
        }
    };
    for entry in paths.iter() {
        let ((plugin, subscription), path) = entry.pair();
        answer
            .held_per_consumer
            .insert(consumer_name(plugin, subscription), path.in_hand.len());
        for &sequence in &query.sequences {
            if let Some(held) = path.in_hand.get(sequence) {
                answer.held.push(HeldEvent {
                    plugin: plugin.clone(),
                    subscription: subscription.clone(),
                    sequence,
                    held,
                });
            }
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_or_oversized_queries_get_an_error_not_a_panic() {
        let paths = Paths::default();
        for payload in [
            &b""[..],
            b"{",
            b"[]",
            b"{\"sequences\": -1}",
            b"{\"sequences\": [1e999]}",
        ] {
            let answer = answer_one("d1", &paths, payload);
            assert!(answer.error.is_some(), "{payload:?}");
        }
        let many = serde_json::to_vec(&HeldQuery {
            sequences: (0..=MAX_SEQUENCES as u64).collect(),
        })
        .unwrap();
        assert!(answer_one("d1", &paths, &many)
            .error
            .unwrap()
            .contains("at most"));
        let fine = answer_one("d1", &paths, br#"{"sequences": [1, 2]}"#);
        assert_eq!(fine.error, None);
        assert_eq!(fine.instance, "d1");
    }
}
