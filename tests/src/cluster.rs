//! A local JetStream cluster for one test.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use switchyard_dispatcher::local_nats::{
    ClusterOptions, LocalNatsServer, Port, Readiness, ServerError, ServerOptions,
};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use crate::wait::{wait_until, TimedOut};

/// How long a cluster may take to elect its JetStream leader; generous, as parallel tests share two
/// cores.
const FORMING_TIMEOUT: Duration = Duration::from_secs(30);
/// Route ports are chosen before the nodes start (each node must know all of them); another process
/// can take one in between, and then the cluster is started again on new ports.
const ATTEMPTS: usize = 3;
/// How long one read of a node's monitoring endpoint may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A local nats-server cluster with JetStream for one test: every node on 127.0.0.1 with its own
/// random client and monitoring ports and its own store, routed to all the others.
///
/// Dropping it kills every node and removes their stores, also while a panicking test unwinds.
#[derive(Debug)]
pub struct TestCluster {
    // Declared before `dir`, so the processes are dead before their directories are removed.
    nodes: Vec<LocalNatsServer>,
    name: String,
    dir: TempDir,
}

impl TestCluster {
    /// Starts `size` nodes and waits until JetStream is current on all of them (a meta leader is
    /// elected and every node follows it), so replicated streams can be created at once.
    ///
    /// # Panics
    ///
    /// When `size` is 0, or the cluster does not form within 30 s; the message quotes node 0's log.
    pub async fn start(size: usize) -> Self {
        assert!(size > 0, "a cluster needs at least one node");
        let dir = tempfile::Builder::new()
            .prefix("switchyard-cluster-")
            .tempdir()
            .unwrap_or_else(|error| {
                panic!("creating a temporary directory for the cluster: {error}")
            });
        // Unique, so that clusters of parallel tests could never join each other.
        let name = dir
            .path()
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "switchyard-cluster".to_owned());

