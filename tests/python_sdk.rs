//! Scalekit's official Python SDK (`scalekit-sdk-python`, pinned in
//! `scripts/scalekit-sdk-python.pin`) as a client of `FakeScalekit` over TLS: gRPC for the
//! token service, HTTPS `/oauth/token` through `requests`. A client nobody here wrote is the
//! proof that the fake answers as Scalekit does; the keys it mints are then checked by this
//! crate's gRPC client.
//!
//! Needs `python3` with `venv` and access to the package registry on the first run (the venv is
//! cached under `target/pysdk/`). Without them the test FAILS; set
//! `AXUM_API_KEY_SKIP_PYTHON_SDK=1` to skip it on purpose.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use axum_api_key::scalekit::ScalekitError;
use axum_api_key::testing::{FakeScalekit, Op};
use axum_api_key::{ApiKey, ValidateError, Validator};

const SKIP_VAR: &str = "AXUM_API_KEY_SKIP_PYTHON_SDK";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not start: {e} (set {SKIP_VAR}=1 to skip)"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The venv with the pinned SDK, made once and reused.
fn venv() -> PathBuf {
    let pin = std::fs::read_to_string(root().join("scripts/scalekit-sdk-python.pin"))
        .expect("the SDK pin file")
        .trim()
        .to_owned();
    let dir = root().join("target/pysdk/venv");
    let python = dir.join("bin/python");
    let marker = dir.join(format!(".installed-scalekit-sdk-python-{pin}"));
    if !marker.is_file() {
        if !python.is_file() {
            run(
                Command::new("python3").args(["-m", "venv"]).arg(&dir),
                "python3 -m venv (install python3-venv)",
            );
        }
        run(
            Command::new(dir.join("bin/pip")).args([
                "install",
                "-q",
                "--disable-pip-version-check",
                &format!("scalekit-sdk-python=={pin}"),
            ]),
            "pip install scalekit-sdk-python",
        );
        std::fs::write(&marker, b"").expect("venv marker");
    }
    python
}

fn write_temp(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("temp file");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_drives_the_fake_over_tls() {
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        eprintln!("skipped: {SKIP_VAR}=1");
        return;
    }
    let python = tokio::task::spawn_blocking(venv).await.expect("venv");
    let fake = FakeScalekit::builder().tls(true).start().await.unwrap();
    let work = root().join(format!("target/pysdk/run-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let ca = write_temp(&work, "ca.pem", fake.ca_pem().unwrap());
    let keys_file = work.join("keys.json");

    let mut command = tokio::process::Command::new(python);
    command
        .arg(root().join("tests/python/sdk_roundtrip.py"))
        .env("SCALEKIT_ENVIRONMENT_URL", fake.url())
        .env("SCALEKIT_CLIENT_ID", fake.client_id())
        .env("SCALEKIT_CLIENT_SECRET", fake.client_secret())
        .env("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", &ca)
        .env("REQUESTS_CA_BUNDLE", &ca)
        .env("SDK_KEYS_FILE", &keys_file)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .expect("the SDK script finishes")
        .expect("the SDK script starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the SDK script failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    // The SDK really went through the fake, on both of its wires.
    assert!(
        fake.count(Op::Token) >= 1,
        "HTTPS /oauth/token via requests"
    );
    assert_eq!(fake.count(Op::Create), 2);
    assert!(fake.count(Op::Validate) >= 5);
    assert!(fake.count(Op::List) >= 5);
    assert_eq!(fake.count(Op::Update), 1);
    assert_eq!(fake.count(Op::Invalidate), 2);

    // What the SDK left behind, seen by this crate's gRPC client over the same TLS.
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap();
    let keys: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&keys_file).unwrap()).unwrap();
    std::fs::remove_dir_all(&work).ok();
    let client = fake.grpc_client();
    let alive = client
        .validate(&ApiKey::new(keys["alive"].as_str().unwrap()))
        .await
        .expect("the key the SDK minted and kept is valid");
    assert_eq!(alive.info().token_id(), summary["alive"].as_str().unwrap());
    assert_eq!(alive.info().claim("team"), Some("platform"));
    assert_eq!(alive.info().user_id(), Some("usr_63261492986167383"));
    let revoked = client
        .validate(&ApiKey::new(keys["revoked"].as_str().unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(revoked, ValidateError::Invalid(_)), "{revoked:?}");
    assert_eq!(
        client
            .validate_token(summary["revoked"].as_str().unwrap())
            .await,
        Err(ScalekitError::NotFound)
    );
}
