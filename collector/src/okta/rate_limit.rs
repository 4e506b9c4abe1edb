//! Okta's rate-limit headers (`X-Rate-Limit-*`) and its clock (`Date`), read from a response
//! for the pacer (docs/design.md §3 "Pacing"). Plain header parsing: no errors of its own, so
//! the error type and the response parser can both use it.

use chrono::{DateTime, TimeZone, Utc};
use reqwest::header::{HeaderMap, DATE};

/// `X-Rate-Limit-*` headers of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// `X-Rate-Limit-Limit`: the ceiling of the bucket (for this token).
    pub limit: u32,
    /// `X-Rate-Limit-Remaining`.
    pub remaining: u32,
    /// `X-Rate-Limit-Reset` (epoch seconds on Okta's clock).
    pub reset: DateTime<Utc>,
}

pub fn parse_rate_limit(headers: &HeaderMap) -> Option<RateLimit> {
    let num = |name: &str| -> Option<i64> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    let limit = u32::try_from(num("x-rate-limit-limit")?).ok()?;
    let remaining = u32::try_from(num("x-rate-limit-remaining")?).ok()?;
    let reset = Utc.timestamp_opt(num("x-rate-limit-reset")?, 0).single()?;
    Some(RateLimit {
        limit,
        remaining,
        reset,
    })
}

pub fn parse_date(headers: &HeaderMap) -> Option<DateTime<Utc>> {
    let v = headers.get(DATE)?.to_str().ok()?;
    DateTime::parse_from_rfc2822(v.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn rate_limit_and_date_headers() {
        let m = h(&[
            ("x-rate-limit-limit", "120"),
            ("x-rate-limit-remaining", "119"),
            ("x-rate-limit-reset", "1609459200"),
            ("date", "Fri, 01 Jan 2021 00:00:00 GMT"),
        ]);
        let r = parse_rate_limit(&m).unwrap();
        assert_eq!(
            (r.limit, r.remaining, r.reset.timestamp()),
            (120, 119, 1_609_459_200)
        );
        assert_eq!(parse_date(&m).unwrap().timestamp(), 1_609_459_200);
        assert_eq!(parse_rate_limit(&h(&[("x-rate-limit-limit", "1")])), None);
        assert_eq!(
            parse_rate_limit(&h(&[
                ("x-rate-limit-limit", "-1"),
                ("x-rate-limit-remaining", "0"),
                ("x-rate-limit-reset", "0")
            ])),
            None
        );
    }
}
