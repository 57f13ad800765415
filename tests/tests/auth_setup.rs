//! The set-up of broker-enforced rights as `switchyard auth init` writes it: authorization
//! requests sealed to the auth service's xkey, so that the trusted users who can subscribe to
//! `$SYS.REQ.USER.AUTH` never see a plugin's secret; a misconfigured pair (only one side has
//! the xkey) authorizes no one; and no plugin may take a trusted login's name.
//!
//! Every "refused" is shown against a positive control: the same plugin connects once the
//! configuration is right, and the observer that sees no secret in sealed requests does see it
//! in plaintext ones.

use std::sync::Arc;
use std::time::Duration;

use async_nats::Subscriber;
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use futures::StreamExt;
use switchyard_bus::Bus;
use switchyard_control::auth::{
    AuthConfig, AuthService, AuthSetup, CALLOUT_SUBJECT, SERVER_XKEY_HEADER,
};
use switchyard_control::registry::TenantScope;
use switchyard_schemas::Manifest;
use switchyard_tests::{
    round_trip, wait_until, Sealing, SecuredSwitchyard, TestConfig, TestServer,
};

const WAIT: Duration = Duration::from_secs(30);
/// How long one login attempt may take to be decided: beyond the server's auth timeout (5 s),
/// at which an unanswered one is refused.
const ADMISSION: Duration = Duration::from_secs(10);
const PLUGIN: &str = "audit-log";

fn manifest() -> Manifest {
    Manifest::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/audit-log.toml"
    ))
    .expect("valid manifest")
}

/// A subscription of the administrator (a trusted user of the callout's account) to the
/// authorization requests, as any trusted user could make.
async fn observe_requests(sy: &SecuredSwitchyard) -> Subscriber {
    let observer = sy.admin.subscribe(CALLOUT_SUBJECT).await.unwrap();
    round_trip(&sy.admin).await;
    observer
}

/// The next authorization request the observer sees.
async fn next_request(observer: &mut Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, observer.next())
        .await
        .expect("an authorization request within the deadline")
        .expect("the subscription is open")
}

/// Whether `payload` shows `secret` in any form: as it is, its bytes, in hex, or inside
/// anything base64 (standard or URL alphabet, at any alignment: a JWT's claims, say).
fn reveals(payload: &[u8], secret: &str) -> bool {
    let mut forms = vec![
        secret.as_bytes().to_vec(),
        HEXLOWER.encode(secret.as_bytes()).into_bytes(),
    ];
    if let Ok(raw) = BASE64URL_NOPAD.decode(secret.as_bytes()) {
        forms.push(HEXLOWER.encode(&raw).into_bytes());
        forms.push(raw);
    }
    let shows = |haystack: &[u8]| {
        forms
            .iter()
            .any(|form| haystack.windows(form.len()).any(|window| window == form))
    };
    if shows(payload) {
        return true;
    }
    let base64 = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'/');
    payload
        .split(|b| !base64(b))
        .filter(|run| run.len() >= 8)
        .any(|run| {
            let url: Vec<u8> = run
                .iter()
                .map(|b| match b {
                    b'+' => b'-',
                    b'/' => b'_',
                    b => *b,
                })
                .collect();
            (0..4).any(|offset| {
                let run = &url[offset.min(url.len())..];
                let whole = &run[..run.len() / 4 * 4];
                BASE64URL_NOPAD
                    .decode(whole)
                    .is_ok_and(|decoded| shows(&decoded))
            })
        })
}

#[tokio::test]
async fn trusted_observers_see_sealed_requests_without_the_plugins_secret() {
    let sy = SecuredSwitchyard::start().await;
    let mut observer = observe_requests(&sy).await;
    let secret = sy.register(manifest(), TenantScope::All).await;

    let plugin = sy
        .connect_plugin(PLUGIN, secret.expose())
        .await
        .expect("the plugin connects: the server opened the sealed response");
    round_trip(&plugin.client).await;

    let request = next_request(&mut observer).await;
    let server_xkey = request
        .headers
        .as_ref()
        .and_then(|headers| headers.get(SERVER_XKEY_HEADER))
        .map(|key| key.as_str().to_owned())
        .expect("the request names the server's xkey");
    assert!(server_xkey.starts_with('X'), "{server_xkey}");
    assert!(
        request.payload.starts_with(b"xkv1"),
        "a sealed box, not a JWT: {:?}",
        String::from_utf8_lossy(&request.payload)
    );
    assert!(!request.payload.starts_with(b"eyJ"));
    assert!(
        !reveals(&request.payload, secret.expose()),
        "the sealed request shows the secret"
    );
}

#[tokio::test]
async fn without_sealing_the_same_observer_sees_the_secret() {
    // The control of the test above: its check finds the secret where it is.
    let sy = SecuredSwitchyard::start_with(Sealing::Neither).await;
    let mut observer = observe_requests(&sy).await;
    let secret = sy.register(manifest(), TenantScope::All).await;

    sy.connect_plugin(PLUGIN, secret.expose())
        .await
        .expect("the plugin connects");

    let request = next_request(&mut observer).await;
    assert!(request
        .headers
        .as_ref()
        .and_then(|headers| headers.get(SERVER_XKEY_HEADER))
        .is_none());
    assert!(request.payload.starts_with(b"eyJ"));
    assert!(reveals(&request.payload, secret.expose()));
    assert!(!reveals(&request.payload, "x".repeat(43).as_str()));
}

