//! Whose bucket a request spends from, and the identity of that bucket in the local map and in
//! Redis.
//!
//! Two rules make a bucket's identity:
//! - **The owner's kind is part of it**, and a user's bucket is per organization: no user id can
//!   name a key's bucket, and keys minted in one organization for some user id never spend the
//!   quota of that user's keys in another organization.
//! - **The policy is part of it**: keys that share an owner (a user's keys, an organization's)
//!   but carry different policies (their own `rate_limit` claims) spend one bucket per policy.
//!   A bucket is never replaced by a fresh one because a request came under another policy, so
//!   alternating between two such keys cannot refill anything; the most an owner gets is the sum
//!   of the distinct policies its keys carry, which whoever mints the keys decides.

use super::RatePolicy;
use super::cells::Lookup;
#[cfg(feature = "redis")]
use std::fmt::Write as _;

/// Whose bucket: a key (by its `token_id`), a user within an organization, or an organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Owner<S> {
    Key(S),
    User { organization: S, user: S },
    Organization(S),
}

impl Owner<&str> {
    /// The owned form, for the map.
    fn to_owned_owner(self) -> Owner<Box<str>> {
        match self {
            Self::Key(id) => Owner::Key(id.into()),
            Self::User { organization, user } => Owner::User {
                organization: organization.into(),
                user: user.into(),
            },
            Self::Organization(id) => Owner::Organization(id.into()),
        }
    }

    /// Appends the owner to a Redis key, unambiguously: a kind letter, and the organization's
    /// length before a user's pair (ids may contain `:`).
    #[cfg(feature = "redis")]
    pub(crate) fn write_redis(self, key: &mut String) {
        // Writing to a `String` cannot fail.
        let _ = match self {
            Self::Key(id) => write!(key, "k:{id}"),
            Self::User { organization, user } => {
                write!(key, "u:{}:{organization}:{user}", organization.len())
            }
            Self::Organization(id) => write!(key, "o:{id}"),
        };
    }
}

impl Owner<Box<str>> {
    /// The borrowed form, to compare with a request's.
    fn borrowed(&self) -> Owner<&str> {
        match self {
            Self::Key(id) => Owner::Key(id),
            Self::User { organization, user } => Owner::User { organization, user },
            Self::Organization(id) => Owner::Organization(id),
        }
    }
}

// The two forms of a bucket declare the same fields in the same order, so their derived
// hashes agree (`&str` and `Box<str>` hash as `str`), as the map's lookup of one by the other
// requires.

/// A bucket as the map stores it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct BucketKey {
    owner: Owner<Box<str>>,
    policy: RatePolicy,
}

/// A bucket as a request names it, borrowing the ids from its `TokenInfo`: a hit allocates
/// nothing.
#[derive(Clone, Copy, Debug, Hash)]
pub(crate) struct Bucket<'a> {
    pub(crate) owner: Owner<&'a str>,
    pub(crate) policy: RatePolicy,
}

impl papaya::Equivalent<BucketKey> for Bucket<'_> {
    fn equivalent(&self, key: &BucketKey) -> bool {
        self.policy == key.policy && self.owner == key.owner.borrowed()
    }
}

impl Lookup<BucketKey> for Bucket<'_> {
    fn to_key(&self) -> BucketKey {
        BucketKey {
            owner: self.owner.to_owned_owner(),
            policy: self.policy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    fn policy(text: &str) -> RatePolicy {
        text.parse().unwrap()
    }

    #[test]
    fn a_bucket_finds_its_stored_form_and_no_other() {
        let hasher = foldhash::fast::RandomState::default();
        let buckets = [
            Bucket {
                owner: Owner::Key("id_1"),
                policy: policy("5/min"),
            },
            Bucket {
                owner: Owner::Key("id_1"),
                policy: policy("6/min"),
            },
            Bucket {
                owner: Owner::Organization("id_1"),
                policy: policy("5/min"),
            },
            Bucket {
                owner: Owner::User {
                    organization: "org_1",
                    user: "id_1",
                },
                policy: policy("5/min"),
            },
            Bucket {
                owner: Owner::User {
                    organization: "org_2",
                    user: "id_1",
                },
                policy: policy("5/min"),
            },
        ];
        for (i, bucket) in buckets.iter().enumerate() {
            let stored = bucket.to_key();
            assert_eq!(hasher.hash_one(bucket), hasher.hash_one(&stored));
            for (j, other) in buckets.iter().enumerate() {
                assert_eq!(
                    papaya::Equivalent::equivalent(other, &stored),
                    i == j,
                    "{other:?} against {stored:?}"
                );
            }
        }
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_ids_cannot_collide_across_kinds_or_separators() {
        let id = |owner: Owner<&str>| {
            let mut key = String::new();
            owner.write_redis(&mut key);
            key
        };
        assert_eq!(id(Owner::Key("apit_1")), "k:apit_1");
        assert_eq!(id(Owner::Organization("org_1")), "o:org_1");
        assert_eq!(
            id(Owner::User {
                organization: "org_1",
                user: "usr_1"
            }),
            "u:5:org_1:usr_1"
        );
        // A `:` inside an id moves the split, which the length prefix pins down.
        assert_ne!(
            id(Owner::User {
                organization: "a:b",
                user: "c"
            }),
            id(Owner::User {
                organization: "a",
                user: "b:c"
            })
        );
        assert_ne!(id(Owner::Key("x")), id(Owner::Organization("x")));
    }
}
