//! The `keys` example: its argument parsing (included from the example's source), and, when
//! the example binary has been built (`cargo test` builds examples), the binary itself against
//! the fake.

mod support;

#[allow(dead_code)]
#[path = "../examples/keys/cli.rs"]
mod cli;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use axum_api_key::keys::{CreateToken, KeyStoreError};
use axum_api_key::testing::FakeScalekit;
use cli::{Command, Expiry, parse, parse_ttl};
use time::OffsetDateTime;
use time::macros::datetime;

fn args(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn parses_create_with_every_option() {
    let command = parse(args(
        "create --org org_1 --user usr_1 --claim env=prod --claim team=a=b --ttl 30d --description ci",
    ))
    .unwrap();
    let Command::Create {
        org,
        user,
        claims,
        expiry,
        description,
    } = &command
    else {
        panic!("{command:?}");
    };
    assert_eq!(org, "org_1");
    assert_eq!(user.as_deref(), Some("usr_1"));
    assert_eq!(claims.get("env").map(String::as_str), Some("prod"));
    assert_eq!(claims.get("team").map(String::as_str), Some("a=b"));
    assert_eq!(*expiry, Some(Expiry::In(Duration::from_secs(30 * 86_400))));
    assert_eq!(description.as_deref(), Some("ci"));
    let now = datetime!(2026-01-01 00:00 UTC);
    let request = command.create_request(now).unwrap();
    assert_eq!(request.expiry, Some(datetime!(2026-01-31 00:00 UTC)));
    assert!(request.check().is_err()); // in the past now: the check still applies

    let at = parse(args("create --org org_1 --expires 2030-01-02T03:04:05Z")).unwrap();
    assert!(
        matches!(at, Command::Create { expiry: Some(Expiry::At(t)), .. } if t == datetime!(2030-01-02 03:04:05 UTC))
    );
}

#[test]
fn ttl_units() {
    assert_eq!(parse_ttl("12h"), Ok(Duration::from_secs(12 * 3600)));
    assert_eq!(parse_ttl("90m"), Ok(Duration::from_secs(90 * 60)));
    assert_eq!(parse_ttl("45s"), Ok(Duration::from_secs(45)));
    for bad in [
        "",
        "d",
        "0d",
        "12",
        "12w",
        "-1h",
        "1.5h",
        "99999999999999d",
        "é",
    ] {
        assert!(parse_ttl(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn rejects_bad_command_lines() {
    for line in [
        "",
        "frobnicate",
        "create",
        "create --org",
        "create --org org_1 --claim novalue",
        "create --org org_1 --claim =v",
        "create --org org_1 --claim a=1 --claim a=2",
        "create --org org_1 --ttl 1d --expires 2030-01-01T00:00:00Z",
        "create --org org_1 --expires tomorrow",
        "create --org org_1 stray",
        "create --org org_1 --colour blue",
        "list",
        "list --org org_1 --claim a=b",
        "revoke",
        "revoke a b",
        "rotate",
        "rotate not-an-id",
    ] {
        assert!(parse(args(line)).is_err(), "{line:?} should be refused");
    }
    assert_eq!(parse(args("--help")), Ok(Command::Help));
    assert_eq!(
        parse(args("list --org org_1 --user usr_1")),
        Ok(Command::List {
            org: "org_1".into(),
            user: Some("usr_1".into())
        })
    );
    assert_eq!(
        parse(args("rotate apit_123")),
        Ok(Command::Rotate {
            token_id: "apit_123".into()
        })
    );
    assert_eq!(
        parse(args("revoke apit_123")),
        Ok(Command::Revoke {
            token: "apit_123".into()
        })
    );
}

async fn run(binary: &PathBuf, fake: Option<&FakeScalekit>, line: &str) -> Output {
    let mut command = std::process::Command::new(binary);
    command.args(args(line));
    command.env_remove("SCALEKIT_ENVIRONMENT_URL");
    command.env_remove("SCALEKIT_CLIENT_ID");
    command.env_remove("SCALEKIT_CLIENT_SECRET");
    command.env_remove("REDIS_URL");
    if let Some(fake) = fake {
        command
            .env("SCALEKIT_ENVIRONMENT_URL", fake.url())
            .env("SCALEKIT_CLIENT_ID", fake.client_id())
            .env("SCALEKIT_CLIENT_SECRET", fake.client_secret());
    }
    // Blocking wait off the runtime's worker, so the fake keeps serving.
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The value after `label: ` on its line.
fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{label}: ")))
        .unwrap_or_else(|| panic!("no {label} in {text}"))
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_creates_lists_rotates_and_revokes() {
    let Some(binary) = support::example_binary("keys") else {
        eprintln!("skipped: the keys example is not built (run the whole `cargo test`)");
        return;
    };
    let fake = FakeScalekit::start().await;

    let output = run(
        &binary,
        Some(&fake),
        "create --org org_1 --user usr_1 --claim env=prod --ttl 30d --description ci",
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    let key = field(&text, "key");
    let token_id = field(&text, "token_id");
    let info = fake.tokens().validate_token(&key).unwrap();
    assert_eq!(info.token_id(), token_id);
    assert_eq!(info.claim("env"), Some("prod"));
    assert!(info.expiry().unwrap() > OffsetDateTime::now_utc() + time::Duration::days(29));

    let output = run(&binary, Some(&fake), "list --org org_1").await;
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    assert!(
        text.contains(&token_id) && text.contains("env=prod"),
        "{text}"
    );
    assert!(!text.contains(&key), "list must never print keys");

    let output = run(&binary, Some(&fake), &format!("rotate {token_id}")).await;
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    let new_key = field(&text, "key");
    let new_id = field(&text, "token_id");
    assert_ne!(new_id, token_id);
    assert_eq!(
        fake.tokens().validate_token(&key),
        Err(KeyStoreError::NotFound)
    );
    let new_info = fake.tokens().validate_token(&new_key).unwrap();
    assert_eq!(new_info.user_id(), Some("usr_1"));
    assert_eq!(new_info.claim("env"), Some("prod"));
    assert_eq!(new_info.description(), Some("ci"));
    assert_eq!(new_info.expiry(), info.expiry());

    let output = run(&binary, Some(&fake), &format!("revoke {new_key}")).await;
    assert!(output.status.success(), "{output:?}");
    assert!(
        !stdout(&output).contains(&new_key),
        "revoke must not echo the key"
    );
    assert_eq!(
        fake.tokens().validate_token(&new_key),
        Err(KeyStoreError::NotFound)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_fails_cleanly() {
    let Some(binary) = support::example_binary("keys") else {
        eprintln!("skipped: the keys example is not built (run the whole `cargo test`)");
        return;
    };
    let fake = FakeScalekit::start().await;
    let other = fake.tokens().create(CreateToken::new("org_1")).unwrap();

    let usage = run(&binary, Some(&fake), "create").await;
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("usage:"));

    let unconfigured = run(&binary, None, "list --org org_1").await;
    assert_eq!(unconfigured.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unconfigured.stderr).contains("SCALEKIT_ENVIRONMENT_URL"));

    let unknown = run(&binary, Some(&fake), "rotate apit_99999999999999999").await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not an active key"));
    // Nothing was minted or revoked.
    assert_eq!(fake.tokens().len(), 1);
    assert!(fake.tokens().validate_token(&other.token_id).is_ok());
}

#[test]
fn parses_doctor() {
    assert_eq!(
        parse(args("doctor --org org_1")),
        Ok(Command::Doctor {
            org: "org_1".into()
        })
    );
    assert!(parse(args("doctor")).is_err());
    assert!(parse(args("doctor --user usr_1")).is_err());
}

/// `keys doctor` and `keys list` over TLS, trusting the fake's CA through `SCALEKIT_CA_FILE`,
/// with `SCALEKIT_TRANSPORT=grpc`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_honours_the_transport_and_ca_file_variables() {
    let Some(binary) = support::example_binary("keys") else {
        eprintln!("skipped: the keys example is not built (run the whole `cargo test`)");
        return;
    };
    let fake = FakeScalekit::builder().tls(true).start().await.unwrap();
    let ca = std::env::temp_dir().join(format!("keys-cli-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, fake.ca_pem().unwrap()).unwrap();
    let run_with = |line: &str, ca_file: Option<&std::path::Path>| {
        let mut command = std::process::Command::new(&binary);
        command
            .args(args(line))
            .env_remove("REDIS_URL")
            .env_remove("SCALEKIT_CA_FILE")
            .env("SCALEKIT_ENVIRONMENT_URL", fake.url())
            .env("SCALEKIT_CLIENT_ID", fake.client_id())
            .env("SCALEKIT_CLIENT_SECRET", fake.client_secret())
            .env("SCALEKIT_TRANSPORT", "grpc");
        if let Some(path) = ca_file {
            command.env("SCALEKIT_CA_FILE", path);
        }
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };

    let output = run_with("doctor --org org_doc", Some(&ca)).await.unwrap();
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("rest: works") && text.contains("grpc: works"),
        "{text}"
    );
    assert!(text.contains("working: rest, grpc"), "{text}");

    fake.tokens().create(CreateToken::new("org_cli")).unwrap();
    let before = fake.count(axum_api_key::testing::Op::List);
    let output = run_with("list --org org_cli", Some(&ca)).await.unwrap();
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("1 active key(s)"),
        "{}",
        stdout(&output)
    );
    assert!(fake.count(axum_api_key::testing::Op::List) > before);

    // Without the CA, TLS fails on both transports: doctor says so and exits 1.
    let output = run_with("doctor --org org_doc", None).await.unwrap();
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("rest: FAILS") && text.contains("grpc: FAILS"),
        "{text}"
    );
    std::fs::remove_file(&ca).ok();
}
