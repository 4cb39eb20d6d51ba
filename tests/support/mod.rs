//! Helpers shared by the integration tests: a real server on 127.0.0.1 and a counting validator.
#![allow(dead_code)]

pub mod log_capture;
pub mod redis_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum_api_key::request::KeyFormat;
use axum_api_key::{ApiKey, Authenticated, ValidateError, Validator};

/// Serves `app` on an ephemeral loopback port; returns its base URL. The server lives as long
/// as the test's runtime.
pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    format!("http://{addr}")
}

/// Wraps a validator and counts how many keys reach it.
#[derive(Clone)]
pub struct Counting<V> {
    pub inner: V,
    pub calls: Arc<AtomicUsize>,
}

impl<V> Counting<V> {
    pub fn new(inner: V) -> Self {
        Self {
            inner,
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl<V: Validator> Validator for Counting<V> {
    async fn validate(&self, key: &ApiKey) -> Result<Authenticated, ValidateError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.validate(key).await
    }

    /// A wrapper keeps the inner validator's key format (and its local refusals).
    fn key_format(&self) -> KeyFormat {
        self.inner.key_format()
    }
}

/// An example binary (`keys`, `quickstart`...) that `cargo test` built beside the test
/// binaries, or `None` when it was not built (`cargo test --test X` alone builds no examples).
pub fn example_binary(name: &str) -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?; // target/<profile>/deps/<test> -> target/<profile>
    let binary = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    binary.is_file().then_some(binary)
}

/// A format-valid key (77 Base62 characters) that no store knows.
pub fn unknown_key(seed: u64) -> String {
    let digits = format!("{seed:020}");
    format!("{}{}", "Zz9".repeat(19), digits)
}

/// An HTTP client whose connections come from `ip` (any 127.0.0.0/8 address reaches a server
/// on 127.0.0.1): a second client address for the per-client throttle.
pub fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .unwrap()
}
