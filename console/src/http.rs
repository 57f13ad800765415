//! The management API over HTTP/JSON (axum), the live view as server-sent events, and the web
//! console's assets. Each route only turns an HTTP request into a [`Request`] and the answer
//! back: [`Management`] does the rest.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use futures::Stream;
use serde_json::Value;
use switchyard_control::auth::operators::Identity;

use crate::error::{ApiError, ErrorKind};
use crate::live::Live;
use crate::management::{Management, Transport};
use crate::request::{self, ApproveArgs, AuditQuery, DeadLetterQuery, Request, RollbackArgs};
use crate::service::MAX_BODY;

/// The largest package the console uploads over HTTP; larger ones are published with
/// `switchyard package publish`.
pub const MAX_PACKAGE_UPLOAD: usize = 64 * 1024 * 1024;
use crate::token::{bearer, cookie, SESSION_COOKIE};

/// What every route shares.
#[derive(Debug, Clone)]
struct Shared {
    management: Management,
    live: Live,
}

/// The router of the API and the console.
pub fn router(management: Management, live: Live) -> Router {
    let api = Router::new()
        .route("/session", post(sign_in).delete(sign_out))
        .route(
            "/whoami",
            get(|s: State<Shared>, h: HeaderMap| read(s, h, Request::Whoami)),
        )
        .route(
            "/overview",
            get(|s: State<Shared>, h: HeaderMap| read(s, h, Request::Overview)),
        )
        .route("/live", get(live_view))
        .route(
            "/plugins",
            get(|s: State<Shared>, h: HeaderMap| read(s, h, Request::ListPlugins))
                .post(install_plugin),
        )
        .route("/plugins/{id}/logs", get(plugin_logs))
        .route(
            "/packages",
            post(publish_package).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/streams",
            get(|s: State<Shared>, h: HeaderMap| read(s, h, Request::StreamsInfo)),
        )
        .route("/streams/provision", post(provision))
        .route("/events", post(publish_event))
        .route("/events/{id}/explain", get(explain))
        .route("/plugins/{id}", get(show_plugin).delete(remove_plugin))
        .route(
            "/plugins/{id}/credentials",
            post(issue_credentials).delete(revoke_credentials),
        )
        .route(
            "/plugins/{id}/settings",
            get(show_settings).post(change_settings),
        )
        .route(
            "/plugins/{id}/secrets/{name}",
            axum::routing::put(set_secret),
        )
        .route("/plugins/{id}/operations/{operation}", post(call_operation))
        .route("/plugins/{id}/{verb}", post(change_plugin))
        .route(
            "/approvals",
            get(|s: State<Shared>, h: HeaderMap| read(s, h, Request::ListApprovals)),
        )
        .route("/dead-letters", get(list_dead_letters))
        .route("/dead-letters/replay", post(replay))
        .route("/dead-letters/purge", post(purge))
        .route("/dead-letters/{seq}", get(show_dead_letter))
        .route("/audit", get(list_audit))
        .route(
            "/operators",
            get(|s: State<Shared>, h: HeaderMap| read(s, h, Request::ListOperators))
                .post(add_operator),
        )
        .route("/operators/{name}", delete(remove_operator))
        .route(
            "/trust",
            get(|s: State<Shared>, h: HeaderMap| read(s, h, Request::ListTrust)).post(add_trust),
        )
        .route("/trust/{key}", delete(remove_trust))
        .route(
            "/catalog",
            get(|s: State<Shared>, h: HeaderMap| read(s, h, Request::Catalog)),
        )
        .route(
            "/services",
            get(|s: State<Shared>, h: HeaderMap| read(s, h, Request::ListServices))
                .post(add_service),
        )
        .route("/services/{name}", delete(remove_service))
        .route("/openapi.json", get(openapi))
        .fallback(no_route)
        .method_not_allowed_fallback(no_route);
    Router::new()
        .nest("/api/v1", api)
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", crate::assets::INDEX) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", crate::assets::APP_JS) }),
        )
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", crate::assets::STYLE_CSS) }),
        )
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(Shared { management, live })
}

