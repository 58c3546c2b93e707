//! A real browser: Debian's chromium, driven by playwright-core (tests/browser/eventsource.cjs),
//! opens a native `EventSource` first with the credential cookie and then with a one-time
//! ticket it mints itself, and receives the events published meanwhile.
//!
//! Needs `TIDINGS_TEST_PLAYWRIGHT` (the playwright-core package directory, installed by
//! `./scripts/test` into target/test-deps/node) and chromium at `/usr/bin/chromium`
//! (`TIDINGS_TEST_CHROMIUM` to override); without them the test fails, it does not skip.

use serde_json::json;

use crate::support::{BrowserScript, Server};

const TOKEN: &str = "browser-token-0123456789";

#[tokio::test(flavor = "multi_thread")]
async fn chromium_eventsource_receives_events_with_a_cookie_and_then_with_a_ticket() {
    let spec = format!("{TOKEN}:publish=browser/*;subscribe=browser/*");
    let server = Server::start(&["--token", &spec]);
    let url = format!("http://{}", server.addr);
    let mut browser = BrowserScript::start("eventsource.cjs", &[&url, TOKEN]);
    let publish = async |topic: &str, n: u64| -> String {
        let (status, v) = server
            .publish_raw(
                &json!({"topic": topic, "type": "t", "data": {"n": n}}),
                &[("authorization", &format!("Bearer {TOKEN}"))],
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v["ids"][0].as_str().expect("id").to_owned()
    };

    // The cookie stream is open (the hub answered 200 to the browser's own request).
    assert_eq!(browser.next().await, json!({"open": "cookie"}));
    let id = publish("browser/cookie", 1).await;
    browser.say("published").await;
    let got = browser.next().await;
    assert_eq!(got["cookie"]["id"], id, "{got}");
    assert_eq!(got["cookie"]["data"], r#"{"n":1}"#, "{got}");

    // The page mints a ticket, drops the cookie, and opens a stream with the ticket alone.
    let minted = browser.next().await;
    assert_eq!(minted, json!({"minted": 200, "expires_in": 60}));
    assert_eq!(browser.next().await, json!({"open": "ticket"}));
    let id = publish("browser/ticket", 2).await;
    browser.say("published").await;
    let got = browser.next().await;
    assert_eq!(got["ticket"]["id"], id, "{got}");
    assert_eq!(got["ticket"]["data"], r#"{"n":2}"#, "{got}");

    browser.finish().await;
}
