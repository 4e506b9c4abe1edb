//! Deterministic generator of realistic Okta System Log events (`LogEvent`,
//! `docs/contracts.md` §1.4–§1.5).
//!
//! Why it exists: the pipeline has to survive what Okta really sends, not a tidy schema. The
//! generator therefore mixes into ordinary events, at low rates, the odd shapes seen in Okta's
//! own samples (§1.5, §1.9): the *string* `"null"` as a zone, a numeric `version`, a null
//! `geographicalContext`, an all-null `securityContext`, empty or very long `target` arrays,
//! `debugData` with extra string-typed numbers, non-ASCII names and IPv6 addresses.
//!
//! Everything comes from one seeded RNG, so a seed always yields the same events (uuids
//! included), which keeps test failures reproducible.

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{json, Map, Value};

/// People the generator impersonates; some names are non-ASCII on purpose.
const PEOPLE: &[(&str, &str)] = &[
    ("John Doe", "john.doe"),
    ("Jane Smith", "jane.smith"),
    ("Zoë Ångström", "zoe.angstrom"),
    ("田中 太郎", "taro.tanaka"),
    ("Łukasz Żółć", "lukasz.zolc"),
    ("Amélie Poulain", "amelie.poulain"),
    ("Олег Петров", "oleg.petrov"),
    ("Priya Raman", "priya.raman"),
    ("Søren Kierkegaard", "soren.k"),
    ("María José García", "mj.garcia"),
    ("Ahmed Al-Farsi", "ahmed.alfarsi"),
    ("Chloé 🚀 Martin", "chloe.martin"),
];

/// `(eventType, legacyEventType, displayMessage, severity)` of the kinds of events a
/// Workforce org logs most.
const EVENT_KINDS: &[(&str, Option<&str>, &str, &str)] = &[
    (
        "user.session.start",
        Some("core.user_auth.login_success"),
        "User login to Okta",
        "INFO",
    ),
    (
        "user.authentication.sso",
        Some("app.auth.sso"),
        "User single sign on to app",
        "INFO",
    ),
    (
        "user.authentication.auth_via_mfa",
        Some("core.user.factor.attempt_success"),
        "Authentication of user via MFA",
        "INFO",
    ),
    (
        "policy.evaluate_sign_on",
        None,
        "Evaluation of sign-on policy",
        "INFO",
    ),
    (
        "user.session.end",
        Some("core.user_auth.logout_success"),
        "User logout from Okta",
        "INFO",
    ),
    (
        "app.oauth2.as.token.grant.access_token",
        None,
        "OAuth2 access token is granted",
        "INFO",
    ),
    (
        "user.account.lock",
        Some("core.user.account.locked"),
        "Max sign in attempts exceeded",
        "WARN",
    ),
    (
        "user.authentication.authenticate",
        Some("core.user_auth.login_failed"),
        "Verify user identity",
        "INFO",
    ),
    (
        "group.user_membership.add",
        Some("core.user_group_member.user_add"),
        "Add user to group membership",
        "INFO",
    ),
    (
        "user.lifecycle.create",
        Some("core.user.config.user_creation.success"),
        "Create okta user",
        "INFO",
    ),
    (
        "system.org.rate_limit.warning",
        Some("core.framework.ratelimit.warning"),
        "Rate limit warning",
        "WARN",
    ),
    (
        "security.threat.detected",
        None,
        "Request from suspicious actor",
        "WARN",
    ),
];

const USER_AGENTS: &[(&str, &str, &str)] = &[
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/127.0.0.0 Safari/537.36", "Mac OS X", "CHROME"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0", "Windows 10", "EDGE_CHROMIUM"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0", "Windows 10", "FIREFOX"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "iOS", "MOBILE_SAFARI"),
    ("okta-sdk-java/8.2.5 java/17.0.2 Linux/5.15.0", "Linux", "UNKNOWN"),
    ("OktaVerify/9.20.0 (Android 14; Pixel 8)", "Android", "UNKNOWN"),
];

