//! Plugin operations end to end, against a real nats-server, a dispatcher and SDK workers:
//! answers, every typed error, limits, retries, discovery, and calls between plugins.

use std::time::Duration;

use async_nats::HeaderMap;
use futures::StreamExt;
use switchyard_bus::{CallTarget, Calls};
use switchyard_control::registry::TenantScope;
use switchyard_plugin_sdk::{
    CallContext, CallError, CallErrorKind, CallOptions, Caller, HandlerError, Plugin,
    WorkerSettings,
};
use switchyard_schemas::semver::Version;
use switchyard_schemas::{ContentType, OperationName, PluginId, Tenant};
use switchyard_tests::{
    operations_manifest, round_trip, wait_for_operation, Quote, QuoteRequest, Switchyard,
};
use tokio_util::sync::CancellationToken;

fn tenant(name: &str) -> Tenant {
    Tenant::new(name).unwrap()
}

fn plugin_id(name: &str) -> PluginId {
    PluginId::new(name).unwrap()
}

fn request(sku: &str) -> QuoteRequest {
    QuoteRequest {
        sku: sku.to_owned(),
        quantity: 3,
    }
}

/// The pricing plugin's handlers: `quote` prices (refusing an empty sku), `slow` takes 3 s,
/// `flaky` and `flaky-unsafe` fail their first attempt.
fn pricing(manifest: switchyard_schemas::Manifest) -> Plugin {
    let quote = |request: QuoteRequest, ctx: CallContext| async move {
        if request.sku.is_empty() {
            return Err(HandlerError::permanent("quote.no-sku", "an empty sku"));
        }
        Ok(Quote {
            cents: 100 * u64::from(request.quantity),
            note: format!("{} attempt {}", ctx.caller(), ctx.attempt()),
        })
    };
    let flaky = |_: QuoteRequest, ctx: CallContext| async move {
        if ctx.attempt() == 1 {
            return Err(HandlerError::retry("not yet"));
        }
        Ok(Quote {
            cents: 1,
            note: format!("attempt {}", ctx.attempt()),
        })
    };
    let mut plugin = Plugin::new(manifest.clone());
    for operation in &manifest.operations {
        plugin = match operation.name.as_str() {
            "quote" => plugin.operation("quote", quote),
            "slow" => plugin.operation("slow", |_: QuoteRequest, _ctx| async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok(Quote {
                    cents: 0,
                    note: "late".into(),
                })
            }),
            name => plugin.operation(name, flaky),
        };
    }
    plugin
}

/// Runs `plugin` against the deployment until the returned token is cancelled.
fn run(sy: &Switchyard, plugin: Plugin) -> CancellationToken {
    let stop = CancellationToken::new();
    tokio::spawn(plugin.run_with(
        WorkerSettings::new(sy.url()),
        stop.clone().cancelled_owned(),
    ));
    stop
}

/// Calls as plugin `id`, on a connection with its own inbox (unsecured here: any client may
/// call as any plugin, and only the dispatcher's checks apply).
async fn plugin_caller(sy: &Switchyard, id: &str) -> Calls {
    let client = async_nats::ConnectOptions::new()
        .custom_inbox_prefix(sy.namespace().plugin_inbox_prefix(&plugin_id(id)))
        .connect(sy.url())
        .await
        .unwrap();
    Calls::new(
        client,
        sy.namespace().clone(),
        Caller::Plugin(plugin_id(id)),
    )
}

/// `pricing` offering `quote` to `shop`, both registered, and pricing's worker running until
/// the returned token is cancelled.
async fn pricing_for_the_shop(sy: &Switchyard) -> CancellationToken {
    let manifest = operations_manifest(
        "pricing",
        &[("quote", "callers = { plugins = [\"shop\"] }")],
    );
    sy.register(manifest.clone()).await;
    sy.register(operations_manifest("shop", &[])).await;
    run(sy, pricing(manifest))
}

async fn operator(sy: &Switchyard) -> Calls {
    Calls::new(
        sy.server.client().await,
        sy.namespace().clone(),
        Caller::Operator("test".into()),
    )
}

