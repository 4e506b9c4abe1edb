//! Reading Okta's answers: the body of a 200 (a JSON array of event objects, or `Malformed`)
//! and a non-2xx answer mapped to an [`OktaError`] (Okta's `errorCode`/`errorSummary`, with
//! the credential scrubbed from any excerpt).

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use serde::Deserialize;

use super::error::{canonical, clip, scrub, snippet, OktaError};
use super::events::Events;
use super::rate_limit::{parse_date, parse_rate_limit};

/// The body of a 200: a JSON array whose elements are all objects.
pub fn parse_events(headers: &HeaderMap, bytes: Vec<u8>) -> Result<Events, OktaError> {
    let size = bytes.len();
    let text = String::from_utf8(bytes).map_err(|e| {
        OktaError::Malformed(format!(
            "body is not valid UTF-8 (at byte {} of {size})",
            e.utf8_error().valid_up_to(),
        ))
    })?;
    let first = text.trim_start().chars().next();
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    match first {
        Some('[') => Events::split(text),
        Some('<') => Err(OktaError::Malformed(format!(
            "an HTML/XML page instead of JSON (content-type {}, {size} bytes): {}",
            clip(content_type),
            snippet(&text, None)
        ))),
        Some('{') => Err(OktaError::Malformed(format!(
            "a JSON object instead of an array of events ({size} bytes): {}",
            snippet(&text, None)
        ))),
        None => Err(OktaError::Malformed("empty body with status 200".into())),
        Some(_) => Err(OktaError::Malformed(format!(
            "not a JSON array (content-type {}, {size} bytes): {}",
            clip(content_type),
            snippet(&text, None)
        ))),
    }
}

/// Okta's error shape: `{"errorCode": "E0000011", "errorSummary": "…", …}`.
#[derive(Deserialize, Debug, Default)]
pub struct ErrorBody {
    #[serde(rename = "errorCode")]
    pub code: Option<String>,
    #[serde(rename = "errorSummary")]
    pub summary: Option<String>,
}

pub fn error_body(bytes: &[u8]) -> Option<ErrorBody> {
    serde_json::from_slice::<ErrorBody>(bytes)
        .ok()
        .filter(|b| b.code.is_some() || b.summary.is_some())
}

/// Maps a non-2xx answer. `secret` (what was sent) is scrubbed from any body excerpt.
pub fn status_error(
    status: u16,
    headers: &HeaderMap,
    bytes: &[u8],
    secret: Option<&str>,
) -> OktaError {
    let body = error_body(bytes);
    let code = body.as_ref().and_then(|b| b.code.clone()).map(|c| clip(&c));
    let summary = match body.and_then(|b| b.summary) {
        Some(s) => scrub(&clip(&s), secret),
        None if bytes.is_empty() => canonical(status),
        None => format!(
            "{}; body: {}",
            canonical(status),
            snippet(&String::from_utf8_lossy(bytes), secret)
        ),
    };
    match status {
        429 => OktaError::RateLimited {
            rate: parse_rate_limit(headers),
            date: parse_date(headers),
        },
        401 => OktaError::Unauthorized { code, summary },
        403 => OktaError::Forbidden { code, summary },
        300..=399 => OktaError::Redirect { status },
        500..=599 => OktaError::Server {
            status,
            code,
            summary,
        },
        _ => OktaError::BadRequest {
            status,
            code,
            summary,
        },
    }
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
    fn bodies_that_are_not_pages_are_malformed() {
        let none = HeaderMap::new();
        let cases: [&[u8]; 7] = [
            b"<html><body>Sign in</body></html>",
            b"[{\"uuid\":\"a\"},{\"uuid\":",
            b"{\"errorCode\":\"E0000001\"}",
            b"[{\"uuid\":\"a\xff\"}]",
            b"",
            b"[1,2]",
            b"null",
        ];
        for body in cases {
            let r = parse_events(&none, body.to_vec());
            assert!(
                matches!(r, Err(OktaError::Malformed(_))),
                "{:?}: {r:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(parse_events(&none, b" [ ] ".to_vec()).unwrap().len(), 0);
        assert_eq!(
            parse_events(&none, b"[{\"a\":1}, {}]".to_vec())
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn malformed_descriptions_are_short() {
        let big = format!("<html>{}</html>", "x".repeat(10_000));
        let Err(OktaError::Malformed(m)) = parse_events(&HeaderMap::new(), big.into_bytes()) else {
            panic!("not malformed")
        };
        assert!(m.len() < 400, "{}", m.len());
    }

    #[test]
    fn error_statuses_map_to_variants() {
        let okta = |code: &str| {
            format!(r#"{{"errorCode":"{code}","errorSummary":"s {code}","errorCauses":[]}}"#)
        };
        let none = HeaderMap::new();
        assert!(matches!(
            status_error(401, &none, okta("E0000011").as_bytes(), None),
            OktaError::Unauthorized { code: Some(c), .. } if c == "E0000011"
        ));
        assert!(matches!(
            status_error(403, &none, okta("E0000006").as_bytes(), None),
            OktaError::Forbidden { .. }
        ));
        assert!(matches!(
            status_error(500, &none, okta("E0000009").as_bytes(), None),
            OktaError::Server { status: 500, .. }
        ));
        assert!(matches!(
            status_error(400, &none, okta("E0000053").as_bytes(), None),
            OktaError::BadRequest { status: 400, .. }
        ));
        let rl = h(&[
            ("x-rate-limit-limit", "20"),
            ("x-rate-limit-remaining", "0"),
            ("x-rate-limit-reset", "1609459260"),
            ("date", "Fri, 01 Jan 2021 00:00:00 GMT"),
        ]);
        let OktaError::RateLimited {
            rate: Some(r),
            date: Some(d),
        } = status_error(429, &rl, okta("E0000047").as_bytes(), None)
        else {
            panic!("not rate limited")
        };
        assert_eq!(
            (r.limit, r.remaining, (r.reset - d).num_seconds()),
            (20, 0, 60)
        );
        assert!(matches!(
            status_error(302, &none, b"", None),
            OktaError::Redirect { status: 302 }
        ));
    }

    #[test]
    fn secrets_are_scrubbed_from_error_bodies() {
        let e = status_error(
            502,
            &HeaderMap::new(),
            b"<p>bad gateway for SSWS 00SECRETTOKEN</p>",
            Some("00SECRETTOKEN"),
        );
        assert!(!e.to_string().contains("00SECRETTOKEN"), "{e}");
        let e = status_error(
            401,
            &HeaderMap::new(),
            br#"{"errorSummary":"00SECRETTOKEN invalid"}"#,
            Some("00SECRETTOKEN"),
        );
        assert!(!e.to_string().contains("00SECRETTOKEN"), "{e}");
    }
}
