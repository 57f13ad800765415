//! Broker-enforced plugin rights as an operator sets them up: `switchyard auth init`, a
//! nats-server with the configuration it wrote, `switchyard auth serve`, and `switchyard
//! plugins credentials | disable | enable` deciding whether a plugin gets in.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use switchyard_tests::{wait_until, TestConfig, TestServer};

// Long enough for a first login attempt made before `auth serve` listens (refused at the
// server's 5 s auth timeout) and a second one.
const WAIT: Duration = Duration::from_secs(30);

/// Runs `switchyard <args>`, with no URL in the environment (each command names its own).
async fn switchyard(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env_remove("SWITCHYARD_NATS_URL")
        .env_remove("SWITCHYARD_NATS_URL_FILE")
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

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[cfg(unix)]
fn assert_private(file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{} is private", file.display());
}

/// The password in a login URL file.
fn password(url_file: &Path) -> String {
    let url = std::fs::read_to_string(url_file).unwrap();
    let (_, rest) = url.trim().split_once("://").unwrap();
    let (userinfo, _) = rest.rsplit_once('@').unwrap();
    userinfo.split_once(':').unwrap().1.to_owned()
}

/// Whether the plugin gets in: it connects and a message to its own inbox comes back. (A
/// connect alone can look successful while the server still waits for the callout.)
async fn plugin_connects(url: &str, token: &str) -> bool {
    let connected = async_nats::ConnectOptions::with_user_and_password(
        "audit-log".to_owned(),
        token.to_owned(),
    )
    .custom_inbox_prefix("_SY_INBOX.switchyard.audit-log")
    .connect(url)
    .await;
    let Ok(client) = connected else {
        return false;
    };
    let inbox = client.new_inbox();
    let Ok(mut echo) = client.subscribe(inbox.clone()).await else {
        return false;
    };
    if client.publish(inbox, "".into()).await.is_err() {
        return false;
    }
    // Beyond the server's auth timeout (5 s): an unanswered login is closed by then.
    matches!(
        tokio::time::timeout(Duration::from_secs(8), futures::StreamExt::next(&mut echo)).await,
        Ok(Some(_))
    )
}

#[tokio::test]
async fn init_prints_no_secret_and_writes_each_login_to_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let init = switchyard(&["auth", "init", "--dir", dir_arg]).await;
    let printed = succeeded(&init) + &stderr(&init);
    let files = [
        "issuer.nk",
        "xkey.nk",
        "nats-auth.conf",
        "dispatcher.url",
        "admin.url",
        "system.url",
    ];
    for name in files {
        let file = dir.path().join(name);
        assert!(printed.contains(&file.display().to_string()), "{printed}");
        #[cfg(unix)]
        assert_private(&file);
    }
    for login in ["dispatcher", "admin", "system"] {
        let file = dir.path().join(format!("{login}.url"));
        let url = std::fs::read_to_string(&file).unwrap();
        assert!(
            url.starts_with(&format!("nats://{login}:"))
                && url.trim_end().ends_with("@127.0.0.1:4222"),
            "{url}"
        );
        assert!(!printed.contains(&password(&file)), "{printed}");
    }
    for seed in ["issuer.nk", "xkey.nk"] {
        let seed = std::fs::read_to_string(dir.path().join(seed)).unwrap();
        assert!(!printed.contains(seed.trim()), "{printed}");
    }
    assert!(!printed.contains("warning"), "{printed}");
    let config = std::fs::read_to_string(dir.path().join("nats-auth.conf")).unwrap();
    assert!(config.contains("listen: \"127.0.0.1:4222\""), "{config}");
    assert!(config.contains("    xkey: \"X"), "{config}");
    assert!(printed.contains("--url-file"), "{printed}");
    assert!(!printed.contains("--url "), "{printed}");

    // A second init overwrites nothing, not even the files that would be new.
    std::fs::remove_file(dir.path().join("system.url")).unwrap();
    let before = std::fs::read_to_string(dir.path().join("admin.url")).unwrap();
    let again = switchyard(&["auth", "init", "--dir", dir_arg]).await;
    assert!(!again.status.success());
    assert!(stderr(&again).contains("issuer.nk"), "{}", stderr(&again));
    assert!(!dir.path().join("system.url").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("admin.url")).unwrap(),
        before
    );
}

