//! Hostile events, sent the way any publisher can: over a raw TCP connection to a real
//! nats-server, which stores them as they are. Each must be settled in bounded attempts, kept
//! in a dead letter (or accounted for by one), never reach a worker in a form it cannot trust,
//! and never stop the events after it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use switchyard_dispatcher::dead_letter::header as dlq;
use switchyard_schemas::delivery::header as dh;
use switchyard_schemas::delivery::Outcome;
use switchyard_tests::{
    event_lines, header_block, manifest, Behaviour, RawPublisher, StoredDeadLetter, Switchyard,
    TestWorker,
};

const DEADLINE: Duration = Duration::from_secs(20);
const SUBJECT: &str = "switchyard.events.acme.order.created";

/// A Switchyard with plugin `audit` (3 attempts) and a worker that handles everything.
async fn with_worker() -> (Switchyard, TestWorker) {
    let sy = Switchyard::start().await;
    sy.register(manifest(
        "audit",
        r#"backoff = { fixed = ["100ms"] }
        max_attempts = 3"#,
    ))
    .await;
    let worker = TestWorker::start(&sy.url(), sy.namespace(), "audit", |_| {
        Behaviour::Reply(Outcome::Done)
    })
    .await;
    (sy, worker)
}

/// Publishes a valid event with id `id` after the hostile ones, and waits for the worker to
/// get it: what came before did not wedge delivery.
async fn still_delivers(sy: &Switchyard, worker: &TestWorker, raw: &mut RawPublisher, id: &str) {
    let lines = event_lines(id, "acme");
    let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    raw.publish(SUBJECT, &header_block(&lines), b"{\"n\":1}")
        .await;
    switchyard_tests::wait_until(DEADLINE, || async {
        worker
            .received()
            .iter()
            .any(|d| d.event.attributes.id.as_str() == id)
    })
    .await
    .unwrap_or_else(|e| panic!("event {id} after the hostile ones is delivered: {e}"));
    let (_, ack_pending) = sy.consumer_backlog("audit").await;
    assert!(ack_pending <= 1, "nothing stays in flight: {ack_pending}");
}

fn raw_form(letter: &StoredDeadLetter) -> (&[u8], &[u8]) {
    let len: usize = letter
        .headers
        .get(dlq::RAW_HEADER_LEN)
        .unwrap_or_else(|| panic!("a raw dead letter: {:?}", letter.headers))
        .as_str()
        .parse()
        .unwrap();
    letter.payload.split_at(len)
}

#[tokio::test]
async fn unreadable_header_blocks_are_dead_lettered_raw_without_dropping_the_connection() {
    let (sy, worker) = Box::pin(with_worker()).await;
    let connects = sy
        .dispatcher_client
        .statistics()
        .connects
        .load(Ordering::Relaxed);
    let mut raw = RawPublisher::connect(sy.server.port()).await;

    let base = event_lines("hostile", "acme");
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("bare CR in a value", b"ce-subject: a\rb".to_vec()),
        ("a line without a colon", b"no colon here".to_vec()),
        ("a name with a space", b"bad name: x".to_vec()),
        ("bytes that are not UTF-8", b"x-bin: \xff\xfe".to_vec()),
    ];
    let mut blocks = Vec::new();
    for (n, (_, line)) in hostile.iter().enumerate() {
        let mut lines: Vec<Vec<u8>> = event_lines(&format!("hostile-{n}"), "acme");
        lines.push(line.clone());
        let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let block = header_block(&lines);
        raw.publish(SUBJECT, &block, format!("{{\"n\":{n}}}").as_bytes())
            .await;
        blocks.push(block);
    }
    drop(base);

    let letters = sy.wait_for_dead_letters(hostile.len(), DEADLINE).await;
    for (n, letter) in letters.iter().enumerate() {
        assert_eq!(
            letter.failure.code.as_str(),
            "event.malformed-headers",
            "{}",
            hostile[n].0
        );
        let (block, body) = raw_form(letter);
        assert_eq!(
            block,
            blocks[n].as_slice(),
            "{}: header block kept byte for byte",
            hostile[n].0
        );
        assert_eq!(body, format!("{{\"n\":{n}}}").as_bytes());
        assert!(
            letter.failure.reason.contains("header block"),
            "{}",
            letter.failure.reason
        );
    }
    still_delivers(&sy, &worker, &mut raw, "after-malformed").await;
    assert!(
        worker
            .received()
            .iter()
            .all(|d| !d.event.attributes.id.as_str().starts_with("hostile")),
        "no malformed event reached the worker"
    );
    assert_eq!(
        sy.dispatcher_client
            .statistics()
            .connects
            .load(Ordering::Relaxed),
        connects,
        "the dispatcher's connection never dropped"
    );
}