/// Headers on every answer: the console loads nothing from elsewhere, is not framed, and API
/// answers are not cached.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn openapi() -> Response {
    asset("application/json", crate::assets::OPENAPI)
}

/// An error as its status and JSON body.
fn failure(error: &ApiError) -> Response {
    let status =
        StatusCode::from_u16(error.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(error.body())).into_response()
}

/// The operator token of a request: its bearer token, else its session cookie.
fn token(headers: &HeaderMap) -> Option<String> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    authorization.or_else(|| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| cookie(v, SESSION_COOKIE))
    })
}

/// Refuses a request a browser sent from another site's page: its `Origin` (when sent) must
/// be this server's.
fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    // A browser that says the request comes from another site is refused whether or not it
    // sent an `Origin`.
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if fetch_site.eq_ignore_ascii_case("cross-site") || fetch_site.eq_ignore_ascii_case("same-site")
    {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            format!("a request from another site (Sec-Fetch-Site: {fetch_site}) is refused"),
        ));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = origin.to_str().unwrap_or_default();
    let matches = host.is_some_and(|host| {
        origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            == Some(host)
    });
    if matches {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "a request from another site (origin `{}`) is refused",
                origin.chars().take(100).collect::<String>()
            ),
        ))
    }
}

/// Who is calling. A request from another site is refused (and recorded) before anything
/// else.
async fn identify(
    shared: &Shared,
    headers: &HeaderMap,
    method: &Method,
    what: &str,
) -> Result<Identity, ApiError> {
    let token = token(headers);
    let what = format!("{method} {what}");
    if let Err(error) = same_origin(headers) {
        return Err(shared
            .management
            .refused(token.as_deref(), Transport::Http, &what, error)
            .await);
    }
    shared
        .management
        .authenticate(token.as_deref(), Transport::Http, &what)
        .await
}

/// Identifies the caller and makes `request`; a request that could not be read is recorded
/// as the caller's failed call.
async fn answer(
    shared: &Shared,
    headers: &HeaderMap,
    method: Method,
    request: Result<Request, ApiError>,
) -> Response {
    let what = request
        .as_ref()
        .map_or_else(|_| "a malformed call".to_owned(), Request::target);
    let result = async {
        let identity = identify(shared, headers, &method, &what).await?;
        let request = match request {
            Ok(request) => request,
            Err(error) => {
                return Err(shared
                    .management
                    .failed(
                        &identity,
                        Transport::Http,
                        &format!("{method} {what}"),
                        error,
                    )
                    .await)
            }
        };
        shared
            .management
            .call(&identity, Transport::Http, request)
            .await
    }
    .await;
    match result {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(error) => failure(&error),
    }
}

/// A route or method the API does not have: refused like any call (and recorded).
async fn no_route(
    State(shared): State<Shared>,
    headers: HeaderMap,
    method: Method,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
) -> Response {
    let path: String = uri.path().chars().take(120).collect();
    let error = ApiError::new(
        ErrorKind::NotFound,
        format!("no such API route: {method} {path}"),
    );
    answer(&shared, &headers, method, Err(error)).await
}

async fn read(State(shared): State<Shared>, headers: HeaderMap, request: Request) -> Response {
    answer(&shared, &headers, Method::GET, Ok(request)).await
}

async fn show_plugin(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let request = request::plugin_id(&id).map(Request::ShowPlugin);
    answer(&shared, &headers, Method::GET, request).await
}

async fn remove_plugin(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<RemoveQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let request = query
        .map_err(|e| ApiError::bad_request(e.body_text()))
        .and_then(|Query(query)| {
            Ok(Request::RemovePlugin {
                plugin: request::plugin_id(&id)?,
                cascade: query.cascade,
            })
        });
    answer(&shared, &headers, Method::DELETE, request).await
}