#[tokio::test]
async fn init_warns_when_the_server_listens_beyond_this_machine_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    let init = switchyard(&[
        "auth",
        "init",
        "--dir",
        open.to_str().unwrap(),
        "--listen",
        "0.0.0.0:4222",
    ])
    .await;
    succeeded(&init);
    let warning = stderr(&init);
    assert!(
        warning.contains("warning") && warning.contains("in clear"),
        "{warning}"
    );
    let url = std::fs::read_to_string(open.join("admin.url")).unwrap();
    assert!(url.trim_end().ends_with("@127.0.0.1:4222"), "{url}");

    let tls = dir.path().join("tls");
    let init = switchyard(&[
        "auth",
        "init",
        "--dir",
        tls.to_str().unwrap(),
        "--listen",
        "nats.internal:4443",
        "--tls-cert",
        "/etc/nats/server.pem",
        "--tls-key",
        "/etc/nats/server-key.pem",
    ])
    .await;
    succeeded(&init);
    assert!(!stderr(&init).contains("warning"), "{}", stderr(&init));
    let config = std::fs::read_to_string(tls.join("nats-auth.conf")).unwrap();
    assert!(config.contains("listen: \"nats.internal:4443\"\ntls {\n  cert_file: \"/etc/nats/server.pem\"\n  key_file: \"/etc/nats/server-key.pem\"\n}"), "{config}");
    let url = std::fs::read_to_string(tls.join("admin.url")).unwrap();
    assert!(
        url.starts_with("tls://admin:") && url.trim_end().ends_with("@nats.internal:4443"),
        "{url}"
    );

    // A key without its certificate, and a malformed address, are refused.
    let bad = switchyard(&[
        "auth",
        "init",
        "--dir",
        dir.path().join("x").to_str().unwrap(),
        "--tls-key",
        "k.pem",
    ])
    .await;
    assert!(!bad.status.success());
    let bad = switchyard(&[
        "auth",
        "init",
        "--dir",
        dir.path().join("y").to_str().unwrap(),
        "--listen",
        "4222",
    ])
    .await;
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("HOST:PORT"), "{}", stderr(&bad));
    assert!(!dir.path().join("x").exists() && !dir.path().join("y").exists());
}

#[tokio::test]
async fn url_files_are_exclusive_with_urls_and_must_hold_one() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.url");
    std::fs::write(&empty, "\n").unwrap();
    let both = switchyard(&[
        "plugins",
        "list",
        "--url",
        "nats://127.0.0.1:1",
        "--url-file",
        empty.to_str().unwrap(),
    ])
    .await;
    assert!(!both.status.success());
    assert!(stderr(&both).contains("--url-file"), "{}", stderr(&both));

    let out = switchyard(&["plugins", "list", "--url-file", empty.to_str().unwrap()]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("empty.url") && stderr(&out).contains("empty"),
        "{}",
        stderr(&out)
    );

    let missing = dir.path().join("missing.url");
    let out = switchyard(&["streams", "info", "--url-file", missing.to_str().unwrap()]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing.url"), "{}", stderr(&out));

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["plugins", "list"])
        .env("SWITCHYARD_NATS_URL", "nats://127.0.0.1:1")
        .env("SWITCHYARD_NATS_URL_FILE", &missing)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("SWITCHYARD_NATS_URL_FILE") && text.contains("unset one"),
        "{text}"
    );
}

/// Points a login URL file of `init` at `server` (the test server's random port).
fn point_at(url_file: &Path, server: &str) {
    let url = std::fs::read_to_string(url_file).unwrap();
    let host = server.strip_prefix("nats://").unwrap();
    std::fs::write(url_file, url.replace("127.0.0.1:4222", host)).unwrap();
}

