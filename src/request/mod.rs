//! The request path, in the order a request travels:
//!
//! 1. [`bearer`](bearer_token): `Authorization: Bearer <key>`, parsed strictly (RFC 6750);
//! 2. `key`: local checks against the validator's [`KeyFormat`], then an [`ApiKey`]
//!    (zeroized, redacted, with a keyed [`Fingerprint`]);
//! 3. `authenticator`: the one pipeline (parse, check, validate, verdict) behind the service,
//!    [`ApiKeyLayer::authenticate`](crate::ApiKeyLayer::authenticate) and
//!    [`ApiKeyLayer::validate_key`](crate::ApiKeyLayer::validate_key);
//! 4. `layer`: [`ApiKeyLayer`](crate::ApiKeyLayer), [`ApiKeyService`] and its
//!    [`ResponseFuture`];
//! 5. `state`: what the layer leaves in the request for what runs inside it;
//! 6. `extract` and `require`: the extractors ([`OrgScope`](crate::OrgScope),
//!    [`UserScope`](crate::UserScope), [`Claims`](crate::Claims), ...) and route-group guards
//!    ([`RequireLayer`](crate::RequireLayer), [`Require`]);
//! 7. `reject`: every failure as an RFC 6750 / RFC 9110 answer ([`RejectionKind`]).
//!
//! The names a handler author needs are at the crate root; this module holds the rest.

mod authenticator;
mod bearer;
pub(crate) mod charset;
pub(crate) mod extract;
pub(crate) mod key;
pub(crate) mod layer;
pub(crate) mod reject;
pub(crate) mod require;
pub(crate) mod state;

/// Test and fuzzing plumbing, not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use bearer::is_b64token;
pub use bearer::{BearerError, bearer_token, parse_credentials};
pub use key::{Fingerprint, KeyFormat, KeyRejection};
pub use layer::{ApiKeyService, ResponseFuture};
pub use reject::{DEFAULT_REALM, RejectionKind};
pub use require::Require;

pub(crate) use key::ApiKey;