#[tokio::test]
async fn a_status_line_written_by_a_publisher_is_not_taken_for_the_servers() {
    let (sy, worker) = Box::pin(with_worker()).await;
    let mut raw = RawPublisher::connect(sy.server.port()).await;
    for (n, status) in ["408 Request Timeout", "100 Idle Heartbeat", "503"]
        .iter()
        .enumerate()
    {
        let mut block = format!("NATS/1.0 {status}\r\n").into_bytes();
        for line in event_lines(&format!("status-{n}"), "acme") {
            block.extend_from_slice(&line);
            block.extend_from_slice(b"\r\n");
        }
        block.extend_from_slice(b"\r\n");
        raw.publish(SUBJECT, &block, b"{}").await;
    }
    // JetStream stores the header block but delivers it from a plain `NATS/1.0` line, so the
    // events arrive as events: not swallowed as a pull status, not looped.
    switchyard_tests::wait_until(DEADLINE, || async {
        let ids: Vec<String> = worker
            .received()
            .iter()
            .map(|d| d.event.attributes.id.to_string())
            .collect();
        (0..3).all(|n| ids.contains(&format!("status-{n}")))
    })
    .await
    .expect("the three events are delivered");
    still_delivers(&sy, &worker, &mut raw, "after-status").await;
}

#[tokio::test]
async fn tenant_and_type_come_from_the_subject_not_the_headers() {
    let (sy, worker) = Box::pin(with_worker()).await;
    let mut raw = RawPublisher::connect(sy.server.port()).await;

    // Tenant: published for acme, headers claim globex.
    let lines = event_lines("spoof-tenant", "globex");
    let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    raw.publish(SUBJECT, &header_block(&lines), b"{}").await;
    // Type: published as order.created, headers claim order.refunded.
    let mut lines = event_lines("spoof-type", "acme");
    lines[4] = b"ce-type: order.refunded".to_vec();
    let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    raw.publish(SUBJECT, &header_block(&lines), b"{}").await;
    // A second ce-tenant after the right one, and a differently spelled one.
    let mut lines = event_lines("spoof-repeat", "acme");
    lines.push(b"ce-tenant: globex".to_vec());
    lines.push(b"CE-TENANT: globex".to_vec());
    let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    raw.publish(SUBJECT, &header_block(&lines), b"{}").await;

    let letters = sy.wait_for_dead_letters(2, DEADLINE).await;
    for letter in &letters {
        assert_eq!(letter.failure.code.as_str(), "event.subject-mismatch");
        assert_eq!(letter.failure.original_subject, SUBJECT);
    }
    // The dead letters are filed under the subject's tenant, not the claimed one.
    let dlq_stream = sy
        .bus
        .jetstream()
        .get_stream(&sy.bus.streams().dead_letters.name)
        .await
        .unwrap();
    assert!(dlq_stream
        .direct_get_last_for_subject("switchyard.dlq.audit.acme.order.created")
        .await
        .is_ok());
    for claimed in [
        "switchyard.dlq.audit.globex.order.created",
        "switchyard.dlq.audit.acme.order.refunded",
    ] {
        assert!(
            dlq_stream
                .direct_get_last_for_subject(claimed)
                .await
                .is_err(),
            "{claimed}"
        );
    }

    still_delivers(&sy, &worker, &mut raw, "after-spoof").await;
    let received = worker.received();
    let repeat = received
        .iter()
        .find(|d| d.event.attributes.id.as_str() == "spoof-repeat")
        .expect("the event whose first ce-tenant is right is delivered");
    assert_eq!(repeat.event.attributes.tenant.as_str(), "acme");
    assert!(received.iter().all(|d| !matches!(
        d.event.attributes.id.as_str(),
        "spoof-tenant" | "spoof-type"
    )));
}

