//! `Link` header parsing (RFC 8288) and the same-origin rule for `rel="next"`.
//!
//! Okta sends `self` and `next` as two separate `link` header lines; proxies and other
//! implementations may join them into one comma-separated line. Both are parsed the same way:
//! every `link` header value is split into link-values, taking care that commas and semicolons
//! inside `<…>` and inside quoted parameters are not separators.
//!
//! The next URL is followed verbatim: the collector never builds an `after` cursor itself
//! (docs/contracts.md §1.2). It is accepted only when it points at the org's own origin, because
//! the credential goes wherever the next URL points (docs/design.md §5).

use reqwest::header::{HeaderMap, LINK};
use url::Url;

/// One parsed link-value: target (as written) and its relation types (lower-case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub target: String,
    pub rels: Vec<String>,
}

/// Why the `link` headers could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("unparseable link header: {0}")]
    Syntax(&'static str),
    #[error("next link is not a valid URL: {0}")]
    BadUrl(String),
    #[error("next link points at another origin ({0})")]
    ForeignOrigin(String),
}

/// Every link-value of every `link` header, in order.
pub fn parse_all(headers: &HeaderMap) -> Result<Vec<Link>, LinkError> {
    let mut links = Vec::new();
    for value in headers.get_all(LINK) {
        let text = value
            .to_str()
            .map_err(|_| LinkError::Syntax("non-ASCII bytes"))?;
        parse_value(text, &mut links)?;
    }
    Ok(links)
}

/// Parses one header value (one or several comma-separated link-values) into `out`.
pub fn parse_value(text: &str, out: &mut Vec<Link>) -> Result<(), LinkError> {
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if rest.is_empty() {
            return Ok(());
        }
        let after_lt = rest
            .strip_prefix('<')
            .ok_or(LinkError::Syntax("link-value does not start with '<'"))?;
        let end = after_lt.find('>').ok_or(LinkError::Syntax("missing '>'"))?;
        let target = after_lt[..end].trim().to_string();
        rest = &after_lt[end + 1..];
        let mut rels = Vec::new();
        // Parameters: `; name=value` or `; name="quoted"` until a comma outside quotes.
        loop {
            rest = rest.trim_start();
            match rest.strip_prefix(';') {
                Some(r) => rest = r.trim_start(),
                None => break,
            }
            let name_end = rest.find(['=', ';', ',']).unwrap_or(rest.len());
            let name = rest[..name_end].trim().to_ascii_lowercase();
            rest = &rest[name_end..];
            let value = match rest.strip_prefix('=') {
                None => String::new(),
                Some(r) => {
                    let r = r.trim_start();
                    if let Some(q) = r.strip_prefix('"') {
                        let (v, after) = read_quoted(q)?;
                        rest = after;
                        v
                    } else {
                        let end = r.find([';', ',']).unwrap_or(r.len());
                        rest = &r[end..];
                        r[..end].trim().to_string()
                    }
                }
            };
            // RFC 8288 §3.3: only the first `rel` parameter counts.
            if name == "rel" && rels.is_empty() {
                rels = value
                    .split_ascii_whitespace()
                    .map(str::to_ascii_lowercase)
                    .collect();
            }
        }
        out.push(Link { target, rels });
        rest = rest.trim_start();
        if !rest.is_empty() && !rest.starts_with(',') {
            return Err(LinkError::Syntax("garbage after link-value"));
        }
    }
}

/// Reads a quoted-string body (after the opening quote); returns the unescaped value and the
/// text after the closing quote.
fn read_quoted(s: &str) -> Result<(String, &str), LinkError> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, escaped)) => value.push(escaped),
                None => break,
            },
            c => value.push(c),
        }
    }
    Err(LinkError::Syntax("unterminated quoted string"))
}

/// The `rel="next"` URL, resolved against the URL that was requested and checked to be on
/// `origin`. `Ok(None)` when there is no next link (the last page of a bounded query).
pub fn next_url(
    headers: &HeaderMap,
    requested: &Url,
    origin: &Url,
) -> Result<Option<Url>, LinkError> {
    let links = parse_all(headers)?;
    let Some(link) = links.iter().find(|l| l.rels.iter().any(|r| r == "next")) else {
        return Ok(None);
    };
    // Okta's links are absolute; a relative reference is resolved as RFC 8288 says.
    let mut url = requested
        .join(&link.target)
        .map_err(|e| LinkError::BadUrl(e.to_string()))?;
    url.set_fragment(None);
    if !same_origin(&url, origin) {
        return Err(LinkError::ForeignOrigin(origin_of(&url)));
    }
    Ok(Some(url))
}

/// Okta's page size when a request names no `limit` (docs/contracts.md §1.2: 0–1000, default 100).
pub const DEFAULT_LIMIT: usize = 100;

