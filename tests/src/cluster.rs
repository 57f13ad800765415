//! A local JetStream cluster for one test.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use switchyard_dispatcher::local_nats::{
    ClusterOptions, LocalNatsServer, Port, Readiness, ServerError, ServerOptions,
};
use tempfile::TempDir;

use crate::wait::{wait_until, TimedOut};

/// How long a cluster may take to elect its JetStream leader; generous, as parallel tests share two
/// cores.
const FORMING_TIMEOUT: Duration = Duration::from_secs(30);
/// Route ports are chosen before the nodes start (each node must know all of them); another process
/// can take one in between, and then the cluster is started again on new ports.
const ATTEMPTS: usize = 3;

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