const PLACES: &[(&str, &str, &str, &str, f64, f64)] = &[
    (
        "New York",
        "New York",
        "United States",
        "10013",
        40.7157,
        -74.01,
    ),
    (
        "San Francisco",
        "California",
        "United States",
        "94107",
        37.7697,
        -122.3933,
    ),
    (
        "London",
        "England",
        "United Kingdom",
        "EC2V",
        51.5164,
        -0.093,
    ),
    ("München", "Bayern", "Germany", "80331", 48.1371, 11.5754),
    (
        "São Paulo",
        "São Paulo",
        "Brazil",
        "01000-000",
        -23.5475,
        -46.6361,
    ),
    ("Tōkyō", "Tokyo", "Japan", "100-0001", 35.6895, 139.6917),
    (
        "Kraków",
        "Lesser Poland",
        "Poland",
        "30-001",
        50.0614,
        19.9366,
    ),
    (
        "Sydney",
        "New South Wales",
        "Australia",
        "2000",
        -33.8688,
        151.2093,
    ),
];

const APPS: &[(&str, &str)] = &[
    ("Okta Admin Console", "saasure"),
    ("Okta Dashboard", "okta_enduser"),
    ("Salesforce.com", "salesforce"),
    ("Microsoft Office 365", "office365"),
    ("Slack", "slack"),
    ("GitHub Enterprise Cloud", "githubcloud"),
    ("AWS IAM Identity Center", "amazon_aws_sso"),
    ("Zoom", "zoomus"),
];

const URIS: &[&str] = &[
    "/idp/idx/authenticators/poll",
    "/idp/idx/identify",
    "/idp/idx/challenge/answer",
    "/app/salesforce/exk1fcia6d6EMsf331d8/sso/saml",
    "/oauth2/v1/authorize",
    "/api/v1/authn",
    "/login/sessionCookieRedirect",
];

/// The sample event of `docs/contracts.md` §1.5, verbatim (the `dtHash` ellipsis included).
pub fn sample_event() -> Value {
    json!({
      "uuid": "dc9fd3c0-598c-11ef-8478-2b7584bf8d5a",
      "published": "2024-08-13T15:58:20.353Z",
      "eventType": "user.session.start",
      "version": "0",
      "severity": "INFO",
      "legacyEventType": "core.user_auth.login_success",
      "displayMessage": "User login to Okta",
      "actor": {"id": "00uttidj01jqL21aM1d6", "type": "User", "alternateId": "john.doe@example.com", "displayName": "John Doe", "detailEntry": null},
      "client": {
        "userAgent": {"rawUserAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/127.0.0.0 Safari/537.36", "os": "Mac OS X", "browser": "CHROME"},
        "zone": "null", "device": "Computer", "id": null, "ipAddress": "198.51.100.23",
        "geographicalContext": {"city": "New York", "state": "New York", "country": "United States", "postalCode": "10013", "geolocation": {"lat": 40.7157, "lon": -74.01}}
      },
      "device": null,
      "authenticationContext": {"authenticationProvider": null, "credentialProvider": null, "credentialType": null, "issuer": null, "interface": null, "authenticationStep": 0, "rootSessionId": "idxBager62CSveUkTxvgRtonA", "externalSessionId": "idxBager62CSveUkTxvgRtonA"},
      "outcome": {"result": "SUCCESS", "reason": null},
      "target": [
        {"id": "pfdfdhyjf0HMbkP2e1d7", "type": "AuthenticatorEnrollment", "alternateId": "unknown", "displayName": "Okta Verify", "detailEntry": null},
        {"id": "0oatxlef9sQvvqInq5d6", "type": "AppInstance", "alternateId": "Okta Admin Console", "displayName": "Okta Admin Console", "detailEntry": null}
      ],
      "transaction": {"type": "WEB", "id": "ab609228fe84ce59cdcbfa690bgce016", "detail": {}},
      "debugContext": {"debugData": {"requestId": "ab609228fe84ce59cdcbfa690bcce016", "requestUri": "/idp/idx/authenticators/poll", "url": "/idp/idx/authenticators/poll", "dtHash": "f3b3c1a0…", "threatSuspected": "false"}},
      "securityContext": {"asNumber": 394089, "asOrg": "example asn org", "isp": "example isp", "domain": "example.net", "isProxy": false},
      "request": {"ipChain": [{"ip": "198.51.100.23", "geographicalContext": {"city": "New York", "state": "New York", "country": "United States", "postalCode": "10013", "geolocation": {"lat": 40.7157, "lon": -74.01}}, "version": "V4", "source": null}]}
    })
}

