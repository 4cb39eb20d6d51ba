//! Runs the quickstart example as a process, as a user would, and talks to it over HTTP.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// The example binary that `cargo test` builds beside the test binaries.
fn example_binary(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples").join(name)
}

struct Quickstart {
    child: Child,
    lines: mpsc::Receiver<String>,
    output: Vec<String>,
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Quickstart {
    fn start() -> Self {
        let mut child = Command::new(example_binary("quickstart"))
            .env("PORT", "0")
            .env("RUST_LOG", "trace")
            .env_remove("SCALEKIT_ENVIRONMENT_URL")
            .env_remove("REDIS_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the quickstart example (built by cargo test)");
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Self {
            child,
            lines,
            output: Vec::new(),
        }
    }

    fn wait_for_line(&mut self, prefix: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .expect("quickstart output");
            self.output.push(line.clone());
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(300)) {
            self.output.push(line);
        }
    }
}

#[tokio::test]
async fn quickstart_serves_the_documented_routes() {
    let mut app = Quickstart::start();
    let org_key = app.wait_for_line("org key: ");
    let user_key = app.wait_for_line("user key: ");
    let base = app.wait_for_line("listening on ");
    let http = reqwest::Client::new();
    let get = |path: &str, key: Option<&str>| {
        let mut request = http.get(format!("{base}{path}"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };

    assert_eq!(
        get("/healthz", None).await.unwrap().status(),
        StatusCode::OK
    );

    let response = get("/api/resources", Some(&org_key)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["organization_id"], "org_demo");
    let resources = body["resources"].as_array().unwrap();
    assert!(resources.iter().all(|r| r["organization_id"] == "org_demo"));

    let body: Value = get("/api/resources", Some(&user_key))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let users: Vec<&Value> = body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["user_id"])
        .collect();
    assert!(
        users.iter().all(|u| u.is_null() || *u == "usr_demo"),
        "{users:?}"
    );

    assert_eq!(
        get("/api/my/tasks", Some(&org_key)).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get("/api/my/tasks", Some(&user_key))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let me = get("/api/me", Some(&user_key))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(me.contains("usr_demo") && !me.contains(&user_key));

    let anonymous = get("/api/resources", None).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Bearer realm=\"quickstart\""
    );

    let two = http
        .get(format!("{base}/api/resources"))
        .header("authorization", format!("Bearer {org_key}"))
        .header("authorization", format!("Bearer {user_key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(two.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        get("/api/resources", Some("apit_12345678901234567"))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/api/resources", Some("eyJhbGciOi.eyJzdWIi.c2ln"))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // After start-up, the keys appear nowhere in what the server wrote, even at TRACE.
    app.drain();
    let key_lines: Vec<&String> = app
        .output
        .iter()
        .filter(|line| line.contains(&org_key) || line.contains(&user_key))
        .collect();
    assert_eq!(
        key_lines.len(),
        2,
        "only the two start-up lines may show keys: {key_lines:?}"
    );
    assert!(key_lines[0].starts_with("org key: ") && key_lines[1].starts_with("user key: "));
}

/// The quickstart in Scalekit mode, validating against the fake Scalekit on loopback.
#[cfg(feature = "test-util")]
#[tokio::test]
async fn quickstart_validates_with_scalekit_when_configured() {
    use axum_api_key::CreateToken;
    use axum_api_key::testing::FakeScalekit;

    let fake = FakeScalekit::start().await;
    let user_key = fake
        .tokens()
        .create(
            CreateToken::new("org_sk")
                .user("usr_sk")
                .claim("environment", "staging"),
        )
        .unwrap();
    let revoked = fake.tokens().create(CreateToken::new("org_sk")).unwrap();
    fake.tokens().invalidate(&revoked.token_id);

    let mut child = Command::new(example_binary("quickstart"))
        .env("PORT", "0")
        .env("SCALEKIT_ENVIRONMENT_URL", fake.url())
        .env("SCALEKIT_CLIENT_ID", fake.client_id())
        .env("SCALEKIT_CLIENT_SECRET", fake.client_secret())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut app = Quickstart {
        child,
        lines,
        output: Vec::new(),
    };
    let base = app.wait_for_line("listening on ");
    assert!(
        !app.output.iter().any(|l| l.starts_with("org key: ")),
        "no demo keys in Scalekit mode"
    );

    let http = reqwest::Client::new();
    let me: Value = http
        .get(format!("{base}/api/me"))
        .bearer_auth(user_key.key.expose_secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["organization_id"], "org_sk");
    assert_eq!(me["user_id"], "usr_sk");
    assert_eq!(me["custom_claims"]["environment"], "staging");

    let refused = http
        .get(format!("{base}/api/me"))
        .bearer_auth(revoked.key.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(fake.count(axum_api_key::testing::Op::Validate) >= 2);
}
