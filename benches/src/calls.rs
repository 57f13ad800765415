//! Operations: calls of a plugin's operation through a dispatcher to an SDK worker, against
//! raw async-nats request/reply to a raw responder doing the same echo, each on its own fresh
//! nats-server, with the same number of calls in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};
use switchyard_bus::{Bus, Calls};
use switchyard_control::registry::{Registration, Registry, TenantScope};
use switchyard_dispatcher::{Dispatcher, DispatcherConfig};
use switchyard_plugin_sdk::{CallContext, HandlerError, Plugin};
use switchyard_schemas::call::{CallErrorKind, Caller};
use switchyard_schemas::semver::Version;
use switchyard_schemas::{Manifest, PluginId, Tenant, TypedEvent};
use tokio_util::sync::CancellationToken;

use crate::latency::Latencies;
use crate::server::BenchServer;
use crate::{BenchError, BenchResult, Step};

/// The raw responder's subject.
const RAW_SUBJECT: &str = "bench.echo";
/// How long setup waits for the operation to be served.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// What a call carries, and its answer: the same.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Echo {
    /// Filler, for the payload size.
    pub pad: String,
}

impl TypedEvent for Echo {
    const TYPE: &'static str = "bench.echo";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

/// One side's result.
#[derive(Debug, Clone, Copy)]
pub struct CallMeasurement {
    /// Calls answered per second.
    pub calls_per_sec: f64,
    /// Round-trip latencies, seen by the caller.
    pub latencies: Latencies,
}

/// Makes `calls` calls with `in_flight` at once through `call`; measures them.
async fn drive<F, Fut>(calls: u64, in_flight: usize, call: F) -> BenchResult<CallMeasurement>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = BenchResult<()>>,
{
    let mut samples = Vec::with_capacity(calls as usize);
    let mut under_way = FuturesUnordered::new();
    let started = Instant::now();
    let mut sent = 0;
    while sent < calls || !under_way.is_empty() {
        while sent < calls && under_way.len() < in_flight {
            let future = call();
            under_way.push(async move {
                let at = Instant::now();
                future.await.map(|()| at.elapsed())
            });
            sent += 1;
        }
        if let Some(result) = under_way.next().await {
            samples.push(u64::try_from(result?.as_nanos()).unwrap_or(u64::MAX));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(CallMeasurement {
        calls_per_sec: calls as f64 / elapsed.max(f64::EPSILON),
        latencies: Latencies::from_samples(samples),
    })
}

/// Raw async-nats: a responder answering each request with its own payload.
///
/// # Errors
/// When the server or a request fails.
pub async fn raw(calls: u64, in_flight: usize, payload: usize) -> BenchResult<CallMeasurement> {
    let server = BenchServer::start().await?;
    let responder = server.connect().await?;
    let mut requests = responder
        .subscribe(RAW_SUBJECT)
        .await
        .step("subscribe the raw responder")?;
    let answering = responder.clone();
    let task = tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            if let Some(reply) = request.reply {
                let _ = answering.publish(reply, request.payload).await;
            }
        }
    });
    responder.flush().await.step("flush the responder")?;
    let caller = server.connect().await?;
    let body = bytes::Bytes::from(vec![b'x'; payload]);
    let measured = drive(calls, in_flight, || {
        let (caller, body) = (caller.clone(), body.clone());
        async move {
            caller
                .request(RAW_SUBJECT, body)
                .await
                .map(drop)
                .step("a raw request")
        }
    })
    .await;
    task.abort();
    measured
}

/// Switchyard: an operator calls a plugin's `echo` operation through a dispatcher; an SDK
/// worker answers with the request.
///
/// # Errors
/// When anything cannot be set up, or a call fails.
pub async fn switchyard(
    calls: u64,
    in_flight: usize,
    payload: usize,
) -> BenchResult<CallMeasurement> {
    let server = BenchServer::start().await?;
    let bus = Bus::from_client(server.connect().await?);
    bus.provision().await.step("provision the streams")?;
    let dispatcher = Dispatcher::start(server.connect().await?, DispatcherConfig::default())
        .await
        .step("start the dispatcher")?;
    let manifest = Manifest::from_toml_str(&format!(
        "[plugin]\nid = \"bench\"\nversion = \"1.0.0\"\ncore = \"*\"\n\
         [[operations]]\nname = \"echo\"\nmax_in_flight = {}\n\
         request = {{ type = \"bench.echo\", version = \"1.0.0\" }}\n\
         response = {{ type = \"bench.echo\", version = \"1.0.0\" }}\n",
        in_flight.max(1)
    ))
    .step("build the manifest")?;
    Registry::open(bus.jetstream(), bus.namespace())
        .await
        .step("open the registry")?
        .put(&Registration::new(manifest.clone(), TenantScope::All))
        .await
        .step("register the plugin")?;
    let plugin = Plugin::new(manifest)
        .max_concurrency(in_flight.max(1))
        .operation("echo", |echo: Echo, _ctx: CallContext| async move {
            Ok::<_, HandlerError>(echo)
        });
    let worker_client = server.connect().await?;
    let stop = CancellationToken::new();
    let namespace = bus.namespace().clone();
    let stopped = stop.clone();
    let worker = tokio::spawn(async move {
        plugin
            .serve(
                worker_client,
                namespace,
                stopped.cancelled_owned(),
                None,
                None,
            )
            .await
    });
    let calls_client = server.connect().await?;
    let caller = Arc::new(Calls::new(
        calls_client,
        bus.namespace().clone(),
        Caller::Operator("bench".to_owned()),
    ));
    let tenant = Tenant::new("bench").step("a tenant")?;
    let plugin_id = PluginId::new("bench").step("a plugin id")?;
    let echo = Echo {
        pad: "x".repeat(payload),
    };
    // Until the dispatcher serves the operation and the worker answers.
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        match caller
            .call::<_, Echo>(&tenant, &plugin_id, "echo", &echo)
            .await
        {
            Ok(_) => break,
            Err(error)
                if matches!(
                    error.kind,
                    CallErrorKind::Unavailable | CallErrorKind::NoWorker
                ) && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => return Err(BenchError::new("the first call", error)),
        }
    }
    let measured = drive(calls, in_flight, || {
        let (caller, tenant, plugin_id, echo) = (
            Arc::clone(&caller),
            tenant.clone(),
            plugin_id.clone(),
            echo.clone(),
        );
        async move {
            caller
                .call::<_, Echo>(&tenant, &plugin_id, "echo", &echo)
                .await
                .map(drop)
                .step("a call")
        }
    })
    .await;
    stop.cancel();
    let _ = worker.await;
    dispatcher.shutdown().await;
    measured
}