/// Calls as an operator until the worker answers (it may still be connecting).
async fn first_answer(calls: &Calls, plugin: &str, operation: &str) -> Quote {
    let mut last = None;
    for _ in 0..100 {
        match calls
            .call::<_, Quote>(
                &tenant("acme"),
                &plugin_id(plugin),
                operation,
                &request("a-1"),
            )
            .await
        {
            Ok(quote) => return quote,
            Err(error) if error.kind == CallErrorKind::NoWorker => last = Some(error),
            Err(error) => panic!("{error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no worker answered: {last:?}");
}

fn expect_error<T: std::fmt::Debug>(
    result: Result<T, CallError>,
    kind: CallErrorKind,
) -> CallError {
    let error = result.expect_err("the call fails");
    assert_eq!(error.kind, kind, "{error}");
    error
}

#[tokio::test]
async fn an_operation_answers_and_every_error_is_typed() {
    let sy = Switchyard::start().await;
    let manifest =
        operations_manifest("pricing", &[("quote", ""), ("slow", "timeout = \"300ms\"")]);
    sy.register_for(
        manifest.clone(),
        TenantScope::only([tenant("acme")]).unwrap(),
    )
    .await;
    let calls = operator(&sy).await;
    wait_for_operation(&sy.server.client().await, "pricing", "quote").await;
    // Served by the dispatcher, but no worker yet.
    let no_worker = calls
        .call::<_, Quote>(
            &tenant("acme"),
            &plugin_id("pricing"),
            "quote",
            &request("a"),
        )
        .await;
    expect_error(no_worker, CallErrorKind::NoWorker);
    let _worker = run(&sy, pricing(manifest));

    let quote = first_answer(&calls, "pricing", "quote").await;
    assert_eq!(quote.cents, 300);
    assert_eq!(quote.note, "operator:test attempt 1");

    // The handler's own code.
    let refused = calls
        .call::<_, Quote>(
            &tenant("acme"),
            &plugin_id("pricing"),
            "quote",
            &request(""),
        )
        .await;
    let error = expect_error(refused, CallErrorKind::Handler);
    assert_eq!(error.code.as_str(), "quote.no-sku");
    assert_eq!(error.reason, "an empty sku");

    // Past the operation's timeout: answered by the dispatcher, long before the handler ends.
    let started = std::time::Instant::now();
    let late = calls
        .call::<_, Quote>(
            &tenant("acme"),
            &plugin_id("pricing"),
            "slow",
            &request("a"),
        )
        .await;
    let error = expect_error(late, CallErrorKind::TimedOut);
    assert_eq!(error.code.as_str(), "call.timed-out");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A tenant the plugin is not registered for.
    let other = calls
        .call::<_, Quote>(
            &tenant("globex"),
            &plugin_id("pricing"),
            "quote",
            &request("a"),
        )
        .await;
    assert!(expect_error(other, CallErrorKind::Refused)
        .reason
        .contains("globex"));

    // An operation nobody serves.
    let unknown = calls
        .call::<_, Quote>(
            &tenant("acme"),
            &plugin_id("pricing"),
            "nope",
            &request("a"),
        )
        .await;
    expect_error(unknown, CallErrorKind::Unavailable);

    // JSON in, JSON out; a body that is not JSON, and a request version the operation cannot
    // read, are bad requests.
    let target = CallTarget {
        tenant: tenant("acme"),
        plugin: plugin_id("pricing"),
        operation: OperationName::new("quote").unwrap(),
    };
    let reply = calls
        .call_raw(
            &target,
            ContentType::Json,
            br#"{"sku":"b","quantity":2}"#.as_slice().into(),
            &CallOptions::default(),
            HeaderMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(reply.content_type, ContentType::Json);
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["cents"], 200);
    assert_eq!(reply.attempts, 1);
    assert!(reply.handled_in > Duration::ZERO && reply.handled_in <= reply.elapsed);
    let broken = calls
        .call_raw(
            &target,
            ContentType::Json,
            b"{\"sku\":".as_slice().into(),
            &CallOptions::default(),
            HeaderMap::new(),
        )
        .await;
    assert!(expect_error(broken, CallErrorKind::BadRequest)
        .reason
        .contains("not well-formed"));
    let newer = CallOptions {
        version: Some(Version::new(1, 1, 0)),
        ..CallOptions::default()
    };
    let body = ContentType::MessagePack.encode(&request("a")).unwrap();
    let newer = calls
        .call_raw(
            &target,
            ContentType::MessagePack,
            body.into(),
            &newer,
            HeaderMap::new(),
        )
        .await;
    expect_error(newer, CallErrorKind::BadRequest);

    // A plugin that is not among the callers (here unsecured, so the dispatcher refuses it).
    let intruder = plugin_caller(&sy, "intruder").await;
    let refused = intruder
        .call::<_, Quote>(
            &tenant("acme"),
            &plugin_id("pricing"),
            "quote",
            &request("a"),
        )
        .await;
    assert!(expect_error(refused, CallErrorKind::Refused)
        .reason
        .contains("plugin:intruder"));
}

#[tokio::test]
async fn rates_and_calls_in_flight_refuse_at_once() {
    let sy = Switchyard::start().await;
    let manifest = operations_manifest(
        "pricing",
        &[
            ("quote", "rate = \"1/m\""),
            ("slow", "max_in_flight = 1\ntimeout = \"10s\""),
        ],
    );
    sy.register(manifest.clone()).await;
    let _worker = run(&sy, pricing(manifest));
    let calls = operator(&sy).await;
    wait_for_operation(&sy.server.client().await, "pricing", "slow").await;
    first_answer(&calls, "pricing", "quote").await;
    let over = calls
        .call::<_, Quote>(
            &tenant("acme"),
            &plugin_id("pricing"),
            "quote",
            &request("a"),
        )
        .await;
    let error = expect_error(over, CallErrorKind::RateLimited);
    let after = error.retry_after.expect("says when to call again");
    assert!(
        after > Duration::from_secs(50) && after <= Duration::from_secs(60),
        "{after:?}"
    );

    // Two calls at once, at most one under way: one is answered, the other refused at once.
    let slow = |calls: Calls| async move {
        calls
            .call::<_, Quote>(
                &tenant("acme"),
                &plugin_id("pricing"),
                "slow",
                &request("a"),
            )
            .await
    };
    let (first, second) = tokio::join!(slow(calls.clone()), slow(calls.clone()));
    let (answered, refused) = if first.is_ok() {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(answered.unwrap().note, "late");
    expect_error(refused, CallErrorKind::Busy);
}

#[tokio::test]
async fn only_idempotent_operations_are_retried_and_only_when_asked() {
    let sy = Switchyard::start().await;
    let manifest = operations_manifest(
        "pricing",
        &[("flaky", "idempotent = true"), ("flaky-unsafe", "")],
    );
    sy.register(manifest.clone()).await;
    let _worker = run(&sy, pricing(manifest));
    let calls = operator(&sy).await;
    wait_for_operation(&sy.server.client().await, "pricing", "flaky-unsafe").await;
    let three = CallOptions {
        attempts: Some(3),
        ..CallOptions::default()
    };
    let call = |operation: &'static str, options: CallOptions| {
        let calls = calls.clone();
        async move {
            calls
                .call_with::<_, Quote>(
                    &tenant("acme"),
                    &plugin_id("pricing"),
                    operation,
                    &request("a"),
                    options,
                    HeaderMap::new(),
                )
                .await
        }
    };
    // Wait for the worker: a missing worker is not retried.
    switchyard_tests::wait_until(Duration::from_secs(10), || async {
        !call("flaky", CallOptions::default())
            .await
            .is_err_and(|e| e.kind == CallErrorKind::NoWorker)
    })
    .await
    .unwrap();
    assert_eq!(
        call("flaky", three.clone()).await.unwrap().note,
        "attempt 2"
    );
    let once = call("flaky", CallOptions::default()).await;
    assert_eq!(
        expect_error(once, CallErrorKind::Handler).code.as_str(),
        "handler.retry"
    );
    let unsafe_retry = call("flaky-unsafe", three).await;
    assert_eq!(
        expect_error(unsafe_retry, CallErrorKind::Handler).reason,
        "not yet",
        "an operation not declared idempotent is attempted once"
    );
}

#[tokio::test]
async fn a_call_is_answered_only_in_its_callers_own_inbox() {
    let sy = Switchyard::start().await;
    let _worker = pricing_for_the_shop(&sy).await;
    let observer = sy.server.client().await;
    let mut stolen = observer.subscribe("_INBOX.stolen.>").await.unwrap();
    let mut elsewhere = observer
        .subscribe("_SY_INBOX.switchyard.other.>")
        .await
        .unwrap();
    round_trip(&observer).await;
    let shop = async_nats::ConnectOptions::new()
        .custom_inbox_prefix(sy.namespace().plugin_inbox_prefix(&plugin_id("shop")))
        .connect(sy.url())
        .await
        .unwrap();
    wait_for_operation(&observer, "pricing", "quote").await;
    let subject = "switchyard.op.acme.pricing.quote.plugin.shop";
    let body = bytes::Bytes::from(ContentType::Json.encode(&request("a")).unwrap());
    for reply in ["_INBOX.stolen.1", "_SY_INBOX.switchyard.other.1"] {
        shop.publish_with_reply(subject, reply, body.clone())
            .await
            .unwrap();
    }
    // The positive control, after them on the same connection: a call answered in the shop's
    // own inbox (retried until the worker is there).
    let calls = Calls::new(
        shop.clone(),
        sy.namespace().clone(),
        Caller::Plugin(plugin_id("shop")),
    );
    let quote = first_answer(&calls, "pricing", "quote").await;
    assert_eq!(quote.note, "plugin:shop attempt 1");
    round_trip(&observer).await;
    for subscriber in [&mut stolen, &mut elsewhere] {
        let got = tokio::time::timeout(Duration::from_millis(200), subscriber.next()).await;
        assert!(
            got.is_err(),
            "the dispatcher answered where the caller chose: {got:?}"
        );
    }
}

#[tokio::test]
async fn operations_are_nats_micro_services() {
    let sy = Switchyard::start().await;
    let manifest = operations_manifest(
        "pricing",
        &[(
            "quote",
            "description = \"Prices an order\"\nidempotent = true",
        )],
    );
    sy.register(manifest.clone()).await;
    let _worker = run(&sy, pricing(manifest));
    let client = sy.server.client().await;
    wait_for_operation(&client, "pricing", "quote").await;
    let calls = operator(&sy).await;
    for _ in 0..3 {
        first_answer(&calls, "pricing", "quote").await;
    }
    let info = client
        .request("$SRV.INFO.pricing", bytes::Bytes::new())
        .await
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["name"], "pricing");
    assert_eq!(info["version"], "1.0.0");
    assert_eq!(info["metadata"]["switchyard.prefix"], "switchyard");
    let endpoint = &info["endpoints"][0];
    assert_eq!(endpoint["subject"], "switchyard.op.*.pricing.quote.*.*");
    assert_eq!(endpoint["metadata"]["request.type"], "quote.request");
    assert_eq!(endpoint["metadata"]["description"], "Prices an order");
    assert_eq!(endpoint["metadata"]["idempotent"], "true");
    let stats = client
        .request("$SRV.STATS.pricing", bytes::Bytes::new())
        .await
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.payload).unwrap();
    assert!(
        stats["endpoints"][0]["num_requests"].as_u64().unwrap() >= 3,
        "{stats}"
    );
    let ping = client
        .request("$SRV.PING", bytes::Bytes::new())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&ping.payload).contains("pricing"));
}

