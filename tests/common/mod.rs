//! Helpers shared by the `scalekit_*` tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::{Arc, Mutex};

use axum_api_key::keys::{KeyEvent, KeyEventListener};

/// A well-formed (strict format) key that no store has minted.
pub fn unknown_key() -> String {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..77)
        .map(|_| char::from(BASE62[rand::random_range(0..BASE62.len())]))
        .collect()
}

/// Records every event it hears.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<KeyEvent>>);

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn events(&self) -> Vec<KeyEvent> {
        self.0.lock().unwrap().clone()
    }
}

impl KeyEventListener for Recorder {
    fn on_event(&self, event: &KeyEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

/// Asserts that neither the Display nor the Debug of `value` contains `secret`.
pub fn assert_hides(value: &(impl std::fmt::Display + std::fmt::Debug), secret: &str) {
    assert!(
        !format!("{value}").contains(secret),
        "Display leaks the key"
    );
    assert!(
        !format!("{value:?}").contains(secret),
        "Debug leaks the key"
    );
}
