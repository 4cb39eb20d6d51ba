//! Argument parsing for the `keys` example: no I/O, so tests can include this file.
//!
//! Hand-written rather than clap: four subcommands and a handful of flags do not justify a
//! dependency (and its build time) for every user of the crate's examples.

use std::collections::BTreeMap;
use std::time::Duration;

use axum_api_key::keys::CreateToken;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The help text.
pub const USAGE: &str = "\
usage: keys <command> [options]

commands:
  create --org ORG [--user USR] [--claim k=v]... [--expires RFC3339 | --ttl 30d|12h|90m|45s]
         [--description TEXT]      mint a key; prints it ONCE, with its token id
  list --org ORG [--user USR]       list active keys (ids, suffixes, claims, expiry; never keys)
  revoke TOKEN_OR_ID                revoke a key, by key or token id (idempotent)
  rotate TOKEN_ID                   mint a replacement with the same scope, claims, description
                                    and expiry, check it validates, then revoke the old key
  doctor --org ORG                  check the setup over REST and gRPC: access token, create a
                                    10-minute key, validate, revoke, refused; per step

environment: SCALEKIT_ENVIRONMENT_URL, SCALEKIT_CLIENT_ID, SCALEKIT_CLIENT_SECRET;
             SCALEKIT_TRANSPORT=rest|grpc, SCALEKIT_CA_FILE=<PEM of extra roots>;
             REDIS_URL [REDIS_CHANNEL]: revoke and rotate announce the revocation to every
             instance over Redis (feature redis)";

/// When a new key expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// At this instant.
    At(OffsetDateTime),
    /// This long after creation.
    In(Duration),
}

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `create`.
    Create {
        /// `--org`.
        org: String,
        /// `--user`.
        user: Option<String>,
        /// `--claim k=v`, in order.
        claims: BTreeMap<String, String>,
        /// `--expires` or `--ttl`.
        expiry: Option<Expiry>,
        /// `--description`.
        description: Option<String>,
    },
    /// `list`.
    List {
        /// `--org`.
        org: String,
        /// `--user`.
        user: Option<String>,
    },
    /// `revoke`.
    Revoke {
        /// A key or a token id.
        token: String,
    },
    /// `rotate`.
    Rotate {
        /// The old key's token id.
        token_id: String,
    },
    /// `doctor`: checks the credentials over both transports.
    Doctor {
        /// `--org`: where the short-lived test key is created.
        org: String,
    },
    /// `help`, `-h`, `--help`.
    Help,
}

impl Command {
    /// The create request of a `Create` command, with `--ttl` resolved against `now`.
    pub fn create_request(&self, now: OffsetDateTime) -> Option<CreateToken> {
        let Command::Create {
            org,
            user,
            claims,
            expiry,
            description,
        } = self
        else {
            return None;
        };
        let mut request = CreateToken::new(org.clone());
        request.user_id = user.clone();
        request.custom_claims = claims.clone();
        request.description = description.clone();
        request.expiry = match expiry {
            None => None,
            Some(Expiry::At(at)) => Some(*at),
            Some(Expiry::In(ttl)) => Some(now + *ttl),
        };
        Some(request)
    }
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut args = args.into_iter();
    let command = args.next().ok_or("missing command")?;
    let rest: Vec<String> = args.collect();
    match command.as_str() {
        "help" | "-h" | "--help" => Ok(Command::Help),
        "create" => parse_create(&rest),
        "list" => {
            let mut org = None;
            let mut user = None;
            let mut flags = Flags::new(&rest);
            while let Some((flag, value)) = flags.next()? {
                match flag {
                    "--org" => org = Some(value),
                    "--user" => user = Some(value),
                    other => return Err(format!("unknown option for list: {other}")),
                }
            }
            Ok(Command::List {
                org: org.ok_or("list needs --org ORG")?,
                user,
            })
        }
        "revoke" => match rest.as_slice() {
            [token] if !token.starts_with('-') => Ok(Command::Revoke {
                token: token.clone(),
            }),
            _ => Err("revoke takes exactly one key or token id".into()),
        },
        "rotate" => match rest.as_slice() {
            [id] if id.starts_with("apit_") => Ok(Command::Rotate {
                token_id: id.clone(),
            }),
            [_] => Err("rotate takes a token id (apit_...), not a key".into()),
            _ => Err("rotate takes exactly one token id".into()),
        },
        "doctor" => match rest.as_slice() {
            [flag, org] if flag == "--org" && !org.is_empty() => {
                Ok(Command::Doctor { org: org.clone() })
            }
            _ => Err("doctor takes --org <organization id>".into()),
        },
        other => Err(format!("unknown command: {other}")),
    }
}

fn parse_create(rest: &[String]) -> Result<Command, String> {
    let mut org = None;
    let mut user = None;
    let mut claims = BTreeMap::new();
    let mut expiry = None;
    let mut description = None;
    let mut flags = Flags::new(rest);
    while let Some((flag, value)) = flags.next()? {
        match flag {
            "--org" => org = Some(value),
            "--user" => user = Some(value),
            "--description" => description = Some(value),
            "--claim" => {
                let (name, claim) = value
                    .split_once('=')
                    .filter(|(name, claim)| !name.is_empty() && !claim.is_empty())
                    .ok_or_else(|| format!("--claim wants name=value, got {value:?}"))?;
                if claims.insert(name.to_owned(), claim.to_owned()).is_some() {
                    return Err(format!("claim {name:?} given twice"));
                }
            }
            "--expires" | "--ttl" if expiry.is_some() => {
                return Err("give one of --expires and --ttl, once".into());
            }
            "--expires" => {
                let at = OffsetDateTime::parse(&value, &Rfc3339)
                    .map_err(|e| format!("--expires wants RFC 3339 (2026-12-31T23:59:59Z): {e}"))?;
                expiry = Some(Expiry::At(at));
            }
            "--ttl" => expiry = Some(Expiry::In(parse_ttl(&value)?)),
            other => return Err(format!("unknown option for create: {other}")),
        }
    }
    Ok(Command::Create {
        org: org.ok_or("create needs --org ORG")?,
        user,
        claims,
        expiry,
        description,
    })
}

/// `30d`, `12h`, `90m`, `45s` (a positive whole number and one unit).
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let bad = || format!("--ttl wants a number and a unit (30d, 12h, 90m, 45s), got {text:?}");
    let unit = text.chars().last().ok_or_else(bad)?;
    let number: u64 = text[..text.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| bad())?;
    let seconds = match unit {
        'd' => number.checked_mul(86_400),
        'h' => number.checked_mul(3_600),
        'm' => number.checked_mul(60),
        's' => Some(number),
        _ => None,
    }
    .filter(|s| *s > 0 && *s <= 100 * 365 * 86_400)
    .ok_or_else(bad)?;
    Ok(Duration::from_secs(seconds))
}

/// `--flag value` pairs; a flag without its value is an error.
struct Flags<'a> {
    args: std::slice::Iter<'a, String>,
}

impl<'a> Flags<'a> {
    fn new(args: &'a [String]) -> Self {
        Self { args: args.iter() }
    }

    fn next(&mut self) -> Result<Option<(&'a str, String)>, String> {
        let Some(flag) = self.args.next() else {
            return Ok(None);
        };
        if !flag.starts_with("--") {
            return Err(format!("unexpected argument {flag:?}"));
        }
        let value = self
            .args
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        Ok(Some((flag.as_str(), value.clone())))
    }
}