#[tokio::test]
async fn a_plugin_calls_another_plugins_operation_through_its_context() {
    let sy = Switchyard::start().await;
    let pricing_manifest = operations_manifest(
        "pricing",
        &[("quote", "callers = { plugins = [\"shop\"] }")],
    );
    let shop_manifest = operations_manifest("shop", &[("checkout", "")]);
    sy.register(pricing_manifest.clone()).await;
    sy.register(shop_manifest.clone()).await;
    let _pricing = run(&sy, pricing(pricing_manifest));
    let shop = Plugin::new(shop_manifest).operation(
        "checkout",
        |request: QuoteRequest, ctx: CallContext| async move {
            let quote: Quote = ctx
                .call("pricing", "quote", &request)
                .await
                .map_err(|e| HandlerError::permanent("checkout.no-price", e.to_string()))?;
            Ok(Quote {
                cents: quote.cents + 50,
                note: quote.note,
            })
        },
    );
    let _shop = run(&sy, shop);
    wait_for_operation(&sy.server.client().await, "pricing", "quote").await;
    let calls = operator(&sy).await;
    let total = first_answer(&calls, "shop", "checkout").await;
    assert_eq!(total.cents, 350);
    assert_eq!(
        total.note, "plugin:shop attempt 1",
        "the broker-visible caller is the shop"
    );
}

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../plugin-sdk/examples/order-validator/main.rs"]
mod order_validator;
#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../plugin-sdk/examples/tax-rates/main.rs"]
mod tax_rates;

