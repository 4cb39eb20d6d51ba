//! The pluggable part: anything that can tell whether an API key is valid.
//!
//! The contract is [`Validator`](crate::Validator) (at the crate root, with
//! [`ValidateError`](crate::ValidateError) and [`validator_fn`](crate::validator_fn)); this
//! module holds what you need less often: the reasons a key is invalid, the closure and boxed
//! adapters, and the builder of [`TokenInfo`](crate::TokenInfo).

pub(crate) mod boxed;
pub(crate) mod contract;
pub(crate) mod function;

pub use crate::token_info::TokenInfoBuilder;
pub use boxed::{BoxValidator, DynValidator};
pub use contract::{FingerprintLookup, InvalidReason};
pub use function::FnValidator;
