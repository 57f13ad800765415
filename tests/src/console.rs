//! The management API under test: a [`Switchyard`] with a console serving it on a free port,
//! one operator of each role, and a raw HTTP/1 client (hyper, no API client of ours).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use switchyard_console::{Console, OperatorName, Role};

use switchyard_control::audit::{AuditFilter, AuditLog, StoredEntry};
use switchyard_control::registry::{Registration, TenantScope};
use switchyard_schemas::delivery::{ErrorCode, Outcome};

use crate::{manifest, Behaviour, Switchyard, TestServer, TestWorker};

/// A plugin `id` on `order.*` declaring settings: `greeting` (text, default `hello`),
/// `retries` (an integer, default 3) and the secret `token`.
pub fn settings_manifest(id: &str) -> switchyard_schemas::Manifest {
    switchyard_schemas::Manifest::from_toml_str(&format!(
        r#"
        [plugin]
        id = "{id}"
        version = "1.0.0"
        core = "*"

        [[subscriptions]]
        name = "orders"
        events = ["order.*"]

        [settings]
        greeting = "hello"
        retries = 3

        [settings_schema.greeting]
        type = "string"

        [settings_schema.retries]
        type = "integer"

        [settings_schema.token]
        type = "string"
        secret = true
        "#
    ))
    .expect("a valid manifest")
}

/// A plugin whose worker fails every event for good (`order.invalid`) while its switch is on.
pub struct FailingPlugin {
    /// The worker.
    pub worker: TestWorker,
    /// On: it fails; off: it succeeds.
    pub failing: Arc<AtomicBool>,
}

impl FailingPlugin {
    /// From now on, it succeeds.
    pub fn recover(&self) {
        self.failing.store(false, Ordering::SeqCst);
    }
}