#[tokio::test]
async fn the_example_validator_checks_an_order_on_a_channel_through_the_tax_operation() {
    let sy = Switchyard::start().await;
    let validator = order_validator::plugin().unwrap();
    let taxes = tax_rates::plugin().unwrap();
    sy.register(validator.manifest().clone()).await;
    sy.register(taxes.manifest().clone()).await;
    let _validator = run(&sy, validator);
    let _taxes = run(&sy, taxes);
    let client = sy.server.client().await;
    wait_for_operation(&client, "tax-rates", "rate").await;
    // A shop asks on the channel, as any plugin granted to send on it would.
    let check = order_validator::OrderCheck {
        order_id: "o-7".into(),
        total_cents: 1000,
        region: "eu".into(),
    };
    let event = switchyard_schemas::Event::builder(tenant("acme"), "urn:test:shop")
        .build(&check)
        .unwrap();
    let subject = "switchyard.channel.acme.order-checks.shop";
    let reply_subject = "_SY_CHREPLY.switchyard.acme.order-checks.shop.1";
    let mut replies = client.subscribe(reply_subject).await.unwrap();
    let headers = switchyard_bus::event_headers(&event);
    // Asked again until both workers are there (a request nobody receives is lost).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let checked: order_validator::OrderChecked = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the validator answers within 15 s"
        );
        client
            .publish_with_reply_and_headers(
                subject,
                reply_subject,
                headers.clone(),
                event.data.clone(),
            )
            .await
            .unwrap();
        let Ok(Some(reply)) =
            tokio::time::timeout(Duration::from_millis(500), replies.next()).await
        else {
            continue;
        };
        if reply.status.is_some() {
            // "No responders": the validator is not subscribed yet.
            continue;
        }
        let failed = reply
            .headers
            .as_ref()
            .and_then(|h| h.get("switchyard-channel-error"))
            .map(|v| v.to_string());
        if let Some(reason) = failed {
            // The tax plugin's worker may not be connected yet.
            assert!(
                reason.contains("call.no-worker") || reason.contains("call.unavailable"),
                "{reason}"
            );
            continue;
        }
        let answer =
            switchyard_bus::decode_event(reply.headers.as_ref(), reply.payload.clone()).unwrap();
        break answer.data_as().unwrap();
    };
    assert_eq!((checked.order_id.as_str(), checked.tax_cents), ("o-7", 200));
}

