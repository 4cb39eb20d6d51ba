//! [`RatePolicy`]: "so many requests per window", parsed strictly from `100/min`, `10/s`,
//! `5000/h`.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

/// The largest count a policy may allow in one window.
pub const MAX_LIMIT: u32 = 1_000_000;

/// The longest text [`RatePolicy::from_str`] reads; longer input is refused unread.
const MAX_INPUT_LEN: usize = 32;

/// A rate policy: at most `limit` requests per `window`, enforced as GCRA (a token bucket that
/// holds `limit` tokens and refills one every `window / limit`).
///
/// Parsed from `<count>/<unit>`, where the unit is `s` (`sec`, `second`), `min` (`m`, `minute`),
/// `h` (`hour`) or `d` (`day`), and the count is 1 to [`MAX_LIMIT`]. Nothing else is accepted:
/// no spaces inside, no sign, no fraction.
///
/// ```
/// use std::time::Duration;
/// use axum_api_key::ratelimit::RatePolicy;
///
/// let policy: RatePolicy = "100/min".parse().unwrap();
/// assert_eq!(policy.limit(), 100);
/// assert_eq!(policy.window(), Duration::from_secs(60));
/// assert_eq!(policy.to_string(), "100/min");
/// assert!("100 per minute".parse::<RatePolicy>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RatePolicy {
    limit: NonZeroU32,
    window: Window,
}

/// The windows a policy can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Window {
    Second,
    Minute,
    Hour,
    Day,
}

impl Window {
    fn seconds(self) -> u64 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Self::Second => "s",
            Self::Minute => "min",
            Self::Hour => "h",
            Self::Day => "d",
        }
    }
}

impl RatePolicy {
    fn new(limit: u32, window: Window) -> Result<Self, PolicyError> {
        match NonZeroU32::new(limit) {
            Some(limit) if limit.get() <= MAX_LIMIT => Ok(Self { limit, window }),
            _ => Err(PolicyError::Count),
        }
    }

    /// 10 per minute, as a constant.
    pub(crate) const TEN_PER_MINUTE: Self = Self {
        limit: NonZeroU32::MIN.saturating_add(9),
        window: Window::Minute,
    };

    /// `limit` requests per second (1 to [`MAX_LIMIT`]).
    pub fn per_second(limit: u32) -> Result<Self, PolicyError> {
        Self::new(limit, Window::Second)
    }

    /// `limit` requests per minute (1 to [`MAX_LIMIT`]).
    pub fn per_minute(limit: u32) -> Result<Self, PolicyError> {
        Self::new(limit, Window::Minute)
    }

    /// `limit` requests per hour (1 to [`MAX_LIMIT`]).
    pub fn per_hour(limit: u32) -> Result<Self, PolicyError> {
        Self::new(limit, Window::Hour)
    }

    /// `limit` requests per day (1 to [`MAX_LIMIT`]).
    pub fn per_day(limit: u32) -> Result<Self, PolicyError> {
        Self::new(limit, Window::Day)
    }

    /// How many requests one window allows (also the burst).
    pub fn limit(&self) -> u32 {
        self.limit.get()
    }

    /// The window.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window.seconds())
    }

    /// The time one request's token takes to come back: `window / limit`.
    pub fn interval(&self) -> Duration {
        self.window() / self.limit.get()
    }

    /// The same policy as a `governor` quota.
    pub(crate) fn quota(&self) -> governor::Quota {
        // `interval` is at least 1 s / MAX_LIMIT = 1 µs, never zero; the fallback is unreachable.
        governor::Quota::with_period(self.interval())
            .unwrap_or_else(|| governor::Quota::per_second(self.limit))
            .allow_burst(self.limit)
    }
}

impl fmt::Display for RatePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.limit, self.window.unit())
    }
}

impl FromStr for RatePolicy {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_INPUT_LEN {
            return Err(PolicyError::TooLong);
        }
        let (count, unit) = text.split_once('/').ok_or(PolicyError::Shape)?;
        if count.is_empty() || count.len() > 7 || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PolicyError::Count);
        }
        let limit: u32 = count.parse().map_err(|_| PolicyError::Count)?;
        let window = match unit {
            "s" | "sec" | "second" => Window::Second,
            "m" | "min" | "minute" => Window::Minute,
            "h" | "hour" => Window::Hour,
            "d" | "day" => Window::Day,
            _ => return Err(PolicyError::Unit),
        };
        Self::new(limit, window)
    }
}

/// Why a text is not a [`RatePolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not `<count>/<unit>`.
    #[error("a rate policy reads `<count>/<unit>`, e.g. `100/min`")]
    Shape,
    /// The count is not a whole number from 1 to [`MAX_LIMIT`].
    #[error("the count of a rate policy is a whole number from 1 to 1000000")]
    Count,
    /// The unit is not one of `s`, `min`, `h`, `d` (or their long forms).
    #[error(
        "the unit of a rate policy is one of s, min, h, d (or sec, second, m, minute, hour, day)"
    )]
    Unit,
    /// More than 32 bytes.
    #[error("a rate policy is at most 32 bytes long")]
    TooLong,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        for (text, limit, seconds) in [
            ("10/s", 10, 1),
            ("10/sec", 10, 1),
            ("100/min", 100, 60),
            ("100/m", 100, 60),
            ("5000/h", 5000, 3600),
            ("1/day", 1, 86_400),
            ("1000000/s", MAX_LIMIT, 1),
        ] {
            let policy: RatePolicy = text.parse().unwrap();
            assert_eq!(
                (policy.limit(), policy.window().as_secs()),
                (limit, seconds),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_everything_else() {
        for (text, error) in [
            ("", PolicyError::Shape),
            ("100", PolicyError::Shape),
            ("0/s", PolicyError::Count),
            ("-1/s", PolicyError::Count),
            ("+1/s", PolicyError::Count),
            ("1.5/s", PolicyError::Count),
            (" 10/s", PolicyError::Count),
            ("1000001/s", PolicyError::Count),
            ("99999999999/s", PolicyError::Count),
            ("10/ s", PolicyError::Unit),
            ("10/S", PolicyError::Unit),
            ("10/min/s", PolicyError::Unit),
            ("10/week", PolicyError::Unit),
            ("10/\u{73}\u{301}", PolicyError::Unit),
            (&"1".repeat(33), PolicyError::TooLong),
        ] {
            assert_eq!(text.parse::<RatePolicy>(), Err(error), "{text:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["1/s", "30/min", "5000/h", "7/d"] {
            let policy: RatePolicy = text.parse().unwrap();
            assert_eq!(policy.to_string(), text);
            assert_eq!(policy.to_string().parse::<RatePolicy>(), Ok(policy));
        }
    }

    #[test]
    fn the_quota_matches_the_policy() {
        let quota = "100/min".parse::<RatePolicy>().unwrap().quota();
        assert_eq!(quota.burst_size().get(), 100);
        assert_eq!(quota.replenish_interval(), Duration::from_millis(600));
        let fastest = RatePolicy::per_second(MAX_LIMIT).unwrap().quota();
        assert_eq!(fastest.replenish_interval(), Duration::from_micros(1));
    }
}
