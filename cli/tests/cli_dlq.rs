//! `switchyard dlq` as an operator runs it: the built binary against a real nats-server with a
//! dispatcher and a failing plugin.

use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use switchyard_schemas::delivery::{ErrorCode, Outcome};
use switchyard_schemas::EventId;
use switchyard_tests::{
    failed, manifest, run_switchyard, succeeded, wait_until, Behaviour, OrderCreated, Switchyard,
    TestWorker,
};
use time::format_description::well_known::Rfc3339;

const DEADLINE: Duration = Duration::from_secs(20);

/// Runs `switchyard <args>` against `sy`, or against nothing listening when `None`.
async fn switchyard(sy: Option<&Switchyard>, args: &[&str]) -> Output {
    let url = sy.map(Switchyard::url);
    run_switchyard(env!("CARGO_BIN_EXE_switchyard"), url.as_deref(), args).await
}

/// A Switchyard whose plugin `a` fails every order while `failing` is set, with `n` orders
/// dead-lettered; returns their ids in order.
async fn with_dead_letters(n: u32) -> (Switchyard, TestWorker, Arc<AtomicBool>, Vec<EventId>) {
    // Boxed: the fixture's start is a large future, and this one is awaited by each test.
    let sy = Box::pin(Switchyard::start()).await;
    sy.register(manifest("a", "max_attempts = 1")).await;
    let failing = Arc::new(AtomicBool::new(true));
    let worker = TestWorker::start(&sy.url(), sy.namespace(), "a", {
        let failing = Arc::clone(&failing);
        move |_| {
            if failing.load(Ordering::SeqCst) {
                Behaviour::Reply(Outcome::Failed {
                    code: ErrorCode::new("order.invalid").unwrap(),
                    reason: "no lines".into(),
                })
            } else {
                Behaviour::Reply(Outcome::Done)
            }
        }
    })
    .await;
    let ids = sy.publish_orders("acme", 0..n).await;
    sy.wait_for_dead_letters(n as usize, DEADLINE).await;
    (sy, worker, failing, ids)
}

#[tokio::test]
async fn list_show_and_replay_as_an_operator_runs_them() {
    let (sy, worker, failing, ids) = with_dead_letters(2).await;
    let letters = sy.dead_letters().await;

    let listed = succeeded(&switchyard(Some(&sy), &["dlq", "list", "--plugin", "a"]).await);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two dead letters:\n{listed}");
    for column in ["SEQ", "PLUGIN", "CODE", "ATTEMPTS", "EVENT ID", "REASON"] {
        assert!(lines[0].contains(column), "{column} in {}", lines[0]);
    }
    for (line, (letter, id)) in lines[1..].iter().zip(letters.iter().zip(&ids)) {
        assert!(line.starts_with(&letter.sequence.to_string()), "{line}");
        for part in ["a", "orders", "order.invalid", "acme", "order.created"] {
            assert!(line.contains(part), "{part} in {line}");
        }
        assert!(line.contains(id.as_str()), "{line}");
        assert!(line.ends_with("no lines"), "{line}");
    }
    let none = succeeded(&switchyard(Some(&sy), &["dlq", "list", "--plugin", "b"]).await);
    assert_eq!(none.trim(), "no dead letters match");
    let recent = succeeded(&switchyard(Some(&sy), &["dlq", "list", "--since", "1h"]).await);
    assert_eq!(recent.lines().count(), 3, "{recent}");
    let old = succeeded(&switchyard(Some(&sy), &["dlq", "list", "--until", "1h"]).await);
    assert_eq!(old.trim(), "no dead letters match");

    let sequence = letters[0].sequence.to_string();
    let shown = succeeded(&switchyard(Some(&sy), &["dlq", "show", &sequence]).await);
    for expected in [
        format!("sequence:         {sequence}"),
        "code:             order.invalid".to_owned(),
        "reason:           no lines".to_owned(),
        "attempts:         1".to_owned(),
        format!("ce-id: {}", ids[0]),
        "body (application/msgpack".to_owned(),
        "\"n\": 0".to_owned(),
    ] {
        assert!(shown.contains(&expected), "{expected:?} in:\n{shown}");
    }
    assert!(!shown.contains("switchyard-dlq-"), "{shown}");

    failing.store(false, Ordering::SeqCst);
    let before = worker.count();
    let replayed = succeeded(&switchyard(Some(&sy), &["dlq", "replay", "--plugin", "a"]).await);
    assert_eq!(replayed.trim(), "replayed 2 dead letters of a");
    assert!(sy.dead_letters().await.is_empty());
    worker.wait_for(before + 2, DEADLINE).await.unwrap();
    // Deliveries run side by side, so the two may arrive in either order.
    let mut orders: Vec<u32> = worker.received()[before..]
        .iter()
        .map(|d| d.event.data_as::<OrderCreated>().unwrap().n)
        .collect();
    orders.sort_unstable();
    assert_eq!(orders, [0, 1]);
    wait_until(DEADLINE, || async {
        sy.consumer_backlog("a").await == (0, 0)
    })
    .await
    .expect("the replays are acknowledged");

    let gone = failed(&switchyard(Some(&sy), &["dlq", "show", &sequence]).await);
    assert!(
        gone.contains(&format!("no dead letter has sequence {sequence}")),
        "{gone}"
    );
}