#[tokio::test]
async fn a_service_without_the_xkey_authorizes_no_one_against_a_sealing_server() {
    let mut sy = SecuredSwitchyard::start_with(Sealing::ServerOnly).await;
    let secret = sy.register(manifest(), TenantScope::All).await;

    assert!(
        !admitted(&sy, secret.expose()).await,
        "a sealed request is not answered by a service that cannot open it"
    );

    // The same server, plugin and secret: a service with the xkey lets it in.
    let xkey = sy.setup.xkey.clone();
    sy.restart_auth(Some(xkey)).await;
    wait_until(WAIT, || admitted(&sy, secret.expose()))
        .await
        .expect("the plugin gets in once the service holds the xkey");
}

#[tokio::test]
async fn a_service_with_the_xkey_refuses_plaintext_requests() {
    let mut sy = SecuredSwitchyard::start_with(Sealing::ServiceOnly).await;
    let secret = sy.register(manifest(), TenantScope::All).await;

    assert!(
        !admitted(&sy, secret.expose()).await,
        "a plaintext request is not answered by a service that expects sealed ones"
    );

    sy.restart_auth(None).await;
    wait_until(WAIT, || admitted(&sy, secret.expose()))
        .await
        .expect("the plugin gets in once both sides agree");
}

/// Whether the plugin gets in: a message to its own inbox comes back (the server serves it),
/// or the server refuses it. A connect can look successful before the server has decided:
/// the client takes any first answer for the server's acceptance, and an unanswered
/// authorization request is refused only at the server's auth timeout (5 s).
async fn admitted(sy: &SecuredSwitchyard, secret: &str) -> bool {
    let Ok(plugin) = sy.connect_plugin(PLUGIN, secret).await else {
        return false;
    };
    let inbox = plugin.client.new_inbox();
    let Ok(mut echo) = plugin.client.subscribe(inbox.clone()).await else {
        return false;
    };
    if plugin.client.publish(inbox, "".into()).await.is_err() {
        return false;
    }
    let refused = wait_until(ADMISSION, || async {
        plugin.events.count("Authorization Violation") > 0
    });
    tokio::select! {
        echoed = tokio::time::timeout(ADMISSION, echo.next()) => matches!(echoed, Ok(Some(_))),
        _ = refused => false,
    }
}

/// Whether the server's log holds `text` (nats-server logs the callout's refusal reasons).
fn logged(server: &TestServer, text: &str) -> bool {
    std::fs::read_to_string(server.server().log_file()).is_ok_and(|log| log.contains(text))
}

#[tokio::test]
async fn the_callout_refuses_a_trusted_logins_name_even_when_the_server_sends_it() {
    // A misconfigured server: `admin` is not among the users that bypass the callout, so its
    // logins reach the auth service, which must refuse the name whatever the registry says.
    let setup = AuthSetup::generate();
    let config = setup.server_config();
    let trusted = r#"auth_users: [ "dispatcher", "admin", "system" ]"#;
    assert!(config.contains(trusted));
    let config: String = config
        .replace(trusted, r#"auth_users: [ "dispatcher", "system" ]"#)
        .lines()
        .filter(|line| !line.contains(r#"user: "admin""#))
        .map(|line| format!("{line}\n"))
        .collect();
    let server = TestServer::with_config_refusing_anonymous(TestConfig::text(config)).await;
    let url = server.url();
    let trusted = |login: &switchyard_control::auth::Login| {
        let options = switchyard_bus::ConnectOptions::new(login.url(&url));
        async move { options.connect().await }
    };
    let dispatcher = trusted(&setup.dispatcher)
        .await
        .expect("dispatcher connects");
    let system = trusted(&setup.system).await.expect("system connects");
    let bus = Bus::from_client(dispatcher.clone());
    wait_until(WAIT, || async { bus.provision().await.is_ok() })
        .await
        .expect("streams provision");
    let mut config = AuthConfig::new(&setup.issuer_seed()).unwrap();
    config.xkey = Some(Arc::new(setup.xkey.clone()));
    let auth = AuthService::start(dispatcher, Some(system), config)
        .await
        .expect("auth service starts");

    let connect = |user: &str| {
        async_nats::ConnectOptions::with_user_and_password(user.to_owned(), "guess".to_owned())
            .connect(url.clone())
    };
    // Control: an unknown plugin is refused by the callout, for that reason.
    assert!(connect("stranger").await.is_err());
    wait_until(WAIT, || async {
        logged(&server, "plugin `stranger` is not registered")
    })
    .await
    .unwrap_or_else(|_| panic!("the refusal is logged:\n{}", server.server().log_tail()));

    assert!(connect("admin").await.is_err());
    let reason = "`admin` is reserved for a trusted login";
    wait_until(WAIT, || async { logged(&server, reason) })
        .await
        .unwrap_or_else(|_| panic!("{reason}:\n{}", server.server().log_tail()));
    auth.shutdown().await;
}
