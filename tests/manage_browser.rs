//! The key-management page in a real browser: headless Chromium driven through WebDriver
//! (Debian's `chromium` and `chromium-driver`; `scripts/test.sh` installs them).
//!
//! Signs in, creates a key on the page, reads it once from the page, uses it (200), revokes it
//! on the page with the confirmation, and sees 401. Also writes a screenshot of the page to
//! `target/key-management.png` (and to `docs/key-management.png` with
//! `AXUM_API_KEY_UPDATE_SCREENSHOT=1`).
//!
//! Fails when Chromium or its driver is missing, unless `AXUM_API_KEY_SKIP_BROWSER_TESTS=1`.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum_api_key::keys::CreateToken;
use axum_api_key::manage::{ApiKeyManagers, KeyManagement, Session, SessionManagers};
use axum_api_key::{ApiKeyLayer, InMemoryTokens};
use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::StatusCode;
use serde_json::json;

const SKIP_VAR: &str = "AXUM_API_KEY_SKIP_BROWSER_TESTS";

/// The chromedriver process, killed on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The app of the quickstart, in small: `/keys`, `/demo/sign-in`, `/protected`.
fn app(store: InMemoryTokens) -> Router {
    let sessions = SessionManagers::new(b"browser test secret, thirty-two bytes+")
        .unwrap()
        .secure(false);
    let managers = (
        sessions.clone(),
        ApiKeyManagers::new(ApiKeyLayer::new(store.clone())),
    );
    let keys = KeyManagement::new(store.clone(), managers)
        .allowed_claims(["environment"])
        .title("Acme API keys")
        .router();
    let sign_in = move || async move {
        let cookie = sessions.sign_in(Session::admin("org_demo", "demo admin"));
        ([(http::header::SET_COOKIE, cookie)], Redirect::to("/keys")).into_response()
    };
    let protected = Router::new()
        .route("/protected", get(|| async { "ok" }))
        .layer(ApiKeyLayer::new(store));
    Router::new()
        .route("/demo/sign-in", get(sign_in))
        .nest("/keys", keys)
        .merge(protected)
}

#[tokio::test]
async fn create_use_and_revoke_a_key_in_a_real_browser() {
    let skip = std::env::var(SKIP_VAR).is_ok_and(|v| v == "1");
    let browser = find_binary(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = find_binary(&["chromedriver", "chromium-driver"]);
    let (Some(browser), Some(driver)) = (browser, driver) else {
        if skip {
            eprintln!("skipped: no chromium / chromedriver ({SKIP_VAR}=1)");
            return;
        }
        panic!(
            "the browser test needs Debian's `chromium` and `chromium-driver` \
             (scripts/test.sh installs them); set {SKIP_VAR}=1 to skip it explicitly"
        );
    };

    let port = free_port();
    let _driver = Driver(
        Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );

    let store = InMemoryTokens::new();
    for (description, user) in [
        ("Nightly export job", None),
        ("Grafana datasource", None),
        ("Alice's laptop CLI", Some("usr_alice")),
    ] {
        let mut request = CreateToken::new("org_demo")
            .description(description)
            .claim("environment", "production");
        request.user_id = user.map(str::to_owned);
        store.create(request).unwrap();
    }
    let base = serve(app(store.clone())).await;

    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": browser,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000"],
        }),
    );
    let mut client = None;
    for _ in 0..50 {
        // chromedriver takes a moment to listen.
        // Plain HTTP to the driver on loopback: no TLS stack needed.
        match ClientBuilder::new(HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let client = client.expect("connect to chromedriver");

    // Sign in: the demo route sets the session cookie and redirects to the page.
    client.goto(&format!("{base}/demo/sign-in")).await.unwrap();
    assert_eq!(client.current_url().await.unwrap().path(), "/keys");
    let source = client.source().await.unwrap();
    assert!(
        source.contains("Grafana datasource"),
        "the page lists the keys"
    );

    // Create a key on the page.
    client
        .find(Locator::Id("description"))
        .await
        .unwrap()
        .send_keys("Browser test <key>")
        .await
        .unwrap();
    client
        .find(Locator::Id("create"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let field = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id("new-key"))
        .await
        .expect("the new key appears");
    let key = field.prop("value").await.unwrap().expect("a key");
    assert_eq!(key.len(), 77);
    // Focus is on the new key; the copy button is shown (its script ran under the CSP).
    let focused = client
        .execute("return document.activeElement.id", vec![])
        .await
        .unwrap();
    assert_eq!(focused, json!("new-key"));
    let copy = client.find(Locator::Id("copy")).await.unwrap();
    assert!(copy.is_displayed().await.unwrap());

    client.set_window_size(1280, 1700).await.unwrap();
    let screenshot = client.screenshot().await.unwrap();
    save_screenshot(&screenshot);

    // The key works at once.
    let http = reqwest::Client::new();
    let status = |key: String| {
        let http = http.clone();
        let url = format!("{base}/protected");
        async move {
            http.get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(status(key.clone()).await, StatusCode::OK);

    // Shown once: the page, opened again, lists the key but never shows it.
    client.goto(&format!("{base}/keys")).await.unwrap();
    let source = client.source().await.unwrap();
    assert!(!source.contains(&key));
    assert!(
        source.contains("Browser test &lt;key&gt;"),
        "escaped, listed"
    );

    // Revoke on the page: open the row's "Revoke", confirm.
    let row = "//tr[td[contains(., 'Browser test <key>')]]";
    client
        .find(Locator::XPath(&format!(
            "{row}//details[summary='Revoke']/summary"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .find(Locator::XPath(&format!(
            "{row}//button[starts-with(@id, 'revoke-')]"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let mut gone = false;
    for _ in 0..100 {
        let source = client.source().await.unwrap();
        if !source.contains("Browser test &lt;key&gt;") && source.contains("Active keys") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the page reloads without the key");
    assert_eq!(client.current_url().await.unwrap().path(), "/keys");
    assert_eq!(status(key).await, StatusCode::UNAUTHORIZED);

    client.close().await.unwrap();
}

fn save_screenshot(png: &[u8]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let _ = std::fs::write(root.join("target/key-management.png"), png);
    if std::env::var("AXUM_API_KEY_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1") {
        std::fs::write(root.join("docs/key-management.png"), png).unwrap();
    }
}
