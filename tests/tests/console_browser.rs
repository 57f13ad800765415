//! The web console in a real headless Chromium, against a real nats-server, dispatcher and
//! console: an operator signs in from the URL `switchyard dev` prints, approves a plugin,
//! replays a dead letter and sees it delivered; a viewer gets no actions, on a phone's screen
//! too; a bad token gets the sign-in page. What the browser shows is checked against the
//! registry and the worker, not only against the page. Screenshots land in
//! `target/test-artifacts/console/`.

use std::time::Duration;

use switchyard_schemas::PluginId;
use switchyard_tests::{package_bytes, wait_until, Browser, ConsoleFixture, HttpCall};

const DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn an_operator_approves_a_plugin_and_replays_a_dead_letter_in_the_browser() {
    let fx = Box::pin(ConsoleFixture::start()).await;
    fx.install_pending("newcomer").await;
    let flaky = fx.failing_plugin("flaky").await;
    fx.sy.publish_orders("acme", 0..1).await;
    fx.sy.wait_for_dead_letters(1, DEADLINE).await;

    let browser = Browser::start("operator-day", 1280, 900).await;
    // The URL `switchyard dev` prints: the token in the fragment signs in.
    browser
        .goto(&format!("{}#token={}", fx.url(), fx.operator))
        .await;
    browser.wait_for_text("#who-name", "operator").await;
    browser
        .wait_for_text(
            "tr[data-plugin=\"flaky\"] [data-field=\"dead_letters\"]",
            "1",
        )
        .await;
    browser
        .wait_for_text(
            "tr[data-plugin=\"newcomer\"] [data-field=\"state\"]",
            "pending",
        )
        .await;
    browser.wait_for_text("#live", "live").await;
    browser.screenshot("plugins").await;
    assert!(
        !browser
            .client()
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains("token="),
        "the token stays out of the address bar"
    );

    // Approve the newcomer from the approvals page.
    browser.goto(&format!("{}#/approvals", fx.url())).await;
    browser
        .click("article.approval[data-plugin=\"newcomer\"] button[data-action=\"approve\"]")
        .await;
    browser.screenshot("confirm-approval").await;
    browser.click("#dialog [data-action=\"confirm\"]").await;
    browser.wait_for_text("#notice", "approved newcomer").await;
    browser.screenshot("approved").await;
    let stored = fx
        .sy
        .registry
        .get(&PluginId::new("newcomer").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.is_active(), "the approval reached the registry");
    assert_eq!(stored.approval.unwrap().by, "operator (operator) via http");
    // The live view follows: the plugins page shows it enabled without a reload.
    browser.goto(&format!("{}#/plugins", fx.url())).await;
    browser
        .wait_for_text(
            "tr[data-plugin=\"newcomer\"] [data-field=\"state\"]",
            "enabled",
        )
        .await;

    // Replay the dead letter once the plugin is fixed, and see it delivered.
    flaky.recover();
    browser
        .goto(&format!("{}#/dead-letters?plugin=flaky", fx.url()))
        .await;
    browser
        .wait_for_text("tr[data-sequence] [data-field=\"code\"]", "order.invalid")
        .await;
    browser.screenshot("dead-letters").await;
    browser.click("tr[data-sequence] input.select").await;
    browser.click("[data-action=\"replay-selected\"]").await;
    browser.click("#dialog [data-action=\"confirm\"]").await;
    browser.wait_for_text("#notice", "replayed 1").await;
    flaky
        .worker
        .wait_for(2, DEADLINE)
        .await
        .expect("the replayed event is delivered");
    wait_until(DEADLINE, || async {
        !browser.exists("tr[data-sequence]").await
    })
    .await
    .expect("the replayed dead letter leaves the list");
    browser.screenshot("replayed").await;

    // The audit page names who did it.
    browser.goto(&format!("{}#/audit", fx.url())).await;
    browser
        .wait_for_text("#main", "operator (operator) via http")
        .await;
    browser.wait_for_text("#main", "dlq_replayed").await;
    browser.screenshot("audit").await;
    browser.close().await;
}

#[tokio::test]
async fn a_viewer_on_a_phone_sees_everything_and_no_actions() {
    let fx = Box::pin(ConsoleFixture::start()).await;
    fx.install_pending("waiting").await;
    let browser = Browser::start("viewer-phone", 375, 812).await;
    browser
        .goto(&format!("{}#token={}", fx.url(), fx.viewer))
        .await;
    browser.wait_for_text("#who-role", "viewer").await;
    browser
        .wait_for_text(
            "tr[data-plugin=\"waiting\"] [data-field=\"state\"]",
            "pending",
        )
        .await;
    browser.screenshot("plugins").await;
    browser
        .goto(&format!("{}#/plugins/waiting", fx.url()))
        .await;
    browser.wait_for_text("#main", "waiting").await;
    browser.find("pre#manifest").await;
    assert!(
        !browser.exists("#plugin-actions button").await,
        "a viewer is offered actions"
    );
    browser.screenshot("plugin").await;
    // The page fits the screen: nothing is wider than the window.
    let overflow = browser
        .client()
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap_or(0) <= 0,
        "the page scrolls sideways on a phone by {overflow}px"
    );
    assert!(
        !browser.exists("#nav-operators:not([hidden])").await,
        "a viewer is offered the operators page"
    );
    browser.close().await;
}