#[tokio::test]
async fn a_python_service_calls_operations_from_the_wire_format_alone() {
    let sy = Switchyard::start().await;
    let taxes = tax_rates::plugin().unwrap();
    let slow = operations_manifest("pricing", &[("slow", "callers = { services = true }")]);
    sy.register(taxes.manifest().clone()).await;
    sy.register(slow.clone()).await;
    let _taxes = run(&sy, taxes);
    let _pricing = run(&sy, pricing(slow));
    let client = sy.server.client().await;
    wait_for_operation(&client, "tax-rates", "rate").await;
    wait_for_operation(&client, "pricing", "slow").await;
    // Both workers answer before the script runs (its first call must not find none).
    let calls = operator(&sy).await;
    switchyard_tests::wait_until(Duration::from_secs(15), || async {
        let query = tax_rates::TaxQuery {
            region: "eu".into(),
            total_cents: 1,
        };
        calls
            .call::<_, tax_rates::TaxRate>(&tenant("acme"), &plugin_id("tax-rates"), "rate", &query)
            .await
            .is_ok()
    })
    .await
    .unwrap();

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/call_operation.py");
    let output = switchyard_tests::python_command(&script, &[&sy.url(), "shop"])
        .await
        .output()
        .await
        .expect("run the Python caller");
    assert!(
        output.status.success(),
        "call_operation.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0]["response"]["tax_cents"], 200, "{lines:?}");
    assert_eq!(lines[0]["attempts"], 1);
    assert_eq!(lines[1]["error_code"], "tax.unknown-region");
    assert_eq!(lines[1]["status"], "500");
    assert_eq!(lines[2]["error_code"], "call.timed-out");
    assert_eq!(lines[2]["status"], "504");
    assert!(lines[2]["took_ms"].as_f64().unwrap() < 2000.0, "{lines:?}");
    assert_eq!(
        lines[3]["unanswered"], true,
        "an answer outside the service's inbox: {lines:?}"
    );
}

/// A raw worker of `plugin` that answers every call as `answer` says (headers, body).
async fn raw_worker(
    sy: &Switchyard,
    plugin: &str,
    answer: impl Fn() -> (HeaderMap, bytes::Bytes) + Send + 'static,
) {
    let client = sy.server.client().await;
    let mut calls = client
        .queue_subscribe(format!("switchyard.call.{plugin}"), plugin.to_owned())
        .await
        .unwrap();
    round_trip(&client).await;
    tokio::spawn(async move {
        while let Some(call) = calls.next().await {
            let Some(reply) = call.reply else { continue };
            let (headers, body) = answer();
            let _ = client.publish_with_headers(reply, headers, body).await;
        }
    });
}

#[tokio::test]
async fn a_hostile_workers_answers_are_typed_errors_for_the_caller() {
    let sy = Switchyard::start().await;
    sy.register(operations_manifest("nester", &[("quote", "")]))
        .await;
    sy.register(operations_manifest("garbled", &[("quote", "")]))
        .await;
    // 100 000 nested MessagePack arrays: a decoder that recursed would overflow its stack.
    raw_worker(&sy, "nester", || {
        let mut headers = HeaderMap::new();
        headers.insert("switchyard-outcome", "done");
        headers.insert("content-type", "application/msgpack");
        let mut body = vec![0x91_u8; 100_000];
        body.push(0xc0);
        (headers, body.into())
    })
    .await;
    raw_worker(&sy, "garbled", || {
        let mut headers = HeaderMap::new();
        headers.insert("switchyard-outcome", "maybe");
        (headers, "?".into())
    })
    .await;
    let client = sy.server.client().await;
    wait_for_operation(&client, "nester", "quote").await;
    wait_for_operation(&client, "garbled", "quote").await;
    let calls = operator(&sy).await;
    let deep = calls
        .call::<_, Quote>(
            &tenant("acme"),
            &plugin_id("nester"),
            "quote",
            &request("a"),
        )
        .await;
    assert!(
        expect_error(deep, CallErrorKind::BadReply)
            .reason
            .contains("nested deeper than 100 levels"),
        "the depth is named"
    );
    let garbled = calls
        .call::<_, Quote>(
            &tenant("acme"),
            &plugin_id("garbled"),
            "quote",
            &request("a"),
        )
        .await;
    let error = expect_error(garbled, CallErrorKind::BadReply);
    assert_eq!(error.code.as_str(), "protocol.bad-reply");
    assert!(error.reason.contains("maybe"), "{error}");
}

/// How a raw worker answers each call.
type Answerer = dyn Fn() -> (HeaderMap, bytes::Bytes) + Send;

/// A worker answering `outcome` with `code`, `content-type` and `body`, and a delay wish.
fn answer_with(
    outcome: &'static str,
    code: Option<&'static str>,
    content_type: Option<&'static str>,
    retry_after_ms: Option<&'static str>,
    body: bytes::Bytes,
) -> impl Fn() -> (HeaderMap, bytes::Bytes) + Send + 'static {
    move || {
        let mut headers = HeaderMap::new();
        headers.insert("switchyard-outcome", outcome);
        if let Some(code) = code {
            headers.insert("switchyard-error-code", code);
        }
        if let Some(content_type) = content_type {
            headers.insert("content-type", content_type);
        }
        if let Some(after) = retry_after_ms {
            headers.insert("switchyard-retry-after-ms", after);
        }
        (headers, body.clone())
    }
}