#[tokio::test]
async fn an_operator_turns_rights_on_and_decides_who_connects() {
    let dir = tempfile::tempdir().unwrap();
    succeeded(&switchyard(&["auth", "init", "--dir", dir.path().to_str().unwrap()]).await);
    let seed = dir.path().join("issuer.nk");
    let xkey = dir.path().join("xkey.nk");
    let config = dir.path().join("nats-auth.conf");

    let server = TestServer::with_config_refusing_anonymous(TestConfig::File(config)).await;
    let url = server.url();
    let [dispatcher, admin, system] = ["dispatcher", "admin", "system"].map(|login| {
        let file = dir.path().join(format!("{login}.url"));
        point_at(&file, &url);
        file
    });
    let admin = admin.to_str().unwrap();
    // The administrator provisions (as a deploy would) and registers the plugin.
    succeeded(&switchyard(&["streams", "provision", "--url-file", admin]).await);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/manifests/audit-log.toml");
    succeeded(
        &switchyard(&[
            "plugins",
            "add",
            manifest.to_str().unwrap(),
            "--all-tenants",
            "--approve",
            "--url-file",
            admin,
        ])
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
        .arg("--url-file")
        .arg(&dispatcher)
        .env_remove("SWITCHYARD_NATS_URL")
        .env("SWITCHYARD_AUTH_XKEY_SEED_FILE", &xkey)
        .env("SWITCHYARD_AUTH_SYSTEM_URL_FILE", &system)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("auth serve starts");

    // The secret goes to a private file, not to the terminal.
    let token_file = dir.path().join("audit-log.token");
    let issued = switchyard(&[
        "plugins",
        "credentials",
        "audit-log",
        "--out",
        token_file.to_str().unwrap(),
        "--url-file",
        admin,
    ])
    .await;
    let printed = succeeded(&issued) + &stderr(&issued);
    #[cfg(unix)]
    assert_private(&token_file);
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(!token.is_empty() && !token.contains('='), "{token}");
    assert!(!printed.contains(&token), "{printed}");
    assert!(
        printed.contains(&token_file.display().to_string()),
        "{printed}"
    );
    wait_until(WAIT, || plugin_connects(&url, &token))
        .await
        .expect("the plugin connects with its token once the callout runs");
    assert!(!plugin_connects(&url, "not-the-token").await);

    succeeded(&switchyard(&["plugins", "disable", "audit-log", "--url-file", admin]).await);
    let listed = succeeded(&switchyard(&["plugins", "list", "--url-file", admin]).await);
    assert!(listed.contains("disabled"), "{listed}");
    assert!(!plugin_connects(&url, &token).await);
    succeeded(&switchyard(&["plugins", "enable", "audit-log", "--url-file", admin]).await);
    assert!(plugin_connects(&url, &token).await);

    // Without --out, the operator asked to see it: it is printed.
    let rotated =
        succeeded(&switchyard(&["plugins", "credentials", "audit-log", "--url-file", admin]).await);
    let new_token = rotated
        .trim()
        .strip_prefix("SWITCHYARD_PLUGIN_TOKEN=")
        .unwrap_or_else(|| panic!("a token line, got {rotated}"))
        .to_owned();
    wait_until(WAIT, || plugin_connects(&url, &new_token))
        .await
        .expect("the rotated token connects");
    assert!(!plugin_connects(&url, &token).await);

    let revoked = succeeded(
        &switchyard(&[
            "plugins",
            "credentials",
            "audit-log",
            "--revoke",
            "--url-file",
            admin,
        ])
        .await,
    );
    assert!(revoked.contains("revoked"), "{revoked}");
    assert!(!plugin_connects(&url, &new_token).await);

    // Without a login, the CLI is refused like anyone else.
    let anonymous = switchyard(&["plugins", "list", "--url", &url]).await;
    assert!(!anonymous.status.success());
}
