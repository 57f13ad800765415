//! Broker-enforced plugin rights as an operator sets them up: `switchyard auth init`, a
//! nats-server with the configuration it wrote, `switchyard auth serve`, and `switchyard
//! plugins credentials | disable | enable` deciding whether a plugin gets in.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use switchyard_tests::{wait_until, TestConfig, TestServer};

const WAIT: Duration = Duration::from_secs(15);

/// Runs `switchyard <args>` against `url`.
async fn switchyard(url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("SWITCHYARD_NATS_URL", url)
        .env_remove("SWITCHYARD_PREFIX")
        .env_remove("SWITCHYARD_NATS_CREDS")
        .output()
        .await
        .expect("running switchyard")
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The login URL `init` printed for `user`, pointed at `server`.
fn login(printed: &str, user: &str, server: &str) -> String {
    let marker = format!("nats://{user}:");
    let line = printed
        .lines()
        .find(|line| line.contains(&marker))
        .unwrap_or_else(|| panic!("no {user} login in:\n{printed}"));
    let password = line
        .split(&marker)
        .nth(1)
        .and_then(|rest| rest.split('@').next())
        .unwrap();
    server.replacen("nats://", &format!("nats://{user}:{password}@"), 1)
}

async fn plugin_connects(url: &str, token: &str) -> bool {
    async_nats::ConnectOptions::with_user_and_password("audit-log".to_owned(), token.to_owned())
        .connect(url)
        .await
        .is_ok()
}

#[tokio::test]
async fn an_operator_turns_rights_on_and_decides_who_connects() {
    let dir = tempfile::tempdir().unwrap();
    let init = switchyard(
        "nats://127.0.0.1:1",
        &["auth", "init", "--dir", dir.path().to_str().unwrap()],
    )
    .await;
    let printed = succeeded(&init);
    let seed = dir.path().join("issuer.nk");
    let config = dir.path().join("nats-auth.conf");
    #[cfg(unix)]
    for file in [&seed, &config] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is private", file.display());
    }
    // A second init does not overwrite the keys.
    let again = switchyard(
        "nats://127.0.0.1:1",
        &["auth", "init", "--dir", dir.path().to_str().unwrap()],
    )
    .await;
    assert!(!again.status.success());

    let server = TestServer::with_config_refusing_anonymous(TestConfig::File(config)).await;
    let url = server.url();
    let (dispatcher, admin, system) = (
        login(&printed, "dispatcher", &url),
        login(&printed, "admin", &url),
        login(&printed, "system", &url),
    );
    // The administrator provisions (as a deploy would) and registers the plugin.
    succeeded(&switchyard(&admin, &["streams", "provision"]).await);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/manifests/audit-log.toml");
    succeeded(
        &switchyard(
            &admin,
            &[
                "plugins",
                "add",
                manifest.to_str().unwrap(),
                "--all-tenants",
            ],
        )
        .await,
    );

    let _auth = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "auth",
            "serve",
            "--sweep-interval",
            "1s",
            "--issuer-seed-file",
        ])
        .arg(&seed)
        .env("SWITCHYARD_NATS_URL", &dispatcher)
        .env("SWITCHYARD_AUTH_SYSTEM_URL", &system)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("auth serve starts");

    let issued = succeeded(&switchyard(&admin, &["plugins", "credentials", "audit-log"]).await);
    let token = issued
        .trim()
        .strip_prefix("SWITCHYARD_PLUGIN_TOKEN=")
        .unwrap_or_else(|| panic!("a token line, got {issued}"))
        .to_owned();
    wait_until(WAIT, || plugin_connects(&url, &token))
        .await
        .expect("the plugin connects with its token once the callout runs");
    assert!(!plugin_connects(&url, "not-the-token").await);

    succeeded(&switchyard(&admin, &["plugins", "disable", "audit-log"]).await);
    let listed = succeeded(&switchyard(&admin, &["plugins", "list"]).await);
    assert!(listed.contains("disabled"), "{listed}");
    assert!(!plugin_connects(&url, &token).await);
    succeeded(&switchyard(&admin, &["plugins", "enable", "audit-log"]).await);
    assert!(plugin_connects(&url, &token).await);

    let revoked =
        succeeded(&switchyard(&admin, &["plugins", "credentials", "audit-log", "--revoke"]).await);
    assert!(revoked.contains("revoked"), "{revoked}");
    assert!(!plugin_connects(&url, &token).await);

    // Without a login, the CLI is refused like anyone else.
    let anonymous = switchyard(&url, &["plugins", "list"]).await;
    assert!(!anonymous.status.success());
}