        let mut attempt = 1;
        let nodes = loop {
            let attempt_dir = dir.path().join(format!("attempt-{attempt}"));
            match start_nodes(&attempt_dir, &name, size).await {
                Ok(nodes) => break nodes,
                Err(error) if attempt < ATTEMPTS && lost_port_race(&error) => {
                    tracing::debug!(%error, "a route port was taken; starting the cluster again");
                    attempt += 1;
                }
                Err(error) => panic!("starting a {size}-node test cluster: {error}"),
            }
        };
        let cluster = Self { nodes, name, dir };
        if let Err(timed_out) = cluster.wait_until_healthy(FORMING_TIMEOUT).await {
            panic!(
                "the {size}-node test cluster did not form its JetStream cluster: {timed_out}; \
                 the end of node 0's log:\n{}",
                cluster.nodes[0].log_tail()
            );
        }
        cluster
    }

    /// Waits until every node's `/healthz` answers 200 (JetStream current with the meta leader),
    /// e.g. after restarting a node.
    ///
    /// # Errors
    ///
    /// [`TimedOut`] when some node is still not healthy after `timeout`.
    pub async fn wait_until_healthy(&self, timeout: Duration) -> Result<(), TimedOut> {
        wait_until(timeout, || async {
            for node in &self.nodes {
                if !node.is_healthy().await {
                    return false;
                }
            }
            true
        })
        .await
    }

    /// The cluster name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client URL of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(LocalNatsServer::url).collect()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[LocalNatsServer] {
        &self.nodes
    }

    /// One node, e.g. to [`kill`](LocalNatsServer::kill) or [`restart`](LocalNatsServer::restart) it.
    ///
    /// # Panics
    ///
    /// When there is no node `index`.
    pub fn node_mut(&mut self, index: usize) -> &mut LocalNatsServer {
        &mut self.nodes[index]
    }

    /// The index of the node whose server name is `server_name` (as stream info names a
    /// stream's leader and replicas).
    pub fn node_index(&self, server_name: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|node| node.options().name.as_deref() == Some(server_name))
    }

    /// The server name of node `index`.
    ///
    /// # Panics
    ///
    /// When there is no node `index`.
    pub fn node_name(&self, index: usize) -> &str {
        self.nodes[index]
            .options()
            .name
            .as_deref()
            .expect("every node of a test cluster has a name")
    }

    /// Replaces node `index` with a node whose disk is empty, as when a machine is lost and a
    /// new one takes its place: kills it (SIGKILL, as a crash would), deletes its store
    /// directory, and starts a new server with the same name, ports and routes, so that it
    /// rejoins the cluster and has to be caught up by the others. The old node's log is kept
    /// beside the stores, as `node-<index>-replaced-<pid>.log`.
    ///
    /// Returns once the new node accepts connections; [`wait_until_healthy`](Self::wait_until_healthy)
    /// waits for its JetStream to be current.
    ///
    /// # Panics
    ///
    /// When there is no node `index`, or the store cannot be deleted, or the new node does not
    /// start.
    pub async fn replace_node_with_empty_store(&mut self, index: usize) {
        let old = &mut self.nodes[index];
        let options = old.options().clone();
        let pid = old.pid().unwrap_or_default();
        old.kill()
            .unwrap_or_else(|error| panic!("killing node {index}: {error}"));
        let log = old.log_file().to_path_buf();
        let kept_log = self
            .dir
            .path()
            .join(format!("node-{index}-replaced-{pid}.log"));
        if let Err(error) = std::fs::rename(&log, &kept_log) {
            tracing::debug!(%error, log = %log.display(), "the replaced node's log is not kept");
        }
        std::fs::remove_dir_all(&options.store_dir).unwrap_or_else(|error| {
            panic!(
                "deleting the store {} of node {index}: {error}",
                options.store_dir.display()
            )
        });
        // The options hold the ports the old node bound, so clients and routes find the new one.
        let fresh = LocalNatsServer::start(options)
            .await
            .unwrap_or_else(|error| panic!("starting the replacement of node {index}: {error}"));
        // The old one is dead already; dropping it does nothing more.
        self.nodes[index] = fresh;
    }

    /// What node `index` itself holds of `stream` (its own replica, not the leader's view),
    /// from its monitoring endpoint (`/jsz`); `None` while it holds no replica of it or does
    /// not answer.
    pub async fn replica_state(&self, index: usize, stream: &str) -> Option<ReplicaState> {
        let port = self.nodes[index].monitoring_port()?;
        let (status, body) = timeout(
            PROBE_TIMEOUT,
            http_get(port, "/jsz?accounts=true&streams=true"),
        )
        .await
        .ok()?
        .ok()?;
        if status != 200 {
            return None;
        }
        let jsz: Jsz = serde_json::from_slice(&body).ok()?;
        jsz.account_details
            .into_iter()
            .flat_map(|account| account.stream_detail)
            .find(|detail| detail.name == stream)
            .map(|detail| ReplicaState {
                messages: detail.state.messages,
                first_sequence: detail.state.first_seq,
                last_sequence: detail.state.last_seq,
            })
    }

    /// Every node's `/healthz?details=true` answer (status and body), and the end of the log
    /// of each node that is not healthy: for the message of a test that waited in vain.
    pub async fn health_report(&self) -> String {
        let mut report = String::new();
        for (index, node) in self.nodes.iter().enumerate() {
            let name = node.options().name.as_deref().unwrap_or("?");
            let answer = match node.monitoring_port() {
                Some(port) => timeout(PROBE_TIMEOUT, http_get(port, "/healthz?details=true")).await,
                None => {
                    report.push_str(&format!("node {index} ({name}): no monitoring port\n"));
                    continue;
                }
            };
            let healthy = match answer {
                Ok(Ok((status, body))) => {
                    let body = String::from_utf8_lossy(&body);
                    report.push_str(&format!(
                        "node {index} ({name}): {status} {}\n",
                        body.trim()
                    ));
                    status == 200
                }
                Ok(Err(error)) => {
                    report.push_str(&format!("node {index} ({name}): {error}\n"));
                    false
                }
                Err(_) => {
                    report.push_str(&format!("node {index} ({name}): /healthz timed out\n"));
                    false
                }
            };
            if !healthy {
                report.push_str(&format!(
                    "the end of node {index}'s log:\n{}\n",
                    node.log_tail()
                ));
            }
        }
        report
    }

    /// The directory holding every node's store and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new client that knows every node, so it fails over when one stops.
    ///
    /// # Panics
    ///
    /// When the connection fails.
    pub async fn client(&self) -> async_nats::Client {
        let urls = self.urls();
        async_nats::connect(urls.as_slice())
            .await
            .unwrap_or_else(|error| panic!("connecting to the test cluster at {urls:?}: {error}"))
    }

    /// A JetStream context on a new [`client`](Self::client), with a 15 s request timeout.
    ///
    /// # Panics
    ///
    /// When the connection fails.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        crate::jetstream_context(self.client().await)
    }
}