/// Formats a timestamp as Okta does: RFC 3339, milliseconds, `Z`.
pub fn okta_timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// How often each odd case appears (per event). Low on purpose: they must be rare enough
/// that ordinary events dominate, yet common enough that a few hundred events hit them all.
#[derive(Debug, Clone, Copy)]
pub struct OddRates {
    pub numeric_version: f64,
    pub null_geo: f64,
    pub null_security_context: f64,
    pub empty_target: f64,
    pub null_target: f64,
    pub many_targets: f64,
    pub extra_debug_data: f64,
    pub ipv6: f64,
}

impl Default for OddRates {
    fn default() -> Self {
        Self {
            numeric_version: 0.03,
            null_geo: 0.05,
            null_security_context: 0.05,
            empty_target: 0.04,
            null_target: 0.01,
            many_targets: 0.01,
            extra_debug_data: 0.05,
            ipv6: 0.05,
        }
    }
}

/// A seeded source of realistic `LogEvent`s.
pub struct EventGenerator {
    rng: StdRng,
    rates: OddRates,
}

impl EventGenerator {
    /// A generator whose output depends only on `seed`.
    pub fn new(seed: u64) -> Self {
        Self::with_rates(seed, OddRates::default())
    }

    /// Like [`EventGenerator::new`] with explicit rates of the odd cases.
    pub fn with_rates(seed: u64, rates: OddRates) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            rates,
        }
    }

    /// A uuid v4 drawn from the seeded RNG (deterministic, unlike `Uuid::new_v4`).
    pub fn uuid(&mut self) -> String {
        let bytes: [u8; 16] = self.rng.random();
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.random_range(0..items.len())]
    }

    /// An Okta-style object id: a 3-char prefix and 17 base62 chars (e.g. `00uttidj01jqL21aM1d6`).
    fn okta_id(&mut self, prefix: &str) -> String {
        format!(
            "{prefix}{}",
            self.base62(20usize.saturating_sub(prefix.len()))
        )
    }

    fn base62(&mut self, n: usize) -> String {
        const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        (0..n)
            .map(|_| B62[self.rng.random_range(0..B62.len())] as char)
            .collect()
    }

    fn hex(&mut self, n: usize) -> String {
        const HEX: &[u8] = b"0123456789abcdef";
        (0..n)
            .map(|_| HEX[self.rng.random_range(0..16)] as char)
            .collect()
    }

    fn ip(&mut self) -> (String, &'static str) {
        if self.rng.random_bool(self.rates.ipv6) {
            let a: u16 = self.rng.random();
            let b: u16 = self.rng.random();
            (format!("2001:db8:{a:x}::{b:x}"), "V6")
        } else {
            // TEST-NET ranges only.
            let nets = ["192.0.2", "198.51.100", "203.0.113"];
            let net = self.pick(&nets).to_string();
            let host: u8 = self.rng.random_range(1..=254);
            (format!("{net}.{host}"), "V4")
        }
    }

    fn geo(&mut self) -> Value {
        if self.rng.random_bool(self.rates.null_geo) {
            return Value::Null;
        }
        let (city, state, country, postal, lat, lon) = *self.pick(PLACES);
        json!({"city": city, "state": state, "country": country, "postalCode": postal,
               "geolocation": {"lat": lat, "lon": lon}})
    }

    fn target(&mut self) -> Value {
        let (name, app) = *self.pick(APPS);
        let id = self.okta_id("0oa");
        let mut t = json!({"id": id, "type": "AppInstance", "alternateId": name,
                           "displayName": name, "detailEntry": {"signOnModeType": "SAML_2_0", "appName": app}});
        if self.rng.random_bool(0.1) {
            t["changeDetails"] =
                json!({"from": {"status": "INACTIVE"}, "to": {"status": "ACTIVE"}});
        }
        t
    }

    fn targets(&mut self) -> Value {
        if self.rng.random_bool(self.rates.null_target) {
            return Value::Null;
        }
        if self.rng.random_bool(self.rates.empty_target) {
            return json!([]);
        }
        let n = if self.rng.random_bool(self.rates.many_targets) {
            self.rng.random_range(20..60)
        } else {
            self.rng.random_range(1..=3)
        };
        let mut v = Vec::with_capacity(n + 1);
        let enrollment = self.okta_id("pfd");
        v.push(
            json!({"id": enrollment, "type": "AuthenticatorEnrollment", "alternateId": "unknown",
                      "displayName": "Okta Verify", "detailEntry": null}),
        );
        for _ in 1..n {
            v.push(self.target());
        }
        Value::Array(v)
    }

    fn security_context(&mut self) -> Value {
        if self.rng.random_bool(self.rates.null_security_context) {
            return json!({"asNumber": null, "asOrg": null, "isp": null, "domain": null, "isProxy": null});
        }
        let asn: u32 = self.rng.random_range(1000..400_000);
        let mut sc = json!({"asNumber": asn, "asOrg": "example asn org", "isp": "example isp",
                            "domain": "example.net", "isProxy": self.rng.random_bool(0.05)});
        if self.rng.random_bool(0.3) {
            sc["ipDetails"] = json!({"asNumber": asn, "asOrg": "example asn org", "isp": "example isp",
                                     "domain": "example.net", "ipServiceCategories": []});
        }
        sc
    }

    fn debug_data(&mut self, uri: &str, request_id: &str, outcome_fail: bool) -> Value {
        let mut d = Map::new();
        d.insert("requestId".into(), json!(request_id));
        d.insert("requestUri".into(), json!(uri));
        let q = self.hex(24);
        d.insert("url".into(), json!(format!("{uri}?stateToken={q}")));
        d.insert("dtHash".into(), json!(self.hex(64)));
        d.insert(
            "threatSuspected".into(),
            json!(if outcome_fail { "true" } else { "false" }),
        );
        d.insert("deviceFingerprint".into(), json!(self.hex(32)));
        d.insert(
            "behaviors".into(),
            json!("{New Geo-Location=NEGATIVE, New Device=NEGATIVE, New IP=POSITIVE, New State=NEGATIVE, New Country=NEGATIVE, Velocity=NEGATIVE, New City=NEGATIVE}"),
        );
        d.insert(
            "risk".into(),
            json!("{reasons=Anomalous Device, level=LOW}"),
        );
        let auth_req = self.okta_id("");
        d.insert("authnRequestId".into(), json!(auth_req));
        if self.rng.random_bool(self.rates.extra_debug_data) {
            // String-typed numbers and free-form keys as in rate-limit events.
            d.insert("operationRateLimitThreshold".into(), json!("15"));
            d.insert("operationRateLimitSecondsToReset".into(), json!("54"));
            d.insert("operationRateLimitType".into(), json!("org"));
            d.insert("operationRateLimitScopeType".into(), json!("Org"));
            d.insert("operationRateLimitSubtype".into(), json!("System Log"));
            d.insert("clientSecret".into(), json!("")); // empty value Okta sometimes logs
            d.insert("customAttribute_Ünïcødé".into(), json!("värde ✓"));
            let blob_len = self.rng.random_range(200..1200);
            let blob = self.hex(blob_len);
            d.insert(
                "logOnlySecurityData".into(),
                json!(format!(
                    "{{\"risk\":{{\"level\":\"LOW\"}},\"blob\":\"{blob}\"}}"
                )),
            );
        }
        Value::Object(d)
    }

    /// One event published at `published`.
    pub fn event(&mut self, published: DateTime<Utc>) -> Value {
        let uuid = self.uuid();
        let (event_type, legacy, message, severity) = *self.pick(EVENT_KINDS);
        let (person, login) = *self.pick(PEOPLE);
        let actor_id = self.okta_id("00u");
        let (ua, os, browser) = *self.pick(USER_AGENTS);
        let (ip, ip_version) = self.ip();
        let geo = self.geo();
        let fail = self.rng.random_bool(0.08);
        let (result, reason) = if fail {
            ("FAILURE", json!("INVALID_CREDENTIALS"))
        } else {
            ("SUCCESS", Value::Null)
        };
        let zone = match self.rng.random_range(0..10) {
            0 => json!("LegacyIpZone"),
            1 => Value::Null,
            _ => json!("null"),
        };
        let version = if self.rng.random_bool(self.rates.numeric_version) {
            json!(0)
        } else {
            json!("0")
        };
        let session = format!("idx{}", self.base62(22));
        let txn = self.hex(32);
        let uri = *self.pick(URIS);
        let debug = self.debug_data(uri, &txn, fail);
        let chain_geo = if self.rng.random_bool(self.rates.null_geo) {
            Value::Null
        } else {
            geo.clone()
        };
        let device = if self.rng.random_bool(0.15) {
            let did = self.okta_id("guo");
            json!({"id": did, "name": format!("{person}'s laptop"), "os_platform": os, "os_version": "14.5.0",
                   "managed": false, "registered": true, "device_integrator": null,
                   "disk_encryption_type": "ALL_INTERNAL_VOLUMES", "screen_lock_type": "BIOMETRIC",
                   "jailbreak": null, "secure_hardware_present": true})
        } else {
            Value::Null
        };
        let credential = if event_type.starts_with("user.authentication") {
            json!({"authenticationProvider": "OKTA_AUTHENTICATION_PROVIDER", "credentialProvider": "OKTA_CREDENTIAL_PROVIDER",
                   "credentialType": "PASSWORD", "issuer": null, "interface": null})
        } else {
            json!({"authenticationProvider": null, "credentialProvider": null, "credentialType": null,
                   "issuer": null, "interface": null})
        };
        let mut auth = credential;
        auth["authenticationStep"] = json!(0);
        auth["rootSessionId"] = json!(session);
        auth["externalSessionId"] = json!(session);
        let client_id = if self.rng.random_bool(0.2) {
            json!(self.okta_id("0oa"))
        } else {
            Value::Null
        };
        json!({
            "uuid": uuid,
            "published": okta_timestamp(published),
            "eventType": event_type,
            "version": version,
            "severity": severity,
            "legacyEventType": legacy,
            "displayMessage": message,
            "actor": {"id": actor_id, "type": "User", "alternateId": format!("{login}@example.com"),
                      "displayName": person, "detailEntry": null},
            "client": {
                "userAgent": {"rawUserAgent": ua, "os": os, "browser": browser},
                "zone": zone, "device": "Computer", "id": client_id, "ipAddress": ip,
                "geographicalContext": geo
            },
            "device": device,
            "authenticationContext": auth,
            "outcome": {"result": result, "reason": reason},
            "target": self.targets(),
            "transaction": {"type": "WEB", "id": txn, "detail": {"requestApiTokenId": null}},
            "debugContext": {"debugData": debug},
            "securityContext": self.security_context(),
            "request": {"ipChain": [{"ip": ip, "geographicalContext": chain_geo, "version": ip_version, "source": null}]}
        })
    }
}

