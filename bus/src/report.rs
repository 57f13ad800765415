//! What a stream holds, how it is configured and where it lives in a cluster: what `streams
//! info` and the management API show.

use async_nats::jetstream;
use async_nats::jetstream::stream::{DiscardPolicy, StorageType};
use serde::Serialize;

use crate::StreamSettings;

/// Why a stream could not be reported.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The stream does not exist (or cannot be looked up).
    #[error(
        "stream `{stream}` cannot be looked up: {reason} (run `switchyard streams provision`)"
    )]
    Missing {
        /// The stream.
        stream: String,
        /// The server's answer.
        reason: String,
    },
    /// The stream's info could not be read.
    #[error("stream `{stream}`: its info cannot be read: {reason}")]
    Info {
        /// The stream.
        stream: String,
        /// What happened.
        reason: String,
    },
}

/// What one stream holds and how it is configured and placed.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    /// The stream's name.
    pub name: String,
    /// How many copies a cluster keeps.
    pub replicas: usize,
    /// `-1` means no limit, as in JetStream.
    pub max_bytes: i64,
    /// Zero means no limit.
    pub max_age_secs: u64,
    /// How long a repeated event id is recognised as a duplicate.
    pub duplicate_window_secs: u64,
    /// `file` or `memory`.
    pub storage: &'static str,
    /// `new` (a full stream refuses messages) or `old` (it drops the oldest).
    pub discard: &'static str,
    /// The server refuses to delete, purge or roll up its messages.
    pub append_only: bool,
    /// Messages held.
    pub messages: u64,
    /// Bytes held.
    pub bytes: u64,
    /// The oldest message's sequence.
    pub first_sequence: u64,
    /// The newest message's sequence.
    pub last_sequence: u64,
    /// Consumers reading it.
    pub consumers: usize,
    /// Present when the stream is on a JetStream cluster.
    pub cluster: Option<Placement>,
}

/// Where a clustered stream lives.
#[derive(Debug, Clone, Serialize)]
pub struct Placement {
    /// The cluster's name.
    pub name: Option<String>,
    /// The server that leads the stream (none while no leader is elected).
    pub leader: Option<String>,
    /// The other replicas.
    pub replicas: Vec<Peer>,
}

/// One replica other than the leader.
#[derive(Debug, Clone, Serialize)]
pub struct Peer {
    /// The server.
    pub name: String,
    /// Caught up with the leader.
    pub current: bool,
    /// Not reachable.
    pub offline: bool,
    /// Operations behind the leader, when the server says.
    pub lag: Option<u64>,
    /// Milliseconds since the leader last heard from it.
    pub active_ms: u64,
}

/// Reads a stream's configuration, state and placement.
pub async fn stream_report(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<StreamReport, ReportError> {
    let mut stream = js
        .get_stream(&settings.name)
        .await
        .map_err(|e| ReportError::Missing {
            stream: settings.name.clone(),
            reason: e.to_string(),
        })?;
    let info = stream.info().await.map_err(|e| ReportError::Info {
        stream: settings.name.clone(),
        reason: e.to_string(),
    })?;
    let config = &info.config;
    let state = &info.state;
    // A single server reports a "cluster" of its own with no peers and no name: not placement.
    let cluster = info
        .cluster
        .as_ref()
        .filter(|c| c.name.is_some() || !c.replicas.is_empty())
        .map(|c| Placement {
            name: c.name.clone(),
            leader: c.leader.clone(),
            replicas: c
                .replicas
                .iter()
                .map(|p| Peer {
                    name: p.name.clone(),
                    current: p.current,
                    offline: p.offline,
                    lag: p.lag,
                    active_ms: u64::try_from(p.active.as_millis()).unwrap_or(u64::MAX),
                })
                .collect(),
        });
    Ok(StreamReport {
        name: config.name.clone(),
        replicas: config.num_replicas,
        max_bytes: config.max_bytes,
        max_age_secs: config.max_age.as_secs(),
        duplicate_window_secs: config.duplicate_window.as_secs(),
        storage: match config.storage {
            StorageType::File => "file",
            StorageType::Memory => "memory",
        },
        discard: match config.discard {
            DiscardPolicy::New => "new",
            DiscardPolicy::Old => "old",
        },
        append_only: config.deny_delete && config.deny_purge && !config.allow_rollup,
        messages: state.messages,
        bytes: state.bytes,
        first_sequence: state.first_sequence,
        last_sequence: state.last_sequence,
        consumers: state.consumer_count,
        cluster,
    })
}