#[tokio::test]
async fn the_dispatcher_checks_what_a_plugin_answers_before_its_caller_sees_it() {
    let sy = Switchyard::start().await;
    let json_body = bytes::Bytes::from_static(br#"{"cents":1,"note":""}"#);
    let cases: Vec<(&str, Box<Answerer>)> = vec![
        (
            "mislabel",
            Box::new(answer_with(
                "done",
                None,
                Some("application/msgpack"),
                None,
                json_body.clone(),
            )),
        ),
        (
            "broken",
            Box::new(answer_with(
                "done",
                None,
                Some("application/json"),
                None,
                bytes::Bytes::from_static(b"\xff\xfe not json"),
            )),
        ),
        (
            "liar",
            Box::new(answer_with(
                "failed",
                Some("call.refused"),
                None,
                None,
                "no".into(),
            )),
        ),
        (
            "patient",
            Box::new(answer_with(
                "retry",
                Some("upstream.busy"),
                None,
                Some("99999999999"),
                "later".into(),
            )),
        ),
    ];
    let client = sy.server.client().await;
    for (plugin, answer) in cases {
        sy.register(operations_manifest(plugin, &[("quote", "")]))
            .await;
        raw_worker(&sy, plugin, answer).await;
        wait_for_operation(&client, plugin, "quote").await;
    }
    let calls = operator(&sy).await;
    let json_call = |plugin: &'static str| {
        let calls = calls.clone();
        async move {
            let target = CallTarget {
                tenant: tenant("acme"),
                plugin: plugin_id(plugin),
                operation: OperationName::new("quote").unwrap(),
            };
            calls
                .call_raw(
                    &target,
                    ContentType::Json,
                    br#"{"sku":"a","quantity":1}"#.as_slice().into(),
                    &CallOptions::default(),
                    HeaderMap::new(),
                )
                .await
        }
    };
    let mislabelled = expect_error(json_call("mislabel").await, CallErrorKind::BadReply);
    assert!(
        mislabelled.reason.contains("application/msgpack"),
        "{mislabelled}"
    );
    let broken = expect_error(json_call("broken").await, CallErrorKind::BadReply);
    assert!(broken.reason.contains("not well-formed"), "{broken}");
    let lie = expect_error(json_call("liar").await, CallErrorKind::BadReply);
    assert!(
        lie.reason.contains("call.refused"),
        "a handler cannot pass as the dispatcher: {lie}"
    );
    let later = expect_error(json_call("patient").await, CallErrorKind::Handler);
    assert_eq!(later.code.as_str(), "upstream.busy");
    assert_eq!(
        later.retry_after,
        Some(Duration::from_secs(3600)),
        "capped at an hour"
    );
}

