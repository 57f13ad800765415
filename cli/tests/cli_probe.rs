//! `switchyard auth probe` as an operator runs it: the built binary against a real nats-server,
//! secured (every cell passes) and unsecured (the probe says so and fails).

use switchyard_tests::{failed, run_switchyard, stdout, succeeded, SecuredSwitchyard, TestServer};

/// The closing `N passed, M failed` line.
fn tally(output: &str) -> (usize, usize) {
    let line = output
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no tally in {output}"));
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(line.ends_with("failed"), "{line}");
    (numbers[0], numbers[1])
}

#[tokio::test]
async fn the_probe_passes_on_a_secured_deployment() {
    let sy = SecuredSwitchyard::start().await;
    let admin = sy.setup.admin.url(&sy.url());
    let output = run_switchyard(
        env!("CARGO_BIN_EXE_switchyard"),
        Some(&admin),
        &["auth", "probe", "--grace", "0s"],
    )
    .await;
    let (passed, failed) = tally(&succeeded(&output));
    assert_eq!(failed, 0);
    assert!(passed > 150, "{passed}");
}

#[tokio::test]
async fn the_probe_fails_where_rights_are_not_enforced() {
    let server = TestServer::start().await;
    let output = run_switchyard(
        env!("CARGO_BIN_EXE_switchyard"),
        Some(&server.url()),
        &["auth", "probe", "--wait", "2s", "--grace", "0s"],
    )
    .await;
    let error = failed(&output);
    assert!(error.contains("can get past its rights"), "{error}");
    let out = stdout(&output);
    let (_, failed) = tally(&out);
    assert!(failed > 100, "{out}");
    assert!(out.contains("FAIL"), "{out}");
}
