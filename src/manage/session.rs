//! Signed cookie sessions (HMAC-SHA256): a ready-made [`ManagerSource`] for demos, tests and
//! apps without their own session.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::HeaderValue;
use http::header::COOKIE;
use http::request::Parts;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::OffsetDateTime;

use super::manager::{Manager, ManagerRejection, ManagerSource};

type HmacSha256 = Hmac<Sha256>;

/// Shortest secret accepted.
pub const MIN_SECRET_LEN: usize = 32;
/// Longest cookie value read (anything longer is ignored unread).
const MAX_COOKIE_LEN: usize = 2048;
/// The session lifetime unless [`SessionManagers::ttl`] says otherwise.
const DEFAULT_TTL: Duration = Duration::from_secs(8 * 3600);
/// The longest session lifetime accepted.
const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The secret given to [`SessionManagers::new`] is shorter than [`MIN_SECRET_LEN`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the session secret must be at least {MIN_SECRET_LEN} bytes")]
pub struct SecretTooShort;

/// Who a session is for: what [`SessionManagers::sign_in`] puts in the cookie.
///
/// ```
/// use axum_api_key::manage::Session;
///
/// let admin = Session::admin("org_demo", "demo admin");
/// let user = Session::user("org_demo", "usr_demo", "demo user");
/// # let _ = (admin, user);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    manager: Manager,
}

impl Session {
    /// An administrator of `organization_id`'s keys.
    pub fn admin(organization_id: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            manager: Manager::admin(organization_id, subject),
        }
    }
    /// A user who manages their own keys.
    pub fn user(
        organization_id: impl Into<String>,
        user_id: impl Into<String>,
        subject: impl Into<String>,
    ) -> Self {
        Self {
            manager: Manager::user(organization_id, user_id, subject),
        }
    }
}

/// What the cookie carries (signed, not encrypted: nothing secret but the CSRF token, which
/// the cookie being `HttpOnly` keeps from scripts).
#[derive(Serialize, Deserialize)]
struct Claims {
    o: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    a: bool,
    s: String,
    c: String,
    e: i64,
}

/// Sessions in a signed cookie: `HttpOnly`, `SameSite=Lax`, `Secure` unless turned off for
/// plain-HTTP development, with an expiry inside the signed payload. Requests through them
/// are *ambient* (the browser sends the cookie by itself), so unsafe requests pass the CSRF
/// checks first.
///
/// ```
/// use axum_api_key::manage::{Session, SessionManagers};
///
/// let sessions = SessionManagers::new(b"a secret of at least thirty-two bytes!!")
///     .unwrap()
///     .secure(false); // plain-HTTP development only
/// let set_cookie = sessions.sign_in(Session::admin("org_demo", "demo admin"));
/// assert!(set_cookie.to_str().unwrap().contains("HttpOnly"));
/// ```
#[derive(Clone)]
pub struct SessionManagers {
    /// The keyed MAC, cloned for each use.
    mac: HmacSha256,
    cookie_name: String,
    ttl: Duration,
    secure: bool,
}

impl fmt::Debug for SessionManagers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManagers")
            .field("cookie_name", &self.cookie_name)
            .field("ttl", &self.ttl)
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

