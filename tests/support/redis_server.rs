//! A `redis-server` of a test's own, on a free loopback port, killed on drop.
//!
//! Without the binary the Redis tests FAIL (a test that cannot fail proves nothing): CI and
//! `scripts/test.sh` install it. Set `AXUM_API_KEY_SKIP_REDIS_TESTS=1` to skip them
//! explicitly on a machine without it; CI never sets it.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The variable that, set to `1`, turns "no redis-server" into a skip instead of a failure.
pub const SKIP_VAR: &str = "AXUM_API_KEY_SKIP_REDIS_TESTS";

/// How long `redis-server` may take to come up on a loaded machine.
const START: Duration = Duration::from_secs(15);

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    /// Starts a server. `None` only when `redis-server` is missing and the skip variable is
    /// set; without the variable a missing binary panics with a message that says what to do.
    pub fn start() -> Option<Self> {
        if !Self::installed() {
            if skip_requested() {
                eprintln!("SKIPPED: redis-server not found and {SKIP_VAR}=1");
                return None;
            }
            panic!(
                "redis-server not found on PATH: the Redis tests need it (`bash scripts/test.sh` \
                 or `apt-get install redis-server` installs it). To skip these tests on purpose, \
                 set {SKIP_VAR}=1."
            );
        }
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self { child: None, port };
        server.restart();
        Some(server)
    }

    fn installed() -> bool {
        Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Starts the server (again) on its port and waits until it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + START;
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `true` when the skip variable is set to `1` (or `true`).
pub fn skip_requested() -> bool {
    std::env::var(SKIP_VAR).is_ok_and(|value| matches!(value.trim(), "1" | "true"))
}