#[tokio::test]
async fn list_and_show_print_one_json_document() {
    let (sy, _worker, _failing, ids) = with_dead_letters(2).await;
    let letters = sy.dead_letters().await;
    let json = |output: &Output| -> serde_json::Value {
        let text = succeeded(output);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{text}"))
    };

    let listed = json(&switchyard(Some(&sy), &["dlq", "list", "--json", "--plugin", "a"]).await);
    let found = listed["dead_letters"].as_array().expect("a list");
    assert_eq!(found.len(), 2, "{listed:#}");
    for ((letter, stored), id) in found.iter().zip(&letters).zip(&ids) {
        assert_eq!(letter["sequence"], stored.sequence);
        assert_eq!(letter["plugin"], "a");
        assert_eq!(letter["subscription"], "orders");
        assert_eq!(letter["code"], "order.invalid");
        assert_eq!(letter["reason"], "no lines");
        assert_eq!(letter["attempts"], 1);
        assert_eq!(letter["tenant"], "acme");
        assert_eq!(letter["event_type"], "order.created");
        assert_eq!(letter["event_id"], id.as_str());
        for time in ["stored", "first_failure", "last_failure"] {
            let text = letter[time].as_str().unwrap_or_default();
            assert!(
                time::OffsetDateTime::parse(text, &Rfc3339).is_ok(),
                "{time}: {letter}"
            );
        }
        assert!(letter["original_subject"].is_string(), "{letter}");
        assert!(letter["stream_sequence"].is_u64(), "{letter}");
    }
    let none = json(&switchyard(Some(&sy), &["dlq", "list", "--json", "--plugin", "b"]).await);
    assert_eq!(none, serde_json::json!({ "dead_letters": [] }));

    let sequence = letters[0].sequence.to_string();
    let shown = json(&switchyard(Some(&sy), &["dlq", "show", "--json", &sequence]).await);
    assert_eq!(shown["sequence"], letters[0].sequence);
    assert_eq!(shown["code"], "order.invalid");
    assert_eq!(shown["event_id"], ids[0].as_str());
    assert_eq!(shown["valid_event"], true);
    assert_eq!(
        shown["headers"]["ce-id"],
        serde_json::json!([ids[0].as_str()])
    );
    let original = &shown["original"];
    assert_eq!(original["form"], "copy", "{shown:#}");
    assert_eq!(original["content_type"], "application/msgpack");
    assert_eq!(original["body"], serde_json::json!({ "n": 0 }));
    assert!(original["body_base64"].is_string(), "{original}");
}

#[tokio::test]
async fn purge_deletes_the_named_dead_letters_or_all_of_them() {
    let (sy, _worker, _failing, _) = with_dead_letters(3).await;
    let letters = sy.dead_letters().await;

    let first = letters[0].sequence.to_string();
    let purged =
        succeeded(&switchyard(Some(&sy), &["dlq", "purge", "--plugin", "a", &first]).await);
    assert_eq!(purged.trim(), "purged 1");
    assert_eq!(sy.dead_letters().await.len(), 2);

    let second = letters[1].sequence.to_string();
    let wrong = failed(&switchyard(Some(&sy), &["dlq", "purge", "--plugin", "b", &second]).await);
    assert!(
        wrong.contains(&format!(
            "dead letter {second} belongs to plugin `a`, not `b`"
        )),
        "{wrong}"
    );
    assert_eq!(sy.dead_letters().await.len(), 2);
    let all = succeeded(&switchyard(Some(&sy), &["dlq", "purge", "--plugin", "a", "--all"]).await);
    assert_eq!(all.trim(), "purged 2");
    assert!(sy.dead_letters().await.is_empty());
}

#[tokio::test]
async fn help_names_every_verb() {
    let help = succeeded(&switchyard(None, &["dlq", "--help"]).await);
    for verb in ["list", "show", "replay", "purge"] {
        assert!(
            help.lines().any(|line| line.trim_start().starts_with(verb)),
            "{verb} in:\n{help}"
        );
    }
}

#[tokio::test]
async fn purge_without_sequences_or_all_is_refused_before_connecting() {
    let output = switchyard(None, &["dlq", "purge", "--plugin", "a"]).await;
    let message = failed(&output);
    assert!(message.contains("<SEQ|--all>"), "{message}");
    let both = failed(&switchyard(None, &["dlq", "purge", "--plugin", "a", "--all", "3"]).await);
    assert!(both.contains("cannot be used with"), "{both}");
}