#[tokio::test]
async fn reserved_headers_from_a_publisher_never_reach_the_worker() {
    let sy = Switchyard::start().await;
    sy.register(manifest("audit", "")).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    // A worker that records every header name it is sent (the probe answer included).
    let client = async_nats::connect(sy.url()).await.unwrap();
    let mut deliveries = client
        .queue_subscribe("switchyard.deliver.audit", "audit".into())
        .await
        .unwrap();
    client
        .publish("switchyard.control.hello.audit", "".into())
        .await
        .unwrap();
    let task = tokio::spawn({
        let seen = std::sync::Arc::clone(&seen);
        let client = client.clone();
        async move {
            use futures::StreamExt;
            while let Some(message) = deliveries.next().await {
                let headers = message.headers.clone().unwrap_or_default();
                let names: Vec<String> = headers.iter().map(|(n, _)| n.to_string()).collect();
                let is_probe = headers.get(dh::PROBE).is_some();
                seen.lock()
                    .unwrap()
                    .push((names, is_probe, message.payload.clone()));
                if let Some(reply) = message.reply {
                    let mut answer = async_nats::HeaderMap::new();
                    answer.insert(dh::OUTCOME, "done");
                    let _ = client.publish_with_headers(reply, answer, "".into()).await;
                }
            }
        }
    });

    let mut raw = RawPublisher::connect(sy.server.port()).await;
    let mut lines = event_lines("reserved", "acme");
    lines.push(b"switchyard-probe: 1".to_vec());
    lines.push(b"Switchyard-Delivery: attempt=99".to_vec());
    lines.push(b"x-kept: yes".to_vec());
    let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    raw.publish(SUBJECT, &header_block(&lines), b"{\"n\":5}")
        .await;

    switchyard_tests::wait_until(DEADLINE, || async {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(_, probe, body)| !probe && body.as_ref() == b"{\"n\":5}")
    })
    .await
    .expect("the event is delivered as an event, not a probe");
    let seen = seen.lock().unwrap().clone();
    let (names, _, _) = seen
        .iter()
        .find(|(_, probe, body)| !probe && body.as_ref() == b"{\"n\":5}")
        .unwrap();
    assert!(names.iter().any(|n| n == "x-kept"));
    assert_eq!(
        names
            .iter()
            .filter(|n| n.to_ascii_lowercase().starts_with("switchyard-"))
            .count(),
        1,
        "only the dispatcher's own delivery header: {names:?}"
    );
    // Acked (the answer settled it), not retried as a probe would leave it.
    switchyard_tests::wait_until(DEADLINE, || async {
        sy.consumer_backlog("audit").await == (0, 0)
    })
    .await
    .expect("the event is settled");
    task.abort();
}

#[tokio::test]
async fn an_event_that_fits_the_stream_but_not_a_delivery_is_dead_lettered_in_bounded_time() {
    let (sy, worker) = Box::pin(with_worker()).await;
    let max_payload = sy.dispatcher_client.server_info().max_payload;
    let mut raw = RawPublisher::connect(sy.server.port()).await;
    let lines = event_lines("too-large", "acme");
    let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    let block = header_block(&lines);
    // Exactly max_payload as stored: the delivery's own header cannot fit.
    let mut body = b"\"".to_vec();
    body.resize(max_payload - block.len() - 1, b'x');
    body.push(b'"');
    raw.publish(SUBJECT, &block, &body).await;

    let letters = sy.wait_for_dead_letters(1, DEADLINE).await;
    let letter = &letters[0];
    assert_eq!(letter.failure.code.as_str(), "event.too-large");
    // Neither a copy nor the raw bytes fit with the metadata: the dead letter says where the
    // event is.
    let omitted = letter
        .headers
        .get(dlq::OMITTED)
        .expect("omitted form")
        .as_str();
    assert!(omitted.contains("sequence 1"), "{omitted}");
    assert!(letter.payload.is_empty());
    still_delivers(&sy, &worker, &mut raw, "after-too-large").await;
    assert!(worker
        .received()
        .iter()
        .all(|d| d.event.attributes.id.as_str() != "too-large"));
}