/// A raw HTTP request to send.
#[derive(Debug, Clone)]
pub struct HttpCall {
    /// `GET`, `POST`, `DELETE`, …
    pub method: &'static str,
    /// The path and query, e.g. `/api/v1/plugins`.
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpCall {
    /// A call without body or headers.
    pub fn new(method: &'static str, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// With `Authorization: Bearer {token}`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// With a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// With raw bytes as the body (`application/octet-stream`).
    pub fn bytes(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self.header("content-type", "application/octet-stream")
    }

    /// With a JSON body.
    pub fn json(mut self, body: &Value) -> Self {
        self.body = serde_json::to_vec(body).expect("JSON encodes");
        self.header("content-type", "application/json")
    }
}

/// A console over a fresh Switchyard, and a token per role.
pub struct ConsoleFixture {
    /// The deployment.
    pub sy: Switchyard<TestServer>,
    /// The console.
    pub console: Console,
    /// `viewer`'s token.
    pub viewer: String,
    /// `operator`'s token.
    pub operator: String,
    /// `admin`'s token.
    pub admin: String,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl ConsoleFixture {
    /// Starts a Switchyard with a dispatcher, a console on a free port, and the operators
    /// `viewer`, `operator` and `admin` with those roles.
    ///
    /// # Panics
    /// When anything fails to start.
    pub async fn start() -> Self {
        let sy = Box::pin(Switchyard::start()).await;
        let console = Console::start(&sy.bus, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("the console starts");
        let auditor = sy.auditor().await;
        let mut tokens = Vec::new();
        for role in Role::ALL {
            let name: OperatorName = role.as_str().parse().expect("a valid name");
            let token = console
                .management()
                .operators()
                .add(&name, role, &auditor)
                .await
                .expect("the operator is added");
            tokens.push(token.expose().to_owned());
        }
        let [viewer, operator, admin] = <[String; 3]>::try_from(tokens).expect("three roles");
        Self {
            sy,
            console,
            viewer,
            operator,
            admin,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Installs the plugin `id` (on `order.*`, one attempt) waiting for approval, as `plugins
    /// add` of a package leaves it.
    ///
    /// # Panics
    /// When it cannot be stored.
    pub async fn install_pending(&self, id: &str) {
        self.sy
            .registry
            .put(&Registration::pending(
                manifest(id, "max_attempts = 1"),
                TenantScope::All,
            ))
            .await
            .expect("the registration is stored");
    }

    /// Registers the plugin `id` (on `order.*`, one attempt) and starts a worker that fails
    /// every event for good until [`FailingPlugin::recover`].
    pub async fn failing_plugin(&self, id: &str) -> FailingPlugin {
        self.sy.register(manifest(id, "max_attempts = 1")).await;
        let failing = Arc::new(AtomicBool::new(true));
        let worker = TestWorker::start(&self.sy.url(), self.sy.namespace(), id, {
            let failing = Arc::clone(&failing);
            move |_| {
                if failing.load(Ordering::SeqCst) {
                    Behaviour::Reply(Outcome::Failed {
                        code: ErrorCode::new("order.invalid").expect("a valid code"),
                        reason: "the total is zero".into(),
                    })
                } else {
                    Behaviour::Reply(Outcome::Done)
                }
            }
        })
        .await;
        FailingPlugin { worker, failing }
    }

    /// The console's base URL, `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        self.console.url()
    }

    /// The token of `role`.
    pub fn token(&self, role: Role) -> &str {
        match role {
            Role::Viewer => &self.viewer,
            Role::Operator => &self.operator,
            Role::Admin => &self.admin,
        }
    }

    /// Sends `call` and reads the whole answer.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn send(&self, call: HttpCall) -> (u16, Value) {
        let (status, _, body) = self.send_for_headers(call).await;
        (status, body)
    }

    /// Sends `call`: the status, the headers and the body.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn send_for_headers(&self, call: HttpCall) -> (u16, axum::http::HeaderMap, Value) {
        let uri = format!("http://{}{}", self.console.address(), call.path);
        let mut builder = axum::http::Request::builder().method(call.method).uri(&uri);
        for (name, value) in &call.headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Full::new(Bytes::from(call.body)))
            .expect("a valid request");
        let response = self
            .client
            .request(request)
            .await
            .expect("the console answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("the body is read")
            .to_bytes();
        let body = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        (status, headers, body)
    }

    /// Opens `path` as `token` and reads until the first server-sent event ends: its text.
    ///
    /// # Panics
    /// When no event arrives within 20 s.
    pub async fn first_event(&self, token: &str, path: &str) -> (u16, String) {
        let request = axum::http::Request::builder()
            .uri(format!("http://{}{path}", self.console.address()))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .expect("a valid request");
        let response = self
            .client
            .request(request)
            .await
            .expect("the console answers");
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut text = String::new();
        let read = async {
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.expect("a frame").into_data() {
                    text.push_str(&String::from_utf8_lossy(&data));
                    if text.contains("\n\n") {
                        break;
                    }
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(20), read)
            .await
            .expect("an event arrives");
        (status, text)
    }

    /// `GET path` as `token`.
    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        self.send(HttpCall::new("GET", path).bearer(token)).await
    }

    /// `DELETE path` as `token`.
    pub async fn delete(&self, token: &str, path: &str) -> (u16, Value) {
        self.send(HttpCall::new("DELETE", path).bearer(token)).await
    }

    /// `POST path` with a JSON body as `token`.
    pub async fn post(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        self.send(HttpCall::new("POST", path).bearer(token).json(body))
            .await
    }

    /// Every audit entry, oldest first.
    ///
    /// # Panics
    /// When the audit log cannot be read.
    pub async fn audit(&self) -> Vec<StoredEntry> {
        AuditLog::open(self.sy.bus.jetstream(), self.sy.namespace())
            .await
            .expect("the audit log opens")
            .list(&AuditFilter::default())
            .await
            .expect("the audit log is read")
    }
}

/// The bytes of a package of `id` `version` on `order.*` (with `extra` manifest TOML), built
/// as `switchyard package build` builds one, and signed by `signer` when given.
///
/// # Panics
/// When the package cannot be built.
pub fn package_bytes(
    id: &str,
    version: &str,
    extra: &str,
    signer: Option<&switchyard_control::package::PublisherKeyPair>,
) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path();
    std::fs::create_dir_all(root.join("bin")).expect("bin/");
    std::fs::write(
        root.join("plugin.toml"),
        format!(
            "[plugin]\nid = \"{id}\"\nversion = \"{version}\"\ncore = \"^0.1\"\n\n\
             [[subscriptions]]\nname = \"orders\"\nevents = [\"order.*\"]\n{extra}"
        ),
    )
    .expect("the manifest is written");
    std::fs::write(
        root.join("bin/worker"),
        format!("a worker of {id} {version}"),
    )
    .expect("the worker is written");
    std::fs::write(
        root.join("package.toml"),
        "[binaries]\nx86_64-unknown-linux-gnu = \"bin/worker\"\n\
         aarch64-unknown-linux-gnu = \"bin/worker\"\n",
    )
    .expect("package.toml is written");
    let package = switchyard_control::package::build_from_dir(root).expect("the package is built");
    let package = match signer {
        Some(signer) => package.signed(signer).expect("the package is signed"),
        None => package,
    };
    package.bytes().to_vec()
}