/// The 1,000 realistic events of the benchmarks' reference page (seed 42, published 60 ms
/// apart from 2024-08-13T15:58:20.353Z), as Okta answers them: no `domain`. The CPU figures in
/// BENCHMARKS.md and the bytes-per-row golden test all read this one page.
pub fn benchmark_events() -> Vec<Value> {
    let t0 = DateTime::parse_from_rfc3339("2024-08-13T15:58:20.353Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default();
    generate(42, 1_000, t0, chrono::Duration::milliseconds(60))
}

/// [`benchmark_events`] as the collector stores them (each with `domain`), serialised: the page
/// the shipper reads.
pub fn benchmark_page() -> Vec<u8> {
    let mut events = benchmark_events();
    for e in &mut events {
        e["domain"] = Value::String("acme.okta.com".into());
    }
    serde_json::to_vec(&events).unwrap_or_default()
}

/// `n` events from `seed`, the i-th published at `published_from + i * step`.
pub fn generate(
    seed: u64,
    n: usize,
    published_from: DateTime<Utc>,
    step: chrono::Duration,
) -> Vec<Value> {
    let mut g = EventGenerator::new(seed);
    let mut t = published_from;
    (0..n)
        .map(|_| {
            let e = g.event(t);
            t += step;
            e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn events(n: usize) -> Vec<Value> {
        let t0 = DateTime::parse_from_rfc3339("2024-08-13T15:58:20.353Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap();
        generate(7, n, t0, chrono::Duration::milliseconds(250))
    }

    #[test]
    fn deterministic_and_unique() {
        let a = events(500);
        let b = events(500);
        assert_eq!(a, b);
        let uuids: HashSet<_> = a
            .iter()
            .map(|e| e["uuid"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(uuids.len(), 500);
        for u in &uuids {
            assert_eq!(uuid::Uuid::parse_str(u).unwrap().get_version_num(), 4);
        }
    }

    #[test]
    fn sizes_are_realistic() {
        let a = events(1000);
        let sizes: Vec<usize> = a
            .iter()
            .map(|e| serde_json::to_vec(e).unwrap().len())
            .collect();
        let typical = sizes.iter().filter(|s| (1500..=4096).contains(*s)).count();
        assert!(
            typical >= 900,
            "only {typical} of 1000 events are 1.5-4 KB: {:?}",
            &sizes[..20]
        );
        let mean = sizes.iter().sum::<usize>() / sizes.len();
        assert!((1800..=4000).contains(&mean), "mean {mean}");
    }

    #[test]
    fn odd_cases_all_occur() {
        let a = events(2000);
        let has = |f: &dyn Fn(&Value) -> bool| a.iter().any(f);
        assert!(has(&|e| e["client"]["zone"] == json!("null")));
        assert!(has(&|e| e["client"]["zone"].is_null()));
        assert!(has(&|e| e["version"].is_number()));
        assert!(has(&|e| e["version"] == json!("0")));
        assert!(has(&|e| e["client"]["geographicalContext"].is_null()));
        assert!(has(
            &|e| e["request"]["ipChain"][0]["geographicalContext"].is_null()
        ));
        assert!(has(&|e| e["securityContext"]["asNumber"].is_null()
            && e["securityContext"]["isProxy"].is_null()));
        assert!(has(&|e| e["target"] == json!([])));
        assert!(has(&|e| e["target"]
            .as_array()
            .is_some_and(|t| t.len() >= 20)));
        assert!(has(&|e| e["debugContext"]["debugData"]
            ["operationRateLimitThreshold"]
            == json!("15")));
        assert!(has(&|e| e["actor"]["displayName"]
            .as_str()
            .is_some_and(|s| !s.is_ascii())));
        assert!(has(
            &|e| e["request"]["ipChain"][0]["version"] == json!("V6")
        ));
    }

    #[test]
    fn published_follows_the_schedule() {
        let a = events(3);
        assert_eq!(a[0]["published"], json!("2024-08-13T15:58:20.353Z"));
        assert_eq!(a[1]["published"], json!("2024-08-13T15:58:20.603Z"));
    }

    #[test]
    fn sample_matches_contract() {
        let s = sample_event();
        assert_eq!(s["client"]["zone"], json!("null"));
        assert_eq!(s["version"], json!("0"));
        let len = serde_json::to_vec(&s).unwrap().len();
        assert!((2000..3000).contains(&len), "{len}");
    }
}