/// The page size a request asked for: its `limit` query parameter, or Okta's default.
///
/// Okta's `next` links echo the original query, so this is the same for every page of a
/// checkpoint. A page with fewer events than this is the head of the log (docs/design.md §3 "Caught
/// up means quiet"). An unparsable value counts as the default: Okta would refuse it with a
/// 400 anyway, so no page is ever judged by it.
pub fn requested_limit(url: &Url) -> usize {
    url.query_pairs()
        .find(|(k, _)| k == "limit")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(DEFAULT_LIMIT)
}

/// Scheme, host and port (default ports made explicit) are equal.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
        && a.username().is_empty()
        && a.password().is_none()
}

/// `scheme://host:port` of a URL, safe to log (no path, query or userinfo).
pub fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn the_requested_limit_comes_from_the_query_or_okta_default() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            requested_limit(&u(
                "https://a.okta.com/api/v1/logs?since=x&limit=1000&after=1_2"
            )),
            1000
        );
        assert_eq!(
            requested_limit(&u("https://a.okta.com/api/v1/logs?limit=20")),
            20
        );
        assert_eq!(
            requested_limit(&u("https://a.okta.com/api/v1/logs?after=1_2")),
            DEFAULT_LIMIT
        );
        assert_eq!(
            requested_limit(&u("https://a.okta.com/api/v1/logs?limit=lots")),
            DEFAULT_LIMIT
        );
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(LINK, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    const ORG: &str = "https://acme.okta.com/api/v1/logs?since=x";

    #[test]
    fn separate_header_lines() {
        let h = headers(&[
            r#"<https://acme.okta.com/api/v1/logs?limit=20>; rel="self""#,
            r#"<https://acme.okta.com/api/v1/logs?limit=20&after=1627500044869_1>; rel="next""#,
        ]);
        let next = next_url(&h, &url(ORG), &url("https://acme.okta.com")).unwrap();
        assert_eq!(
            next.unwrap().as_str(),
            "https://acme.okta.com/api/v1/logs?limit=20&after=1627500044869_1"
        );
    }

    #[test]
    fn one_comma_joined_line_with_commas_inside_the_url() {
        let h = headers(&[concat!(
            r#"<https://acme.okta.com/api/v1/logs?q=a,b&limit=20>; rel="self", "#,
            r#"<https://acme.okta.com/api/v1/logs?q=a,b&after=abc%2Cdef>;rel=next"#
        )]);
        let next = next_url(&h, &url(ORG), &url("https://acme.okta.com:443/")).unwrap();
        assert_eq!(
            next.unwrap().as_str(),
            "https://acme.okta.com/api/v1/logs?q=a,b&after=abc%2Cdef"
        );
    }

    #[test]
    fn rel_lists_case_and_extra_params() {
        let mut out = Vec::new();
        parse_value(
            r#"<https://x/a>; title="a; b, c"; REL="Prev NEXT"; rel="self""#,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rels, vec!["prev", "next"]);
    }

    #[test]
    fn no_next_link() {
        let h = headers(&[r#"<https://acme.okta.com/api/v1/logs>; rel="self""#]);
        assert_eq!(
            next_url(&h, &url(ORG), &url("https://acme.okta.com")),
            Ok(None)
        );
        assert_eq!(
            next_url(&HeaderMap::new(), &url(ORG), &url("https://acme.okta.com")),
            Ok(None)
        );
    }

    #[test]
    fn foreign_origins_are_refused() {
        for bad in [
            "https://evil.example.com/api/v1/logs?after=1",
            "http://acme.okta.com/api/v1/logs?after=1",
            "https://acme.okta.com:8443/api/v1/logs?after=1",
            "https://acme.okta.com.evil.example/api/v1/logs",
            "https://user:pw@acme.okta.com/api/v1/logs",
            "//evil.example.com/api/v1/logs",
        ] {
            let h = headers(&[&format!(r#"<{bad}>; rel="next""#)]);
            let r = next_url(&h, &url(ORG), &url("https://acme.okta.com"));
            assert!(
                matches!(r, Err(LinkError::ForeignOrigin(_))),
                "{bad}: {r:?}"
            );
        }
    }

    #[test]
    fn relative_links_resolve_against_the_request() {
        let h = headers(&[r#"</api/v1/logs?after=7>; rel="next""#]);
        let next = next_url(&h, &url(ORG), &url("https://acme.okta.com")).unwrap();
        assert_eq!(
            next.unwrap().as_str(),
            "https://acme.okta.com/api/v1/logs?after=7"
        );
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "https://x/a; rel=next",
            "<https://x/a; rel=next",
            r#"<a>; rel="next"#,
            "<a> junk",
        ] {
            let mut out = Vec::new();
            assert!(parse_value(bad, &mut out).is_err(), "{bad}");
        }
    }
}
