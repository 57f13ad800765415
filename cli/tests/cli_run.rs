//! `switchyard run` as an operator runs it: the built binary as a child process against a real
//! nats-server, stopped with SIGTERM, or killed in the middle of writing dead letters.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::Duration;

use switchyard_schemas::delivery::{ErrorCode, Outcome};
use switchyard_schemas::EventId;
use switchyard_tests::{
    manifest, wait_until, Behaviour, RunningDispatcher, Switchyard, TestWorker,
};
use tokio::process::Command;

const DEADLINE: Duration = Duration::from_secs(15);
/// The binary under test.
const SWITCHYARD: &str = env!("CARGO_BIN_EXE_switchyard");

/// How many messages the dead-letter stream holds.
async fn dead_letter_count(sy: &Switchyard) -> u64 {
    let mut stream = sy
        .bus
        .jetstream()
        .get_stream(&sy.bus.streams().dead_letters.name)
        .await
        .expect("dead-letter stream");
    stream
        .info()
        .await
        .map(|info| info.state.messages)
        .unwrap_or(0)
}

#[tokio::test]
async fn sigterm_stops_run_cleanly() {
    let sy = Switchyard::without_dispatcher().await;
    let mut run =
        RunningDispatcher::start(SWITCHYARD, &sy.url(), &["--shutdown-grace", "5s"]).await;
    // It works before it is stopped: registering a plugin creates its consumer.
    sy.register(manifest("audit", "")).await;

    run.terminate().await;
    let status = run.wait(DEADLINE).await;
    assert!(status.success(), "exit {status:?}\n{}", run.output());
    let stdout = run.stdout();
    assert!(stdout.contains("stopping"), "{}", run.output());
    assert!(
        stdout.lines().any(|line| line.trim() == "stopped"),
        "{}",
        run.output()
    );
}

/// A dispatcher killed between storing a dead letter and acking the event leaves the event
/// un-acked; the next one dead-letters it again, and the dead letter's `Nats-Msg-Id` makes
/// the stream store it once.
///
/// To be sure the kill lands inside that window (it lasts about one round trip), the process
/// is frozen (SIGSTOP) and the server's counts are compared: more dead letters than acked
/// events means some dead letter's event is still un-acked. If none is, it is thawed
/// (SIGCONT) and frozen again a little later.
#[tokio::test]
async fn a_dispatcher_killed_while_dead_lettering_loses_nothing_and_duplicates_nothing() {
    const EVENTS: u32 = 600;
    let sy = Switchyard::without_dispatcher().await;
    // Every event fails: the breaker must not pause deliveries for its cooldown.
    let no_breaker = ["--breaker-failures", "100000"];
    let mut first = RunningDispatcher::start(SWITCHYARD, &sy.url(), &no_breaker).await;
    // The faster events flow, the likelier a freeze lands in the window; the rate limit keeps
    // enough of them waiting for the next try. A 1 s timeout gives an 11 s ack wait: what the
    // killed dispatcher held comes back after that.
    sy.register(manifest(
        "audit",
        "rate = \"1000/s\"\nburst = 1\ntimeout = \"1s\"",
    ))
    .await;
    let worker = TestWorker::start(&sy.url(), sy.namespace(), "audit", |_| {
        Behaviour::Reply(Outcome::Failed {
            code: ErrorCode::new("order.invalid").unwrap(),
            reason: "never valid".into(),
        })
    })
    .await;
    let ids = sy.publish_orders("acme", 0..EVENTS).await;

    let mut in_window = 0;
    let mut freezes = 0;
    while in_window == 0 {
        let (pending, ack_pending) = sy.consumer_backlog("audit").await;
        assert!(
            pending > 0,
            "all events were taken before the window was caught ({freezes} tries)"
        );
        first.signal("-STOP").await;
        freezes += 1;
        in_window = settled_window(&sy, EVENTS).await;
        if in_window == 0 {
            first.signal("-CONT").await;
            let acked_before = EVENTS as u64 - pending - ack_pending as u64;
            // Let a few more events through before the next try.
            wait_until(DEADLINE, || async {
                let (p, a) = sy.consumer_backlog("audit").await;
                EVENTS as u64 - p - a as u64 >= acked_before + 3
            })
            .await
            .expect("the thawed dispatcher goes on");
        }
    }
    first.crash().await;
    let at_crash: BTreeMap<u64, EventId> = sy
        .dead_letters()
        .await
        .into_iter()
        .map(|l| (l.failure.stream_sequence, l.event.unwrap().attributes.id))
        .collect();

    let second = RunningDispatcher::start(SWITCHYARD, &sy.url(), &no_breaker).await;
    wait_until(Duration::from_secs(25), || async {
        sy.consumer_backlog("audit").await == (0, 0)
    })
    .await
    .unwrap_or_else(|e| panic!("the second dispatcher finishes: {e}\n{}", second.output()));

    // The events caught in the window were delivered again, and dead-lettered again.
    let again = worker
        .received()
        .iter()
        .filter(|d| d.info.attempt > 1 && at_crash.contains_key(&d.info.stream_sequence))
        .count();
    assert!(
        again as u64 >= in_window,
        "{in_window} events were in the window (caught after {freezes} freezes), {again} came back"
    );

    let letters = sy.dead_letters().await;
    let mut per_event: BTreeMap<EventId, usize> = BTreeMap::new();
    for letter in &letters {
        assert_eq!(letter.failure.plugin.as_str(), "audit");
        let event = letter
            .event
            .as_ref()
            .expect("the dead letter holds the event");
        *per_event.entry(event.attributes.id.clone()).or_default() += 1;
    }
    let twice: Vec<_> = per_event.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "dead-lettered more than once: {twice:?}");
    let missing: Vec<_> = ids
        .iter()
        .filter(|id| !per_event.contains_key(id))
        .collect();
    assert!(missing.is_empty(), "never dead-lettered: {missing:?}");
    assert_eq!(letters.len(), EVENTS as usize);
}