/// What one node holds of a stream: [`TestCluster::replica_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaState {
    /// The messages it holds.
    pub messages: u64,
    /// The first sequence it holds.
    pub first_sequence: u64,
    /// The last sequence it holds.
    pub last_sequence: u64,
}

/// The part of `/jsz?accounts=true&streams=true` that [`TestCluster::replica_state`] reads.
#[derive(Debug, serde::Deserialize)]
struct Jsz {
    #[serde(default)]
    account_details: Vec<JszAccount>,
}

#[derive(Debug, serde::Deserialize)]
struct JszAccount {
    #[serde(default)]
    stream_detail: Vec<JszStream>,
}

#[derive(Debug, serde::Deserialize)]
struct JszStream {
    name: String,
    state: JszStreamState,
}

#[derive(Debug, serde::Deserialize)]
struct JszStreamState {
    messages: u64,
    first_seq: u64,
    last_seq: u64,
}

/// The status and body of `GET <path>` on the local monitoring port (HTTP/1.0: the server
/// closes the connection after its answer).
async fn http_get(port: u16, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let invalid = |what| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let head_end = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of the HTTP head"))?;
    let status = response
        .get(9..12)
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("no HTTP status line"))?;
    Ok((status, response.split_off(head_end + 4)))
}

async fn start_nodes(
    dir: &Path,
    name: &str,
    size: usize,
) -> Result<Vec<LocalNatsServer>, ServerError> {
    let route_ports = free_ports(size)?;
    let routes: Vec<String> = route_ports
        .iter()
        .map(|port| format!("nats://127.0.0.1:{port}"))
        .collect();
    let mut nodes = Vec::with_capacity(size);
    for (index, route_port) in route_ports.into_iter().enumerate() {
        let node = LocalNatsServer::start(ServerOptions {
            store_dir: dir.join(format!("node-{index}")),
            name: Some(format!("{name}-n{index}")),
            monitoring_port: Some(Port::Random),
            cluster: Some(ClusterOptions {
                name: name.to_owned(),
                port: Port::Fixed(route_port),
                routes: routes.clone(),
            }),
            // A node's JetStream waits for the others: readiness is checked for the whole cluster.
            readiness: Readiness::Accepting,
            ..Default::default()
        })
        .await?;
        nodes.push(node);
    }
    Ok(nodes)
}

/// `count` distinct free ports, released for the servers to bind.
fn free_ports(count: usize) -> Result<Vec<u16>, ServerError> {
    let io_error = |source| ServerError::Io {
        action: "find a free port on",
        path: "127.0.0.1".into(),
        source,
    };
    // All held at once, so they differ.
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_error)?;
    listeners
        .iter()
        .map(|listener| listener.local_addr().map(|addr| addr.port()))
        .collect::<Result<_, _>>()
        .map_err(io_error)
}

fn lost_port_race(error: &ServerError) -> bool {
    matches!(error, ServerError::Exited { log_tail, .. } if log_tail.contains("address already in use"))
}