impl SessionManagers {
    /// Sessions signed with `secret` (at least 32 bytes; keep it out of the code).
    pub fn new(secret: &[u8]) -> Result<Self, SecretTooShort> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(SecretTooShort);
        }
        let mac = HmacSha256::new_from_slice(secret).map_err(|_| SecretTooShort)?;
        Ok(Self {
            mac,
            cookie_name: "key_session".to_owned(),
            ttl: DEFAULT_TTL,
            secure: true,
        })
    }

    /// The cookie's name (default `key_session`). Names that are not a cookie token are
    /// ignored.
    #[must_use]
    pub fn cookie_name(mut self, name: &str) -> Self {
        if !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            self.cookie_name = name.to_owned();
        }
        self
    }

    /// How long a session lasts (default 8 hours, at most 30 days, at least 1 second).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.clamp(Duration::from_secs(1), MAX_TTL);
        self
    }

    /// Whether the cookie is `Secure` (default `true`). Turn off only for plain-HTTP
    /// development on loopback.
    #[must_use]
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// The `Set-Cookie` value that signs `session` in (with a fresh CSRF token).
    pub fn sign_in(&self, session: Session) -> HeaderValue {
        let mut nonce = [0u8; 24];
        rand::fill(&mut nonce);
        let expires = OffsetDateTime::now_utc() + self.ttl;
        let manager = session.manager;
        let claims = Claims {
            o: manager.organization_id().to_owned(),
            u: manager.user_id().map(str::to_owned),
            a: manager.is_admin(),
            s: manager.actor().to_owned(),
            c: URL_SAFE_NO_PAD.encode(nonce),
            e: expires.unix_timestamp(),
        };
        // Serialising a struct of strings, a bool and an integer cannot fail.
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let signature = URL_SAFE_NO_PAD.encode(self.sign(payload.as_bytes()));
        self.cookie(&format!("{payload}.{signature}"), self.ttl.as_secs())
    }

    /// The `Set-Cookie` value that signs out (expires the cookie).
    pub fn sign_out(&self) -> HeaderValue {
        self.cookie("", 0)
    }

    fn cookie(&self, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie = format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
            self.cookie_name
        );
        // Name and value are token / base64url characters only.
        HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    fn sign(&self, payload: &[u8]) -> Vec<u8> {
        let mut mac = self.mac();
        mac.update(payload);
        mac.finalize().into_bytes().to_vec()
    }

    fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }

    /// The manager of a cookie value, if its signature holds and it has not expired.
    fn verify(&self, value: &str) -> Option<Manager> {
        if value.len() > MAX_COOKIE_LEN {
            return None;
        }
        let (payload, signature) = value.split_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature).ok()?; // constant time
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let expires = OffsetDateTime::from_unix_timestamp(claims.e).ok()?;
        if expires <= OffsetDateTime::now_utc() {
            return None;
        }
        Some(Manager::new(claims.o, claims.u, claims.a, claims.s).with_csrf_token(claims.c))
    }

    fn cookie_value<'a>(&self, parts: &'a Parts) -> Option<&'a str> {
        parts
            .headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|header| header.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.cookie_name)
            .map(|(_, value)| value)
    }
}

impl ManagerSource for SessionManagers {
    async fn manager(&self, parts: &Parts) -> Result<Manager, ManagerRejection> {
        // A missing, tampered or expired cookie is no session: the next source is tried.
        self.cookie_value(parts)
            .and_then(|value| self.verify(value))
            .ok_or(ManagerRejection::NoCredentials)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(cookie: &str) -> Parts {
        let (parts, ()) = http::Request::builder()
            .header(COOKIE, cookie)
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    fn value(set_cookie: &HeaderValue) -> String {
        let s = set_cookie.to_str().unwrap();
        s.split(';').next().unwrap().to_owned()
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(SessionManagers::new(b"short").unwrap_err(), SecretTooShort);
    }

    #[tokio::test]
    async fn a_signed_cookie_round_trips_and_a_tampered_one_does_not() {
        let sessions = SessionManagers::new(SECRET).unwrap();
        let cookie = value(&sessions.sign_in(Session::user("org_1", "usr_1", "alice")));
        let manager = sessions.manager(&parts(&cookie)).await.unwrap();
        assert_eq!(manager.user_id(), Some("usr_1"));
        assert!(!manager.is_admin());
        assert!(manager.csrf_token().is_some());

        // Flip the admin bit in the payload: the signature no longer holds.
        let (name, rest) = cookie.split_once('=').unwrap();
        let (payload, signature) = rest.split_once('.').unwrap();
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        let forged = URL_SAFE_NO_PAD.encode(json.replace("\"a\":false", "\"a\":true"));
        let forged = format!("{name}={forged}.{signature}");
        assert!(matches!(
            sessions.manager(&parts(&forged)).await,
            Err(ManagerRejection::NoCredentials)
        ));

        // Another secret does not accept it either.
        let other = SessionManagers::new(&[7u8; 32]).unwrap();
        assert!(other.manager(&parts(&cookie)).await.is_err());
    }

    #[tokio::test]
    async fn expired_sessions_are_no_sessions() {
        let sessions = SessionManagers::new(SECRET)
            .unwrap()
            .ttl(Duration::from_secs(1));
        let cookie = value(&sessions.sign_in(Session::admin("org_1", "a")));
        assert!(sessions.manager(&parts(&cookie)).await.is_ok());
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert!(sessions.manager(&parts(&cookie)).await.is_err());
    }
}