/// With the dispatcher frozen, once the server's counts stop moving: how many events have a
/// dead letter but are not acked yet (every acked event was dead-lettered first).
async fn settled_window(sy: &Switchyard, events: u32) -> u64 {
    let reading = || async {
        let (pending, ack_pending) = sy.consumer_backlog("audit").await;
        let acked = events as u64 - pending - ack_pending as u64;
        (dead_letter_count(sy).await, acked)
    };
    let last = Cell::new(reading().await);
    wait_until(DEADLINE, || async {
        // What the process sent before it froze may still be on its way in.
        let now = reading().await;
        now == last.replace(now)
    })
    .await
    .expect("a frozen dispatcher's counts settle");
    let (dead_letters, acked) = last.get();
    dead_letters.saturating_sub(acked)
}

#[tokio::test]
async fn run_help_describes_the_shutdown_grace_and_the_breaker() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "--help"])
        .output()
        .await
        .expect("running switchyard run --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "--shutdown-grace",
        "waits for deliveries under way",
        "--breaker-failures",
        "Consecutive failed attempts",
        "--breaker-cooldown",
        "open circuit",
        "[default: 30s]",
        "[default: 5]",
    ] {
        assert!(help.contains(needle), "`{needle}` in:\n{help}");
    }
}

/// With nats-server gone, SIGTERM still ends `run` within the grace period plus the bounded
/// tail (4 s): nothing waits for a reconnect that will not come.
#[tokio::test]
async fn sigterm_stops_run_even_when_nats_server_is_unreachable() {
    let mut sy = Switchyard::without_dispatcher().await;
    let mut run =
        RunningDispatcher::start(SWITCHYARD, &sy.url(), &["--shutdown-grace", "1s"]).await;
    sy.register(manifest("audit", "")).await;
    sy.server.server_mut().kill().expect("nats-server killed");

    run.terminate().await;
    // 1 s of grace, at most 4 s after it, and slack for a loaded machine.
    let status = run.wait(Duration::from_secs(12)).await;
    assert!(status.success(), "exit {status:?}\n{}", run.output());
    assert!(
        run.stdout().lines().any(|line| line.trim() == "stopped"),
        "{}",
        run.output()
    );
}

/// What `plugins status --json` says each dispatcher reports about `plugin`'s first
/// subscription: (instance, presumed gone).
async fn reported_dispatchers(sy: &Switchyard, plugin: &str) -> Vec<(String, bool)> {
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["plugins", "status", plugin, "--json", "--url", &sy.url()])
        .env_remove("SWITCHYARD_PREFIX")
        .output()
        .await
        .expect("running switchyard plugins status");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON document");
    status["subscriptions"][0]["dispatchers"]
        .as_array()
        .expect("a list of dispatchers")
        .iter()
        .map(|d| {
            (
                d["instance"].as_str().unwrap_or_default().to_owned(),
                d["presumed_gone"] == true,
            )
        })
        .collect()
}

/// A dispatcher stopped with SIGTERM removes its reports at once; one that is killed is shown
/// as presumed gone once it has missed three heartbeats (15 s), long before its reports
/// expire (60 s).
#[tokio::test]
async fn plugins_status_drops_a_stopped_dispatcher_and_marks_a_killed_one_gone() {
    let sy = Switchyard::without_dispatcher().await;
    let mut stopped = RunningDispatcher::start(
        SWITCHYARD,
        &sy.url(),
        &["--instance", "stopped", "--shutdown-grace", "2s"],
    )
    .await;
    let mut killed =
        RunningDispatcher::start(SWITCHYARD, &sy.url(), &["--instance", "killed"]).await;
    sy.register(manifest("audit", "")).await;
    let both = vec![("killed".to_owned(), false), ("stopped".to_owned(), false)];
    wait_until(DEADLINE, || async {
        reported_dispatchers(&sy, "audit").await == both
    })
    .await
    .expect("both dispatchers report, alive");

    stopped.terminate().await;
    let status = stopped.wait(DEADLINE).await;
    assert!(status.success(), "exit {status:?}\n{}", stopped.output());
    // Its reports are deleted before it exits.
    assert_eq!(
        reported_dispatchers(&sy, "audit").await,
        [("killed".to_owned(), false)]
    );

    killed.crash().await;
    // Presumed gone after 15 s without a heartbeat; the last one may be up to 5 s old.
    wait_until(Duration::from_secs(40), || async {
        reported_dispatchers(&sy, "audit").await == [("killed".to_owned(), true)]
    })
    .await
    .expect("the killed dispatcher is presumed gone");
    let text = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["plugins", "status", "audit", "--url", &sy.url()])
        .env_remove("SWITCHYARD_PREFIX")
        .output()
        .await
        .expect("running switchyard plugins status");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("killed=closed (last seen "), "{text}");
    assert!(text.contains("s ago, presumed gone)"), "{text}");
}