#[tokio::test]
async fn a_bad_token_gets_the_sign_in_page_and_a_good_one_gets_in() {
    let fx = Box::pin(ConsoleFixture::start()).await;
    let browser = Browser::start("sign-in", 1280, 900).await;
    browser
        .goto(&format!("{}#token=admin.not-the-secret", fx.url()))
        .await;
    browser.find("#token-input").await;
    browser.wait_for_text("#main", "not an operator").await;
    browser.screenshot("refused").await;
    browser
        .find("#token-input")
        .await
        .send_keys(&fx.admin)
        .await
        .unwrap();
    browser.click("#sign-in").await;
    browser.wait_for_text("#who-name", "admin").await;
    browser.find("#nav-operators").await;
    browser.screenshot("signed-in").await;
    browser.close().await;
}

#[tokio::test]
async fn an_operator_edits_a_setting_in_the_browser_and_it_is_stored() {
    let fx = Box::pin(ConsoleFixture::start()).await;
    fx.sy
        .register(switchyard_tests::settings_manifest("greeter"))
        .await;
    let browser = Browser::start("settings", 1280, 900).await;
    browser
        .goto(&format!("{}#token={}", fx.url(), fx.operator))
        .await;
    browser.wait_for_text("#who-name", "operator").await;
    browser
        .goto(&format!("{}#/plugins/greeter", fx.url()))
        .await;
    browser
        .click("[data-action=\"edit-setting\"][data-setting=\"greeting\"]")
        .await;
    let input = browser.find("#setting-value").await;
    input.clear().await.unwrap();
    input.send_keys("bonjour").await.unwrap();
    browser
        .click("[data-action=\"save-setting\"][data-setting=\"greeting\"]")
        .await;
    browser.click("#dialog [data-action=\"confirm\"]").await;
    browser.wait_for_text("#notice", "set greeting").await;
    browser.screenshot("saved").await;
    // The observer: the settings store holds it.
    let store = switchyard_control::settings::SettingsStore::open(
        fx.sy.bus.jetstream(),
        fx.sy.namespace(),
        1,
    )
    .await
    .unwrap();
    let set = store.get(&PluginId::new("greeter").unwrap()).await.unwrap();
    assert_eq!(
        set.values.get("greeting").and_then(|v| v.as_str()),
        Some("bonjour")
    );
    assert!(
        !browser.exists("[data-action=\"set-secret\"]").await,
        "an operator is offered to set a secret"
    );
    browser.close().await;
}

#[tokio::test]
async fn an_operator_installs_a_package_from_the_catalog_and_upgrades_it_in_the_browser() {
    let fx = Box::pin(ConsoleFixture::start()).await;
    let publisher = switchyard_control::package::PublisherKeyPair::generate();
    let key = publisher.public_key().to_string();
    let (status, _) = fx
        .post(
            &fx.admin,
            "/api/v1/trust",
            &serde_json::json!({"key": key, "name": "Acme builds"}),
        )
        .await;
    assert_eq!(status, 200);
    let more = "\n[[subscriptions]]\nname = \"refunds\"\nevents = [\"refund.*\"]\n";
    for bytes in [
        package_bytes("geo", "1.0.0", "", Some(&publisher)),
        package_bytes("geo", "2.0.0", more, Some(&publisher)),
    ] {
        let (status, answer) = fx
            .send(
                HttpCall::new("POST", "/api/v1/packages")
                    .bearer(&fx.admin)
                    .bytes(bytes),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }

    let browser = Browser::start("install", 1280, 900).await;
    browser
        .goto(&format!("{}#token={}", fx.url(), fx.operator))
        .await;
    browser.wait_for_text("#who-name", "operator").await;
    browser.goto(&format!("{}#/install", fx.url())).await;
    browser
        .click("select[name=\"package\"] option[value=\"geo@1.0.0\"]")
        .await;
    browser
        .find("[data-section=\"install\"] input[name=\"tenants\"]")
        .await
        .send_keys("acme")
        .await
        .unwrap();
    browser
        .click("[data-section=\"install\"] input[name=\"approve\"]")
        .await;
    browser.screenshot("install-form").await;
    browser.click("[data-action=\"install\"]").await;
    browser
        .wait_for_text("[data-field=\"outcome\"]", "installed geo 1.0.0")
        .await;
    browser.screenshot("installed").await;
    // The observer: the registry holds it, approved by the operator, from the package.
    let geo = PluginId::new("geo").unwrap();
    let stored = fx.sy.registry.get(&geo).await.unwrap().unwrap();
    assert!(stored.is_active(), "approved at once and enabled");
    assert_eq!(
        stored.approval.as_ref().unwrap().by,
        "operator (operator) via http"
    );
    assert_eq!(
        stored.provenance.as_ref().unwrap().package.as_deref(),
        Some("geo/1.0.0")
    );

    // The upgrade asks for more: it waits for approval, and 1.0.0 keeps running.
    browser.goto(&format!("{}#/plugins/geo", fx.url())).await;
    browser.click("[data-action=\"upgrade\"]").await;
    browser
        .click("#dialog select[name=\"package\"] option[value=\"geo@2.0.0\"]")
        .await;
    browser.screenshot("upgrade-dialog").await;
    browser.click("#dialog [data-action=\"confirm\"]").await;
    browser.wait_for_text("#notice", "waits for approval").await;
    browser.screenshot("upgrade-waits").await;
    let stored = fx.sy.registry.get(&geo).await.unwrap().unwrap();
    assert_eq!(stored.manifest.plugin.version.to_string(), "1.0.0");
    assert_eq!(
        stored
            .pending_upgrade
            .as_ref()
            .map(|p| p.manifest.plugin.version.to_string()),
        Some("2.0.0".to_owned())
    );
    browser.close().await;
}
