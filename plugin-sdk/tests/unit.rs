//! Handlers, outcomes, the context and the setup check, through `Plugin::handle` and
//! `Context::for_test`: no server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use switchyard_plugin_sdk::{
    Context, Event, HandlerError, Outcome, Plugin, PluginError, Tenant, TypedEvent, Version,
};
use tokio::time::Instant;

#[derive(Debug, Serialize, Deserialize)]
struct OrderCreated {
    order_id: String,
    total_cents: u64,
}

impl TypedEvent for OrderCreated {
    const TYPE: &'static str = "order.created";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

#[derive(Debug, Serialize, Deserialize)]
struct OrderCancelled {
    order_id: String,
}

impl TypedEvent for OrderCancelled {
    const TYPE: &'static str = "order.cancelled";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

/// `order.created` data of another shape than [`OrderCreated`].
#[derive(Debug, Serialize, Deserialize)]
struct NotAnOrder {
    colour: bool,
}

impl TypedEvent for NotAnOrder {
    const TYPE: &'static str = "order.created";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

const MANIFEST: &str = r#"
    [plugin]
    id = "unit"
    version = "1.0.0"
    core = "*"

    [[subscriptions]]
    name = "orders"
    events = ["order.*"]
    versions = "^1"

    [settings]
    greeting = "hi"
    retries = 3
"#;

fn plugin() -> Plugin {
    Plugin::from_manifest_str(MANIFEST).expect("the manifest is valid")
}

fn event<T: TypedEvent>(data: &T) -> Event {
    Event::builder(Tenant::new("acme").unwrap(), "urn:test")
        .build(data)
        .expect("the event encodes")
}

fn order() -> Event {
    event(&OrderCreated {
        order_id: "o-1".to_owned(),
        total_cents: 990,
    })
}

/// Runs `plugin` on `event` with a default test context.
async fn handle(plugin: &Plugin, event: Event) -> Outcome {
    let context = Context::for_test(&event).build();
    plugin.handle(event, context).await
}

fn failed_code(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Failed { code, .. } => code.as_str(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

// ---- outcomes ----

#[tokio::test]
async fn ok_is_done_and_the_handler_gets_the_decoded_data() {
    let seen = Arc::new(Mutex::new(None));
    let plugin = plugin().on({
        let seen = Arc::clone(&seen);
        move |order: OrderCreated, _ctx| {
            let seen = Arc::clone(&seen);
            async move {
                *seen.lock().unwrap() = Some((order.order_id, order.total_cents));
                Ok(())
            }
        }
    });
    assert_eq!(handle(&plugin, order()).await, Outcome::Done);
    assert_eq!(*seen.lock().unwrap(), Some(("o-1".to_owned(), 990)));
}

#[tokio::test]
async fn retry_and_retry_after_become_retries_with_their_delay() {
    let plugin = plugin().on(|order: OrderCreated, _ctx| async move {
        if order.total_cents == 1 {
            Err(HandlerError::retry("busy"))
        } else {
            Err(HandlerError::retry_after(
                Duration::from_millis(1500),
                "come back later",
            ))
        }
    });
    let busy = event(&OrderCreated {
        order_id: "o".to_owned(),
        total_cents: 1,
    });
    assert_eq!(
        handle(&plugin, busy).await,
        Outcome::Retry {
            after: None,
            code: None,
            reason: "busy".to_owned()
        }
    );
    assert_eq!(
        handle(&plugin, order()).await,
        Outcome::Retry {
            after: Some(Duration::from_millis(1500)),
            code: None,
            reason: "come back later".to_owned()
        }
    );
}

#[tokio::test]
async fn permanent_becomes_failed_with_its_code() {
    let plugin = plugin().on(|_: OrderCreated, _ctx| async move {
        Err(HandlerError::permanent("order.invalid", "no lines"))
    });
    let outcome = handle(&plugin, order()).await;
    assert_eq!(failed_code(&outcome), "order.invalid");
    assert!(matches!(&outcome, Outcome::Failed { reason, .. } if reason == "no lines"));
}

#[tokio::test]
async fn a_panic_in_the_handler_is_a_retry_with_its_message() {
    let plugin = plugin().on(|order: OrderCreated, _ctx| async move {
        if order.total_cents > 0 {
            panic!("cannot price order {}", order.order_id);
        }
        Ok(())
    });
    let Outcome::Retry {
        after,
        code,
        reason,
    } = handle(&plugin, order()).await
    else {
        panic!("expected a retry");
    };
    assert_eq!(after, None);
    assert_eq!(code.expect("a code").as_str(), "plugin.panicked");
    assert!(reason.contains("cannot price order o-1"), "{reason}");
}

/// A handler that is a plain closure returning a future may panic before it builds the future
/// (e.g. indexing its input); that must be caught like any other panic.
#[tokio::test]
async fn a_panic_before_the_handler_future_exists_is_a_retry_too() {
    let plugin = plugin().on(|order: OrderCreated, _ctx| {
        let digits: Vec<u32> = Vec::new();
        let first = digits[order.total_cents as usize]; // panics: index out of bounds
        async move {
            let _ = first;
            Ok(())
        }
    });
    let Outcome::Retry { code, reason, .. } = handle(&plugin, order()).await else {
        panic!("expected a retry");
    };
    assert_eq!(code.expect("a code").as_str(), "plugin.panicked");
    assert!(reason.contains("index out of bounds"), "{reason}");
}

#[tokio::test]
async fn the_question_mark_on_a_std_error_retries_with_its_message() {
    let plugin = plugin().on(|order: OrderCreated, _ctx| async move {
        let _n: u32 = order.order_id.parse()?;
        Ok(())
    });
    let expected = "o-1".parse::<u32>().unwrap_err().to_string();
    assert_eq!(
        handle(&plugin, order()).await,
        Outcome::Retry {
            after: None,
            code: None,
            reason: expected
        }
    );
}

#[tokio::test]
async fn a_type_without_handler_fails_with_no_handler() {
    let plugin = plugin().on(|_: OrderCreated, _ctx| async move { Ok(()) });
    let cancelled = event(&OrderCancelled {
        order_id: "o-1".to_owned(),
    });
    let outcome = handle(&plugin, cancelled).await;
    assert_eq!(failed_code(&outcome), "plugin.no-handler");
    assert!(
        matches!(&outcome, Outcome::Failed { reason, .. } if reason.contains("order.cancelled")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn on_any_takes_the_types_no_typed_handler_takes() {
    let typed = Arc::new(AtomicUsize::new(0));
    let fallback = Arc::new(Mutex::new(Vec::new()));
    let plugin = plugin()
        .on({
            let typed = Arc::clone(&typed);
            move |_: OrderCreated, _ctx| {
                typed.fetch_add(1, Ordering::SeqCst);
                async move { Ok(()) }
            }
        })
        .on_any({
            let fallback = Arc::clone(&fallback);
            move |event: Event, _ctx| {
                let fallback = Arc::clone(&fallback);
                async move {
                    fallback
                        .lock()
                        .unwrap()
                        .push(event.attributes.event_type.to_string());
                    Ok(())
                }
            }
        });
    plugin.check().expect("a typed handler and a fallback fit");
    let cancelled = event(&OrderCancelled {
        order_id: "o-1".to_owned(),
    });
    assert_eq!(handle(&plugin, cancelled).await, Outcome::Done);
    assert_eq!(handle(&plugin, order()).await, Outcome::Done);
    assert_eq!(*fallback.lock().unwrap(), ["order.cancelled"]);
    assert_eq!(typed.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_panic_in_the_fallback_is_a_retry() {
    let plugin = plugin().on_any(|_: Event, _ctx| async move {
        if true {
            panic!("fallback broke");
        }
        Ok(())
    });
    let Outcome::Retry { code, reason, .. } = handle(&plugin, order()).await else {
        panic!("expected a retry");
    };
    assert_eq!(code.expect("a code").as_str(), "plugin.panicked");
    assert!(reason.contains("fallback broke"), "{reason}");
}

#[tokio::test]
async fn a_panic_in_the_fallback_before_its_future_exists_is_a_retry() {
    let plugin = plugin().on_any(|event: Event, _ctx| {
        let first = event.data[usize::MAX / 2]; // panics: index out of bounds
        async move {
            let _ = first;
            Ok(())
        }
    });
    let Outcome::Retry { code, .. } = handle(&plugin, order()).await else {
        panic!("expected a retry");
    };
    assert_eq!(code.expect("a code").as_str(), "plugin.panicked");
}

#[tokio::test]
async fn data_that_does_not_decode_fails_as_undecodable() {
    let called = Arc::new(AtomicUsize::new(0));
    let plugin = plugin().on({
        let called = Arc::clone(&called);
        move |_: OrderCreated, _ctx| {
            called.fetch_add(1, Ordering::SeqCst);
            async move { Ok(()) }
        }
    });
    let outcome = handle(&plugin, event(&NotAnOrder { colour: true })).await;
    assert_eq!(failed_code(&outcome), "event.undecodable-body");
    assert_eq!(called.load(Ordering::SeqCst), 0, "the handler must not run");
}

// ---- the context ----

#[derive(Debug, Deserialize, PartialEq)]
struct Settings {
    greeting: String,
    retries: u32,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)] // Read only to see it fail.
struct WrongSettings {
    retries: String,
}

#[tokio::test]
async fn settings_read_the_manifest_settings_and_report_a_mismatch() {
    let plugin = plugin();
    let e = order();
    let ctx = Context::for_test(&e)
        .settings(plugin.manifest().settings.clone())
        .build();
    assert_eq!(
        ctx.settings::<Settings>().expect("the settings fit"),
        Settings {
            greeting: "hi".to_owned(),
            retries: 3
        }
    );
    let error = ctx.settings::<WrongSettings>().unwrap_err().to_string();
    assert!(error.contains("[settings]"), "{error}");
    assert!(
        error.contains("integer"),
        "the error says what did not fit: {error}"
    );

    // The default test context has no settings: a required field is missing.
    let bare = Context::for_test(&e).build();
    assert!(bare.raw_settings().is_empty());
    let missing = bare.settings::<Settings>().unwrap_err().to_string();
    assert!(missing.contains("greeting"), "{missing}");
}

#[tokio::test]
async fn a_settings_mismatch_inside_a_handler_is_a_retry_naming_it() {
    let plugin = plugin().on(|_: OrderCreated, ctx: Context| async move {
        let _settings: WrongSettings = ctx.settings()?;
        Ok(())
    });
    let e = order();
    let ctx = Context::for_test(&e)
        .settings(plugin.manifest().settings.clone())
        .build();
    let Outcome::Retry { reason, .. } = plugin.handle(e, ctx).await else {
        panic!("expected a retry");
    };
    assert!(reason.contains("[settings]"), "{reason}");
}

#[tokio::test]
async fn the_context_describes_the_delivery() {
    let e = order();
    let ctx = Context::for_test(&e).attempt(2).max_attempts(3).build();
    assert_eq!(ctx.attempt(), 2);
    assert_eq!(ctx.max_attempts(), 3);
    assert!(!ctx.is_last_attempt());
    assert_eq!(ctx.event_id(), &e.attributes.id);
    assert_eq!(ctx.tenant().as_str(), "acme");
    assert_eq!(ctx.attributes(), &e.attributes);
    assert_eq!(ctx.plugin().as_str(), "test-plugin");
    assert_eq!(ctx.subscription(), "test");

    let last = Context::for_test(&e).attempt(3).max_attempts(3).build();
    assert!(last.is_last_attempt());
    let first = Context::for_test(&e).build();
    assert_eq!((first.attempt(), first.max_attempts()), (1, 5));
    assert!(!first.is_last_attempt());
}

#[tokio::test]
async fn the_handler_sees_its_context() {
    let plugin = plugin().on(|_: OrderCreated, ctx: Context| async move {
        if ctx.is_last_attempt() {
            Err(HandlerError::permanent(
                "test.last",
                format!(
                    "{} of {} for {}",
                    ctx.attempt(),
                    ctx.max_attempts(),
                    ctx.tenant()
                ),
            ))
        } else {
            Ok(())
        }
    });
    let e = order();
    let ctx = Context::for_test(&e).attempt(4).max_attempts(4).build();
    assert_eq!(
        plugin.handle(e.clone(), ctx).await,
        Outcome::Failed {
            code: switchyard_plugin_sdk::ErrorCode::new("test.last").unwrap(),
            reason: "4 of 4 for acme".to_owned()
        }
    );
    assert_eq!(handle(&plugin, e).await, Outcome::Done);
}

#[tokio::test(start_paused = true)]
async fn cancelled_completes_at_the_deadline_and_time_left_shrinks() {
    let e = order();
    let before_build = SystemTime::now();
    let ctx = Context::for_test(&e)
        .timeout(Duration::from_secs(30))
        .build();
    let deadline = ctx.deadline();
    assert!(
        deadline >= before_build + Duration::from_secs(30)
            && deadline <= SystemTime::now() + Duration::from_secs(30),
        "{deadline:?}"
    );

    let left = ctx.time_left();
    assert!(
        left <= Duration::from_secs(30) && left > Duration::from_secs(29),
        "{left:?}"
    );
    assert!(!ctx.is_cancelled());

    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(ctx.time_left(), left - Duration::from_secs(10));
    assert!(!ctx.is_cancelled());

    let waiting = Instant::now();
    ctx.cancelled().await;
    // Exactly at the deadline, give or take tokio's 1 ms timer resolution.
    let waited = waiting.elapsed();
    let expected = left - Duration::from_secs(10);
    assert!(
        waited >= expected && waited <= expected + Duration::from_millis(1),
        "{waited:?}"
    );
    assert!(ctx.is_cancelled());
    assert_eq!(ctx.time_left(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_handler_can_give_up_at_the_deadline() {
    let plugin = plugin().on(|_: OrderCreated, ctx: Context| async move {
        tokio::select! {
            () = ctx.cancelled() => Err(HandlerError::retry("out of time")),
            () = tokio::time::sleep(Duration::from_secs(3600)) => Ok(()),
        }
    });
    let e = order();
    let ctx = Context::for_test(&e)
        .timeout(Duration::from_secs(2))
        .build();
    let started = Instant::now();
    let outcome = plugin.handle(e, ctx).await;
    assert!(
        matches!(&outcome, Outcome::Retry { reason, .. } if reason == "out of time"),
        "{outcome:?}"
    );
    let took = started.elapsed();
    assert!(
        took <= Duration::from_millis(2001) && took > Duration::from_millis(1900),
        "{took:?}"
    );
}

// ---- the setup check ----

#[derive(Debug, Serialize, Deserialize)]
struct RefundIssued {
    refund_id: String,
}

impl TypedEvent for RefundIssued {
    const TYPE: &'static str = "refund.issued";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

#[derive(Debug, Serialize, Deserialize)]
struct OrderCreatedV2 {
    order_id: String,
}

impl TypedEvent for OrderCreatedV2 {
    const TYPE: &'static str = "order.created";
    const SCHEMA_VERSION: Version = Version::new(2, 0, 0);
}

#[test]
fn check_lists_every_problem_at_once() {
    let plugin = plugin()
        .on(|_: RefundIssued, _ctx| async move { Ok(()) })
        .on(|_: OrderCreatedV2, _ctx| async move { Ok(()) })
        .on(|_: OrderCancelled, _ctx| async move { Ok(()) })
        .on(|_: OrderCancelled, _ctx| async move { Ok(()) });
    let Err(PluginError::Setup(problems)) = plugin.check() else {
        panic!("expected setup problems");
    };
    assert_eq!(problems.len(), 3, "{problems:#?}");
    let has = |needle: &[&str]| {
        problems
            .iter()
            .any(|p| needle.iter().all(|n| p.contains(n)))
    };
    assert!(
        has(&["refund.issued", "no subscription"]),
        "an unreceived type: {problems:#?}"
    );
    assert!(
        has(&["order.created", "2.0.0", "version range"]),
        "a version outside the range: {problems:#?}"
    );
    assert!(
        has(&["two handlers", "order.cancelled"]),
        "a duplicate: {problems:#?}"
    );
    // The error's text carries every one of them.
    let text = PluginError::Setup(problems.clone()).to_string();
    for problem in &problems {
        assert!(text.contains(problem.as_str()), "{text}");
    }
}

#[test]
fn check_refuses_a_plugin_without_handlers() {
    let Err(PluginError::Setup(problems)) = plugin().check() else {
        panic!("expected setup problems");
    };
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].contains("no handler"), "{problems:#?}");
}

#[test]
fn a_fallback_alone_is_enough() {
    let plugin = plugin().on_any(|_: Event, _ctx| async move { Ok(()) });
    plugin.check().expect("on_any is a handler");
}

#[test]
fn a_version_inside_one_of_several_subscriptions_fits() {
    let plugin = Plugin::from_manifest_str(
        r#"
        [plugin]
        id = "two-subs"
        version = "1.0.0"
        core = "*"

        [[subscriptions]]
        name = "old"
        events = ["order.created"]
        versions = "^1"

        [[subscriptions]]
        name = "new"
        events = ["order.*"]
        versions = "^2"
        "#,
    )
    .unwrap()
    .on(|_: OrderCreatedV2, _ctx| async move { Ok(()) });
    plugin
        .check()
        .expect("the `new` subscription accepts 2.0.0");
}

#[tokio::test]
async fn run_refuses_a_misfit_plugin_before_connecting() {
    let plugin = plugin().on(|_: RefundIssued, _ctx| async move { Ok(()) });
    // No server is needed: the check comes first, so this returns at once.
    let result = tokio::time::timeout(Duration::from_secs(5), plugin.run())
        .await
        .expect("run returns without trying to connect");
    assert!(
        matches!(&result, Err(PluginError::Setup(p)) if p.len() == 1),
        "{result:?}"
    );
}

#[test]
fn an_invalid_manifest_is_refused_with_its_problems() {
    let error = Plugin::from_manifest_str(
        r#"
        [plugin]
        id = "bad id"
        version = "1"
        core = "*"
        "#,
    )
    .unwrap_err();
    let PluginError::Manifest(problems) = &error else {
        panic!("expected manifest problems, got {error:?}");
    };
    let text = problems.to_string();
    assert!(
        text.contains("plugin.id") && text.contains("plugin.version"),
        "{text}"
    );
}