#[tokio::test]
async fn requests_and_answers_too_large_for_the_server_get_an_answer_that_says_so() {
    let sy = Switchyard::start().await;
    let client = sy.server.client().await;
    let max = client.server_info().max_payload;
    // A JSON string that fits one publish, but not with the headers of the next hop.
    let near_max = |room: usize| {
        let mut body = vec![b'a'; max - room];
        body[0] = b'"';
        *body.last_mut().unwrap() = b'"';
        bytes::Bytes::from(body)
    };
    sy.register(operations_manifest("bulky", &[("quote", "")]))
        .await;
    raw_worker(
        &sy,
        "bulky",
        answer_with("done", None, Some("application/json"), None, near_max(90)),
    )
    .await;
    wait_for_operation(&client, "bulky", "quote").await;
    let calls = operator(&sy).await;
    let target = CallTarget {
        tenant: tenant("acme"),
        plugin: plugin_id("bulky"),
        operation: OperationName::new("quote").unwrap(),
    };
    let call = |body: bytes::Bytes| {
        let (calls, target) = (calls.clone(), target.clone());
        async move {
            calls
                .call_raw(
                    &target,
                    ContentType::Json,
                    body,
                    &CallOptions::default(),
                    HeaderMap::new(),
                )
                .await
        }
    };
    let answer = expect_error(call(r#"{"sku":"a"}"#.into()).await, CallErrorKind::BadReply);
    assert!(answer.reason.contains("max_payload"), "{answer}");
    let request = expect_error(call(near_max(120)).await, CallErrorKind::BadRequest);
    assert!(request.reason.contains("max_payload"), "{request}");
}

#[tokio::test]
async fn a_plugin_that_may_not_run_may_not_call() {
    let sy = Switchyard::start().await;
    let _worker = pricing_for_the_shop(&sy).await;
    let shop = plugin_caller(&sy, "shop").await;
    wait_for_operation(&sy.server.client().await, "pricing", "quote").await;
    assert_eq!(
        first_answer(&shop, "pricing", "quote").await.note,
        "plugin:shop attempt 1"
    );
    let mut registration = sy.registry.get(&plugin_id("shop")).await.unwrap().unwrap();
    registration.enabled = false;
    sy.registry.put(&registration).await.unwrap();
    let refused = switchyard_tests::wait_until(Duration::from_secs(10), || async {
        shop.call::<_, Quote>(
            &tenant("acme"),
            &plugin_id("pricing"),
            "quote",
            &request("a"),
        )
        .await
        .is_err_and(|e| e.kind == CallErrorKind::Refused && e.reason.contains("enabled"))
    })
    .await;
    assert!(refused.is_ok(), "a disabled plugin's calls are refused");
}

#[tokio::test]
async fn the_instances_of_a_plugin_share_its_calls() {
    let sy = Switchyard::start().await;
    let manifest = operations_manifest("pricing", &[("quote", "")]);
    sy.register(manifest.clone()).await;
    let mut workers = Vec::new();
    for instance in 0..2_u64 {
        let plugin = Plugin::new(manifest.clone()).operation(
            "quote",
            move |_: QuoteRequest, _ctx: CallContext| async move {
                Ok(Quote {
                    cents: instance,
                    note: String::new(),
                })
            },
        );
        workers.push(run(&sy, plugin));
    }
    let client = sy.server.client().await;
    wait_for_operation(&client, "pricing", "quote").await;
    let calls = operator(&sy).await;
    let mut answered_by = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while answered_by.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "both instances answer: {answered_by:?}"
        );
        match calls
            .call::<_, Quote>(
                &tenant("acme"),
                &plugin_id("pricing"),
                "quote",
                &request("a"),
            )
            .await
        {
            Ok(quote) => {
                answered_by.insert(quote.cents);
            }
            Err(error) => assert_eq!(error.kind, CallErrorKind::NoWorker, "{error}"),
        }
    }
}

#[tokio::test]
async fn a_worker_with_one_slot_answers_calls_while_it_waits_for_deliveries() {
    let sy = Switchyard::start().await;
    let manifest = switchyard_schemas::Manifest::from_toml_str(
        "[plugin]\nid = \"single\"\nversion = \"1.0.0\"\ncore = \"*\"\n\
         [[subscriptions]]\nname = \"orders\"\nevents = [\"order.created\"]\n\
         [[operations]]\nname = \"quote\"\n\
         request = { type = \"quote.request\", version = \"1.0.0\" }\n\
         response = { type = \"quote.response\", version = \"1.0.0\" }\n",
    )
    .unwrap();
    sy.register(manifest.clone()).await;
    let plugin = pricing(manifest)
        .on_any(|_, _| async { Ok(()) })
        .max_concurrency(1);
    let _worker = run(&sy, plugin);
    wait_for_operation(&sy.server.client().await, "single", "quote").await;
    let calls = operator(&sy).await;
    // The delivery subscription waits for an event that never comes; the call is answered.
    assert_eq!(first_answer(&calls, "single", "quote").await.cents, 300);
}
