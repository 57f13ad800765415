//! A real OTLP/HTTP receiver for one test: an HTTP server on a random port that decodes what
//! processes export (`/v1/traces`, `/v1/metrics`, in protobuf or JSON, as the request's
//! content type says) with OpenTelemetry's own message types, and keeps it. It can be told to
//! refuse (HTTP 503) or to hang, like a collector that is down or stuck.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::task::JoinHandle;

use crate::wait::{wait_until, TimedOut};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200, and the request is kept.
    Accept,
    /// 503 Service Unavailable; nothing is kept.
    Refuse,
    /// Never answers (the connection stays open); nothing is kept.
    Hang,
}

/// One exported span with its resource.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The resource's attributes, as text.
    pub resource: BTreeMap<String, String>,
    /// The span.
    pub span: Span,
}

impl ReceivedSpan {
    /// The span attribute `key` as text, if set.
    pub fn attribute(&self, key: &str) -> Option<String> {
        find(&self.span.attributes, key)
    }
}

/// One exported metric with its resource.
#[derive(Debug, Clone)]
pub struct ReceivedMetric {
    /// The resource's attributes, as text.
    pub resource: BTreeMap<String, String>,
    /// The metric, as exported.
    pub metric: Metric,
}

#[derive(Debug, Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    metrics: Vec<ReceivedMetric>,
    /// Content types of the requests, in order.
    content_types: Vec<String>,
    /// Requests that did not decode, with why.
    undecodable: Vec<String>,
}

#[derive(Debug)]
struct Shared {
    answer: Mutex<Answer>,
    received: Mutex<Received>,
    /// Requests answered with 503.
    refused: std::sync::atomic::AtomicUsize,
}

/// The receiver; dropping it stops the server.
#[derive(Debug)]
pub struct OtlpReceiver {
    endpoint: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl OtlpReceiver {
    /// Starts a receiver that accepts everything.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            answer: Mutex::new(Answer::Accept),
            received: Mutex::new(Received::default()),
            refused: std::sync::atomic::AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/metrics", post(metrics))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the OTLP receiver binds a port");
        let address = listener.local_addr().expect("a bound address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint: format!("http://{address}"),
            shared,
            server,
        }
    }

    /// The base URL, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// From now on, answer like this.
    pub fn answer(&self, answer: Answer) {
        *self.shared.answer.lock().unwrap() = answer;
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared.received.lock().unwrap().spans.clone()
    }

    /// Every metric received so far, one entry per export.
    pub fn metrics(&self) -> Vec<ReceivedMetric> {
        self.shared.received.lock().unwrap().metrics.clone()
    }

    /// The content types of the requests accepted so far.
    pub fn content_types(&self) -> Vec<String> {
        self.shared.received.lock().unwrap().content_types.clone()
    }

    /// How many requests were refused (answered 503) so far.
    pub fn refused(&self) -> usize {
        self.shared
            .refused
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests that could not be decoded, with why.
    pub fn undecodable(&self) -> Vec<String> {
        self.shared.received.lock().unwrap().undecodable.clone()
    }

    /// Waits until `check` holds for the spans received.
    ///
    /// # Errors
    /// [`TimedOut`] after `timeout`.
    pub async fn wait_for_spans(
        &self,
        timeout: Duration,
        check: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Result<(), TimedOut> {
        wait_until(timeout, || async { check(&self.spans()) }).await
    }

    /// Waits until `check` holds for the metrics received.
    ///
    /// # Errors
    /// [`TimedOut`] after `timeout`.
    pub async fn wait_for_metrics(
        &self,
        timeout: Duration,
        check: impl Fn(&[ReceivedMetric]) -> bool,
    ) -> Result<(), TimedOut> {
        wait_until(timeout, || async { check(&self.metrics()) }).await
    }
}

/// The status to answer a request with; never returns while hanging.
async fn respond(shared: &Shared) -> StatusCode {
    let answer = *shared.answer.lock().unwrap();
    match answer {
        Answer::Accept => StatusCode::OK,
        Answer::Refuse => {
            shared
                .refused
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            StatusCode::SERVICE_UNAVAILABLE
        }
        Answer::Hang => std::future::pending().await,
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Decodes an OTLP request body as its content type says.
fn decode<T: Message + Default + serde::de::DeserializeOwned>(
    content_type: &str,
    body: &[u8],
) -> Result<T, String> {
    if content_type.starts_with("application/json") {
        serde_json::from_slice(body).map_err(|e| format!("JSON: {e}"))
    } else if content_type.starts_with("application/x-protobuf") {
        T::decode(body).map_err(|e| format!("protobuf: {e}"))
    } else {
        Err(format!("unexpected content type `{content_type}`"))
    }
}

async fn traces(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let status = respond(&shared).await;
    if status != StatusCode::OK {
        return status;
    }
    let kind = content_type(&headers);
    let mut received = shared.received.lock().unwrap();
    match decode::<ExportTraceServiceRequest>(&kind, &body) {
        Ok(request) => {
            for resource_spans in request.resource_spans {
                let resource = attributes(
                    resource_spans
                        .resource
                        .as_ref()
                        .map_or(&[][..], |r| &r.attributes),
                );
                for scope in resource_spans.scope_spans {
                    for span in scope.spans {
                        received.spans.push(ReceivedSpan {
                            resource: resource.clone(),
                            span,
                        });
                    }
                }
            }
            received.content_types.push(kind);
            StatusCode::OK
        }
        Err(error) => {
            received.undecodable.push(error);
            StatusCode::BAD_REQUEST
        }
    }
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let status = respond(&shared).await;
    if status != StatusCode::OK {
        return status;
    }
    let kind = content_type(&headers);
    let mut received = shared.received.lock().unwrap();
    match decode::<ExportMetricsServiceRequest>(&kind, &body) {
        Ok(request) => {
            for resource_metrics in request.resource_metrics {
                let resource = attributes(
                    resource_metrics
                        .resource
                        .as_ref()
                        .map_or(&[][..], |r| &r.attributes),
                );
                for scope in resource_metrics.scope_metrics {
                    for metric in scope.metrics {
                        received.metrics.push(ReceivedMetric {
                            resource: resource.clone(),
                            metric,
                        });
                    }
                }
            }
            received.content_types.push(kind);
            StatusCode::OK
        }
        Err(error) => {
            received.undecodable.push(error);
            StatusCode::BAD_REQUEST
        }
    }
}

/// Attributes as text (`true`, `42`, `a`), by key.
pub fn attributes(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

/// The attribute `key` as text, if set.
pub fn find(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(kv.value.as_ref()))
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