#[tokio::test]
async fn a_64_kib_unreadable_header_block_is_kept_raw_in_the_body() {
    let (sy, worker) = Box::pin(with_worker()).await;
    let mut raw = RawPublisher::connect(sy.server.port()).await;
    let mut lines = event_lines("big-header", "acme");
    let mut filler = b"x-filler: ".to_vec();
    filler.resize(64 * 1024 - 600, b'f');
    lines.push(filler);
    lines.push(b"x-broken: a\rb".to_vec());
    let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    let block = header_block(&lines);
    assert!(block.len() < 65_536 && block.len() > 65_000);
    raw.publish(SUBJECT, &block, b"{}").await;

    let letters = sy.wait_for_dead_letters(1, DEADLINE).await;
    assert_eq!(letters[0].failure.code.as_str(), "event.malformed-headers");
    let (kept, body) = raw_form(&letters[0]);
    assert_eq!(kept, block.as_slice());
    assert_eq!(body, b"{}");
    still_delivers(&sy, &worker, &mut raw, "after-big-header").await;
}

#[tokio::test]
async fn a_readable_header_block_too_large_to_copy_with_the_metadata_is_kept_raw() {
    let sy = Switchyard::start().await;
    sy.register(manifest("audit", "max_attempts = 1")).await;
    let _worker = TestWorker::start(&sy.url(), sy.namespace(), "audit", |_| {
        Behaviour::Reply(Outcome::Failed {
            code: switchyard_schemas::delivery::ErrorCode::new("order.invalid").unwrap(),
            reason: "no".into(),
        })
    })
    .await;
    let mut raw = RawPublisher::connect(sy.server.port()).await;
    let mut lines = event_lines("big-valid", "acme");
    let mut filler = b"x-filler: ".to_vec();
    filler.resize(65_535 - 400, b'f');
    lines.push(filler);
    let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    let block = header_block(&lines);
    assert!(block.len() <= 65_535);
    raw.publish(SUBJECT, &block, b"{}").await;

    let letters = sy.wait_for_dead_letters(1, DEADLINE).await;
    assert_eq!(letters[0].failure.code.as_str(), "order.invalid");
    let (kept, body) = raw_form(&letters[0]);
    assert!(kept.starts_with(b"NATS/1.0\r\n"));
    assert!(kept.windows(10).any(|w| w == b"x-filler: "));
    assert_eq!(body, b"{}");
}

#[tokio::test]
async fn a_dead_letter_kept_raw_is_not_replayed_and_stays() {
    use switchyard_dispatcher::redrive::{DeadLetters, RedriveError, Selection};

    let (sy, _worker) = Box::pin(with_worker()).await;
    let mut raw = RawPublisher::connect(sy.server.port()).await;
    let mut lines = event_lines("raw-replay", "acme");
    lines.push(b"x-broken: a\rb".to_vec());
    let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    raw.publish(SUBJECT, &header_block(&lines), b"{}").await;
    let letters = sy.wait_for_dead_letters(1, DEADLINE).await;

    let dead_letters = DeadLetters::new(
        sy.bus.jetstream().clone(),
        sy.namespace().clone(),
        sy.bus.streams(),
    );
    let plugin = switchyard_schemas::PluginId::new("audit").unwrap();
    let error = dead_letters
        .replay(&Selection::all(plugin), &sy.auditor().await)
        .await
        .expect_err("a raw dead letter cannot be published again");
    let RedriveError::Interrupted { source, .. } = &error else {
        panic!("expected the replay to stop at the raw dead letter: {error}");
    };
    assert!(
        matches!(**source, RedriveError::NotReplayable { .. }),
        "{source}"
    );
    assert_eq!(sy.dead_letters().await.len(), 1, "the dead letter stays");
    assert_eq!(sy.dead_letters().await[0].sequence, letters[0].sequence);
}