/// `?cascade=true` on a removal.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveQuery {
    #[serde(default)]
    cascade: bool,
}

async fn show_settings(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let request = request::plugin_id(&id).map(Request::ShowSettings);
    answer(&shared, &headers, Method::GET, request).await
}

async fn change_settings(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let request = request::plugin_id(&id).and_then(|plugin| {
        let args: request::SettingsArgs = request::body("settings.change", &body)?;
        Request::change_settings(plugin, args)
    });
    answer(&shared, &headers, Method::POST, request).await
}

async fn set_secret(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let request = request::plugin_id(&id).and_then(|plugin| {
        let args: request::SecretArgs = request::body("settings.set-secret", &body)?;
        Request::set_secret(plugin, name, args.value)
    });
    answer(&shared, &headers, Method::PUT, request).await
}

async fn call_operation(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path((id, operation)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let request =
        request::body::<request::CallArgs>("operations.call", &body).and_then(|mut args| {
            args.plugin = id;
            args.operation = operation;
            Request::call(args)
        });
    answer(&shared, &headers, Method::POST, request).await
}

async fn issue_credentials(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let request = request::plugin_id(&id).map(Request::IssueCredentials);
    answer(&shared, &headers, Method::POST, request).await
}

async fn revoke_credentials(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let request = request::plugin_id(&id).map(Request::RevokeCredentials);
    answer(&shared, &headers, Method::DELETE, request).await
}

async fn change_plugin(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path((id, verb)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let request = (|| {
        let plugin = request::plugin_id(&id)?;
        Ok(match verb.as_str() {
            "approve" => {
                let args: ApproveArgs = request::body("plugins.approve", &body)?;
                Request::Approve {
                    plugin,
                    disabled: args.disabled,
                }
            }
            "reject" => Request::Reject(plugin),
            "enable" => Request::Enable(plugin),
            "disable" => Request::Disable(plugin),
            "rollback" => {
                let args: RollbackArgs = request::body("plugins.rollback", &body)?;
                Request::Rollback {
                    plugin,
                    to: args.to,
                }
            }
            "upgrade" => {
                let args: request::deploy::InstallArgs = request::body("plugins.upgrade", &body)?;
                if args
                    .plugin
                    .as_deref()
                    .is_some_and(|named| named != plugin.as_str())
                {
                    return Err(ApiError::bad_request(
                        "the body's `plugin` is not the plugin of the path",
                    ));
                }
                Request::Install(Box::new(args.check(Some(plugin))?))
            }
            _ => {
                return Err(ApiError::new(
                    ErrorKind::NotFound,
                    "no such plugin action (approve, reject, enable, disable, rollback, upgrade)",
                ))
            }
        })
    })();
    answer(&shared, &headers, Method::POST, request).await
}

async fn install_plugin(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let request =
        request::body::<request::deploy::InstallArgs>("plugins.install", &body).and_then(|args| {
            if args.plugin.is_some() {
                return Err(ApiError::bad_request(
                    "an installation names its plugin by `package` or `manifest`, not `plugin`",
                ));
            }
            Ok(Request::Install(Box::new(args.check(None)?)))
        });
    answer(&shared, &headers, Method::POST, request).await
}

/// `?lines=N` on a plugin's logs.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    lines: Option<usize>,
}

async fn plugin_logs(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<LogsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let request = query
        .map_err(|e| ApiError::bad_request(e.body_text()))
        .and_then(|Query(query)| {
            Request::logs(request::deploy::LogsArgs {
                plugin: id,
                lines: query.lines,
            })
        });
    answer(&shared, &headers, Method::GET, request).await
}

/// `?replace=true` on a package upload.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageQuery {
    #[serde(default)]
    replace: bool,
}

/// A package upload: the caller is identified, and its role checked, before the body (up to
/// [`MAX_PACKAGE_UPLOAD`]) is read, so that nobody without the role makes the server hold a
/// large body.
async fn publish_package(
    State(shared): State<Shared>,
    headers: HeaderMap,
    query: Result<Query<PackageQuery>, axum::extract::rejection::QueryRejection>,
    body: axum::body::Body,
) -> Response {
    let replace = match query {
        Ok(Query(query)) => query.replace,
        Err(e) => {
            let error = ApiError::bad_request(e.body_text());
            return answer(&shared, &headers, Method::POST, Err(error)).await;
        }
    };
    let unread = Request::PublishPackage {
        package: Bytes::new(),
        replace,
    };
    let result = async {
        let identity = identify(&shared, &headers, &Method::POST, &unread.target()).await?;
        if identity.role < unread.role() {
            // Refused (and recorded) by the one implementation, before the body is read.
            return shared
                .management
                .call(&identity, Transport::Http, unread)
                .await;
        }
        let package = match axum::body::to_bytes(body, MAX_PACKAGE_UPLOAD).await {
            Ok(bytes) => bytes,
            Err(error) => {
                let error = ApiError::new(
                    ErrorKind::PayloadTooLarge,
                    format!("the package could not be read (at most {MAX_PACKAGE_UPLOAD} bytes): {error}"),
                );
                return Err(shared
                    .management
                    .failed(&identity, Transport::Http, "POST packages.publish", error)
                    .await);
            }
        };
        let request = Request::PublishPackage { package, replace };
        shared
            .management
            .call(&identity, Transport::Http, request)
            .await
    }
    .await;
    match result {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(error) => failure(&error),
    }
}

async fn provision(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let request = request::body::<request::deploy::ProvisionArgs>("streams.provision", &body)
        .and_then(|args| Ok(Request::Provision(args.check()?)));
    answer(&shared, &headers, Method::POST, request).await
}

async fn publish_event(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let request = request::body::<request::deploy::PublishArgs>("events.publish", &body)
        .and_then(|args| Ok(Request::PublishEvent(Box::new(args.check()?))));
    answer(&shared, &headers, Method::POST, request).await
}

/// `?since=RFC3339` or `?from_sequence=N` on an explanation.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainQuery {
    since: Option<String>,
    from_sequence: Option<u64>,
}

async fn explain(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<ExplainQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let request = query
        .map_err(|e| ApiError::bad_request(e.body_text()))
        .and_then(|Query(query)| {
            let (event_id, from) = request::deploy::ExplainArgs {
                event_id: id,
                since: query.since,
                from_sequence: query.from_sequence,
            }
            .check()?;
            Ok(Request::Explain { event_id, from })
        });
    answer(&shared, &headers, Method::GET, request).await
}

async fn list_dead_letters(
    State(shared): State<Shared>,
    headers: HeaderMap,
    query: Result<Query<DeadLetterQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let request = query
        .map(|Query(query)| Request::ListDeadLetters(query))
        .map_err(|e| ApiError::bad_request(e.body_text()));
    answer(&shared, &headers, Method::GET, request).await
}

async fn show_dead_letter(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(sequence): Path<String>,
) -> Response {
    let request = sequence
        .parse::<u64>()
        .map(Request::ShowDeadLetter)
        .map_err(|_| {
            ApiError::bad_request(format!(
                "bad dead-letter sequence `{}`",
                sequence.chars().take(40).collect::<String>()
            ))
        });
    answer(&shared, &headers, Method::GET, request).await
}

async fn replay(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let request = request::body("dlq.replay", &body).and_then(Request::replay);
    answer(&shared, &headers, Method::POST, request).await
}

async fn purge(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let request = request::body("dlq.purge", &body).and_then(Request::purge);
    answer(&shared, &headers, Method::POST, request).await
}

async fn list_audit(
    State(shared): State<Shared>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let request = query
        .map(|Query(query)| Request::ListAudit(query))
        .map_err(|e| ApiError::bad_request(e.body_text()));
    answer(&shared, &headers, Method::GET, request).await
}

async fn add_operator(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let request = request::body("operators.add", &body).and_then(Request::add_operator);
    answer(&shared, &headers, Method::POST, request).await
}

async fn remove_operator(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let request = request::operator_name(&name).map(Request::RemoveOperator);
    answer(&shared, &headers, Method::DELETE, request).await
}

async fn add_trust(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let request = request::body("trust.add", &body).and_then(Request::add_trust);
    answer(&shared, &headers, Method::POST, request).await
}

async fn remove_trust(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let request = request::publisher_key(&key).map(Request::RemoveTrust);
    answer(&shared, &headers, Method::DELETE, request).await
}

async fn add_service(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let request = request::body("services.add", &body).and_then(Request::add_service);
    answer(&shared, &headers, Method::POST, request).await
}

async fn remove_service(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let request = request::service_name(&name).map(Request::RemoveService);
    answer(&shared, &headers, Method::DELETE, request).await
}

/// `POST /api/v1/session {"token"}`: checks the token and sets it as an `HttpOnly`,
/// `SameSite=Strict` cookie, so that the console's scripts never hold it.
async fn sign_in(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SignIn {
        token: String,
    }
    let result = async {
        if let Err(error) = same_origin(&headers) {
            return Err(shared
                .management
                .refused(None, Transport::Http, "POST session", error)
                .await);
        }
        let SignIn { token } = request::body("session", &body)?;
        let identity = shared
            .management
            .authenticate(Some(&token), Transport::Http, "POST /api/v1/session")
            .await?;
        let who = shared
            .management
            .call(&identity, Transport::Http, Request::Whoami)
            .await?;
        Ok::<_, ApiError>((token, who))
    }
    .await;
    match result {
        Ok((token, who)) => {
            let cookie = format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
            match HeaderValue::from_str(&cookie) {
                Ok(cookie) => ([(header::SET_COOKIE, cookie)], axum::Json(who)).into_response(),
                Err(_) => failure(&ApiError::bad_request(
                    "the token holds characters a cookie cannot",
                )),
            }
        }
        Err(error) => failure(&error),
    }
}

/// `DELETE /api/v1/session`: clears the cookie.
async fn sign_out() -> Response {
    let cookie = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    (
        [(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie).expect("a valid cookie"),
        )],
        axum::Json(serde_json::json!({ "signed_out": true })),
    )
        .into_response()
}

/// `GET /api/v1/live`: the overview once a second as server-sent events, while the token
/// stays an operator's (checked again every [`Live::RECHECK`]).
async fn live_view(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let first = async {
        let identity = identify(&shared, &headers, &Method::GET, "live").await?;
        shared
            .management
            .call(&identity, Transport::Http, Request::Live)
            .await
    }
    .await;
    let first = match first {
        Ok(first) => first,
        Err(error) => return failure(&error),
    };
    let stream = events(shared, token(&headers).unwrap_or_default(), first);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn events(
    shared: Shared,
    token: String,
    first: Value,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let updates = shared.live.subscribe();
    let state = (
        shared,
        token,
        updates,
        Some(first),
        tokio::time::Instant::now(),
    );
    futures::stream::unfold(
        state,
        |(shared, token, mut updates, first, checked)| async move {
            if let Some(first) = first {
                let event = Event::default().event("overview").data(first.to_string());
                return Some((Ok(event), (shared, token, updates, None, checked)));
            }
            updates.changed().await.ok()?;
            let mut checked = checked;
            if checked.elapsed() >= Live::RECHECK {
                // A removed operator, or one given a new token, stops seeing the deployment.
                shared
                    .management
                    .operators()
                    .authenticate(&token)
                    .await
                    .ok()
                    .flatten()?;
                checked = tokio::time::Instant::now();
            }
            let update = updates.borrow_and_update().clone();
            let event = match update {
                Ok(overview) => Event::default().event("overview").data(overview.as_str()),
                Err(error) => Event::default().event("problem").data(error.as_str()),
            };
            Some((Ok(event), (shared, token, updates, None, checked)))
        },
    )
}
