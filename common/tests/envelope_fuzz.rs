//! Randomised tests of everything `common` decodes from untrusted text: queue envelopes, org
//! keys and numbers that become blob names, undecodable-record names and page states.
//!
//! `common` has no proptest dev-dependency, so this suite drives its generators with a seeded
//! `rand` RNG (a normal dependency of the crate) in the same style: `PROPTEST_CASES=N` sets the
//! number of cases of every property (default: small, the suite runs in seconds), and
//! `FUZZ_SEED=S` changes the base seed. A failure prints the case's seed and its input, so it
//! can be replayed with `FUZZ_SEED=<seed> PROPTEST_CASES=1` and turned into a regression test.
// Test code: helpers outside `#[test]` functions may unwrap too (the lint is for product code).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use chrono::{TimeZone, Utc};
use common::envelope::{DecodeError, Envelope, MAX_TEXT_LEN};
use common::org::{names, parse_number, OrgKey};
use common::page_state::PageState;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Runs `property` on `default_cases` (or `PROPTEST_CASES`) seeded RNGs; a returned error or a
/// panic fails the test with the seed that reproduces it.
fn check(name: &str, default_cases: u64, property: impl Fn(&mut StdRng) -> Result<(), String>) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let base: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_0000);
    for i in 0..cases {
        let seed = base.wrapping_add(i);
        let mut rng = StdRng::seed_from_u64(seed);
        match catch_unwind(AssertUnwindSafe(|| property(&mut rng))) {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => {
                panic!("{name}: case {i} failed (FUZZ_SEED={seed} PROPTEST_CASES=1): {msg}")
            }
            Err(_) => panic!("{name}: case {i} panicked (FUZZ_SEED={seed} PROPTEST_CASES=1)"),
        }
    }
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

const NASTY: &[&str] = &[
    "..", ".", "/", "\\", "%2e%2e", "%2f", "\u{0}", "\u{202e}", "\u{ff0e}", "~", " ", "\n", "?",
    "#", "*", ":", "A", "Z", "-", "_", "é", "😀", "\"", "'", "..%2f", "/..", "\u{2024}",
];

fn any_char(rng: &mut StdRng) -> char {
    match rng.random_range(0..4) {
        0 => rng.random_range(0x20u8..0x7f) as char,
        1 => rng.random_range(0u8..0x20) as char,
        2 => char::from_u32(rng.random_range(0x80..0x3000)).unwrap_or('?'),
        _ => rng.random::<char>(),
    }
}

fn any_string(rng: &mut StdRng, max: usize) -> String {
    let n = rng.random_range(0..=max);
    (0..n).map(|_| any_char(rng)).collect()
}

/// A string made of DNS-ish pieces and hostile ones, so that both sides of `OrgKey::parse` are
/// well covered.
fn key_like(rng: &mut StdRng) -> String {
    let labels = rng.random_range(0..5);
    let mut s = String::new();
    for i in 0..labels {
        if i > 0 {
            s.push(if rng.random_bool(0.9) { '.' } else { '/' });
        }
        let len = match rng.random_range(0..10) {
            0 => 0,
            1 => rng.random_range(60..70),
            _ => rng.random_range(1..12),
        };
        for _ in 0..len {
            if rng.random_bool(0.04) {
                s.push_str(NASTY[rng.random_range(0..NASTY.len())]);
            } else {
                let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789-";
                s.push(alphabet[rng.random_range(0..alphabet.len())] as char);
            }
        }
    }
    if rng.random_bool(0.05) {
        s = s.repeat(rng.random_range(2..40));
    }
    s
}

/// The reference definition of a valid org key (docs/design.md §2): DNS labels of `[a-z0-9-]`, no
/// empty label, at most 63 bytes a label, 259 in all (253 + `-{port}`).
fn is_dns_ish(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 259
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn sample_envelope() -> Value {
    json!({
        "v": 1, "org": "acme.okta.com", "epoch": 3, "seq": 42,
        "sha256": "0123456789abcdef".repeat(4), "events": 1000, "bytes": 81234,
        "newest_published": "2026-11-29T12:00:00.000Z", "created": "2026-11-29T12:00:01Z"
    })
}

/// A hostile value for an envelope field.
fn hostile_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..22) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(-rng.random_range(1..i64::MAX)),
        3 => json!(rng.random::<u64>()),
        4 => json!(u64::MAX),
        5 => json!(rng.random::<f64>() * 1e20),
        6 => json!(1.0),
        7 => json!(rng.random::<u64>().to_string()),
        8 => json!("../checkpoints"),
        9 => json!(format!("{}/../../{}", key_like(rng), key_like(rng))),
        10 => json!("x".repeat(rng.random_range(1..20_000))),
        11 => json!(any_string(rng, 40)),
        12 => json!(key_like(rng)),
        13 => json!([1, 2]),
        14 => json!({"a": 1}),
        15 => json!("0123456789ABCDEF".repeat(4)),
        16 => json!(format!("{}../", "ab".repeat(31))),
        17 => json!("2026-02-30T00:00:00Z"),
        18 => json!(Utc
            .timestamp_opt(rng.random_range(-62_000_000_000..250_000_000_000), 0)
            .single()
            .map(|t| t.to_rfc3339())),
        19 => json!(rng.random_range(0..4u64)),
        20 => json!(i64::MIN),
        _ => {
            let n = rng.random_range(60..68);
            json!(hex_lower(rng, n))
        }
    }
}

fn hex_lower(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| b"0123456789abcdef"[rng.random_range(0..16)] as char)
        .collect()
}

/// A structurally valid envelope (JSON object) with 1–4 fields replaced, removed or added.
fn hostile_envelope(rng: &mut StdRng) -> String {
    let mut v = sample_envelope();
    let fields = [
        "v",
        "org",
        "epoch",
        "seq",
        "sha256",
        "events",
        "bytes",
        "newest_published",
        "created",
        "extra",
        "page",
        "blob",
        "name",
    ];
    for _ in 0..rng.random_range(1..=4) {
        let f = fields[rng.random_range(0..fields.len())];
        let Some(obj) = v.as_object_mut() else { break };
        if rng.random_bool(0.15) {
            obj.remove(f);
        } else {
            obj.insert(f.to_string(), hostile_value(rng));
        }
    }
    let text = v.to_string();
    match rng.random_range(0..10) {
        // Duplicate a key: `{"v":1,…,"org":"../x"}` — which one wins must not matter.
        0 => format!("{},\"org\":\"../checkpoints\"}}", &text[..text.len() - 1]),
        1 => format!("{},\"v\":1}}", &text[..text.len() - 1]),
        _ => text,
    }
}

// ---------------------------------------------------------------------------------------------
// Invariants of an accepted envelope
// ---------------------------------------------------------------------------------------------

/// Everything that must hold of an envelope `decode` accepted.
fn accepted_is_safe(env: &Envelope) -> Result<(), String> {
    ensure!(env.v == 1, "accepted version {}", env.v);
    ensure!(
        is_dns_ish(env.org.as_str()),
        "accepted org {:?}",
        env.org.as_str()
    );
    ensure!(
        env.sha256.len() == 64
            && env
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "accepted sha256 {:?}",
        env.sha256
    );
    // It round-trips.
    let back = Envelope::decode(&env.encode()).map_err(|e| format!("re-decode: {e}"))?;
    ensure!(&back == env, "round trip changed {env:?} into {back:?}");
    // Every name derived from it stays in its own prefix.
    let org = env.org.as_str();
    for (name, prefix, suffix) in [
        (
            env.page_blob(),
            format!("pages/{org}/"),
            ".json.gz".to_string(),
        ),
        (
            names::state(&env.org, env.epoch, env.seq),
            format!("state/{org}/"),
            ".json".into(),
        ),
        (
            names::done(&env.org, env.epoch, env.seq),
            format!("done/{org}/"),
            String::new(),
        ),
        (
            names::poison(&env.org, env.epoch, env.seq),
            format!("poison/{org}/"),
            ".json".into(),
        ),
    ] {
        ensure!(name.starts_with(&prefix), "{name} outside {prefix}");
        ensure!(!name.contains(".."), "{name} has ..");
        ensure!(!name.contains("//") && !name.contains('\\'), "{name}");
        let rest = &name[prefix.len()..name.len() - suffix.len()];
        let segs: Vec<&str> = rest.split('/').collect();
        ensure!(segs.len() == 2, "{name}: {segs:?}");
        ensure!(segs[0] == env.epoch.to_string(), "{name}: epoch");
        ensure!(name.ends_with(&suffix), "{name}");
    }
    ensure!(
        env.page_blob()
            == format!(
                "pages/{org}/{}/{}-{}.json.gz",
                env.epoch,
                env.seq,
                &env.sha256[..16]
            ),
        "page blob {}",
        env.page_blob()
    );
    Ok(())
}

/// The outcome of decoding `text` is consistent: accepted ⇒ safe; newer ⇒ `v` really is a
/// larger integer.
fn decode_is_consistent(text: &str) -> Result<(), String> {
    match Envelope::decode(text) {
        Ok(env) => accepted_is_safe(&env).map_err(|e| format!("{e} (from {text:.200})")),
        Err(DecodeError::NewerVersion(v)) => {
            let raw: Value =
                serde_json::from_str(text).map_err(|e| format!("newer but not JSON: {e}"))?;
            let n = raw["v"]
                .as_u64()
                .ok_or("newer version without an integer v")?;
            ensure!(
                n > 1 && u64::from(v) == n.min(u64::from(u32::MAX)),
                "v {n} reported as {v}"
            );
            Ok(())
        }
        Err(DecodeError::Invalid(reason)) => {
            ensure!(!reason.is_empty(), "empty reason");
            // Bounded by the input (see `invalid_reasons_are_short` for the bound wanted).
            ensure!(
                reason.len() <= 256 + 2 * text.len(),
                "reason of {} bytes: {reason:.300}",
                reason.len()
            );
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

#[test]
fn arbitrary_text_never_panics() {
    check("arbitrary_text_never_panics", 3000, |rng| {
        let text = match rng.random_range(0..4) {
            0 => any_string(rng, 200),
            1 => {
                let bytes: Vec<u8> = (0..rng.random_range(0..300))
                    .map(|_| rng.random())
                    .collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            2 => {
                // A valid envelope cut or spliced at random.
                let t = sample_envelope().to_string();
                let a = rng.random_range(0..t.len());
                let b = rng.random_range(a..=t.len());
                format!("{}{}{}", &t[..a], any_string(rng, 5), &t[b..])
            }
            _ => "[{\"v\":".repeat(rng.random_range(1..3000)),
        };
        decode_is_consistent(&text)
    });
}

#[test]
fn hostile_field_values_are_refused_or_safe() {
    check("hostile_field_values_are_refused_or_safe", 3000, |rng| {
        decode_is_consistent(&hostile_envelope(rng))
    });
}

#[test]
fn valid_envelopes_round_trip() {
    check("valid_envelopes_round_trip", 2000, |rng| {
        let mut org = key_like(rng);
        while !is_dns_ish(&org) {
            org = key_like(rng);
        }
        let created = Utc
            .timestamp_opt(
                rng.random_range(0..253_402_300_799),
                rng.random_range(0..1_000_000_000),
            )
            .single()
            .ok_or("time")?;
        let env = Envelope {
            v: 1,
            org: OrgKey::parse(&org).map_err(|e| e.to_string())?,
            epoch: rng.random(),
            seq: rng.random(),
            sha256: hex_lower(rng, 64),
            events: rng.random(),
            bytes: rng.random(),
            newest_published: rng.random_bool(0.5).then_some(created),
            created,
        };
        let text = env.encode();
        ensure!(text.len() <= MAX_TEXT_LEN, "{} bytes", text.len());
        accepted_is_safe(&env)
    });
}

#[test]
fn org_keys_are_exactly_the_dns_ish_ones() {
    check("org_keys_are_exactly_the_dns_ish_ones", 20_000, |rng| {
        let s = if rng.random_bool(0.8) {
            key_like(rng)
        } else {
            any_string(rng, 30)
        };
        let parsed = OrgKey::parse(&s);
        ensure!(parsed.is_ok() == is_dns_ish(&s), "{s:?}: {parsed:?}");
        if let Ok(k) = parsed {
            ensure!(k.as_str() == s, "normalised {s:?} into {k}");
            for bad in ["/", "\\", "..", "%", " ", "\u{0}"] {
                ensure!(!k.as_str().contains(bad), "{s:?} contains {bad:?}");
            }
            ensure!(
                !k.as_str().starts_with('.') && !k.as_str().ends_with('.'),
                "{s:?}"
            );
            let via_json: Result<OrgKey, _> = serde_json::from_value(json!(s));
            ensure!(
                via_json.as_ref().ok() == Some(&k),
                "serde disagrees on {s:?}"
            );
        } else {
            ensure!(
                serde_json::from_value::<OrgKey>(json!(s)).is_err(),
                "serde accepts {s:?}"
            );
        }
        Ok(())
    });
}

#[test]
fn numbers_in_names_are_plain_digits() {
    check("numbers_in_names_are_plain_digits", 20_000, |rng| {
        let s = match rng.random_range(0..4) {
            0 => rng.random::<u64>().to_string(),
            1 => format!("{}{}", rng.random::<u64>(), rng.random_range(0..10)),
            2 => format!(
                "{}{}",
                NASTY[rng.random_range(0..NASTY.len())],
                rng.random::<u32>()
            ),
            _ => any_string(rng, 22),
        };
        let want = s
            .parse::<u64>()
            .ok()
            .filter(|_| s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()));
        let got = parse_number("seq", &s).ok();
        ensure!(got == want, "{s:?}: got {got:?}, want {want:?}");
        Ok(())
    });
}

#[test]
fn undecodable_record_names_stay_in_their_prefix() {
    check(
        "undecodable_record_names_stay_in_their_prefix",
        20_000,
        |rng| {
            let id = if rng.random_bool(0.5) {
                any_string(rng, 100)
            } else {
                key_like(rng)
            };
            let name = names::undecodable(&id);
            let tail = name
                .strip_prefix(names::UNDECODABLE_PREFIX)
                .and_then(|t| t.strip_suffix(".json"))
                .ok_or_else(|| name.to_string())?;
            ensure!(!tail.is_empty() || id.is_empty(), "{id:?} -> {name}");
            ensure!(
                tail.len() <= 64
                    && tail
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{id:?} -> {name}"
            );
            Ok(())
        },
    );
}

#[test]
fn page_states_from_hostile_bytes_never_panic() {
    check("page_states_from_hostile_bytes_never_panic", 3000, |rng| {
        let mut v = json!({"v": 1, "posted_upto": 5, "failures": 1, "last_error": "x", "updated": "2026-01-01T00:00:00Z"});
        let bytes: Vec<u8> = match rng.random_range(0..3) {
            0 => (0..rng.random_range(0..200))
                .map(|_| rng.random())
                .collect(),
            1 => {
                let f = ["v", "posted_upto", "failures", "last_error", "updated"]
                    [rng.random_range(0..5)];
                v[f] = hostile_value(rng);
                v.to_string().into_bytes()
            }
            _ => vec![b'x'; rng.random_range(60_000..70_000)],
        };
        match PageState::from_bytes(&bytes) {
            Ok(s) => {
                let again = PageState::from_bytes(&s.to_bytes()).map_err(|e| e.to_string())?;
                ensure!(again == s, "round trip");
            }
            Err(e) => ensure!(!e.is_empty(), "empty error"),
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Hand-picked cases
// ---------------------------------------------------------------------------------------------

#[test]
fn path_characters_in_every_field_are_refused() {
    for (field, value) in [
        ("org", json!("../checkpoints")),
        ("org", json!("acme.okta.com/../../checkpoints")),
        ("org", json!("ACME.okta.com")),
        ("org", json!("acme..okta.com")),
        ("org", json!("acme.okta.com.")),
        ("org", json!("acme%2fokta")),
        ("org", json!("acme\u{ff0e}okta")),
        ("epoch", json!("1/../2")),
        ("epoch", json!(-1)),
        ("epoch", json!(1.5)),
        ("epoch", json!(1e30)),
        ("seq", json!("42")),
        ("seq", json!(u64::MAX as f64 * 4.0)),
        ("sha256", json!("../".repeat(22))),
        ("sha256", json!("0123456789ABCDEF".repeat(4))),
        ("sha256", json!("0123456789abcdef".repeat(4) + "0")),
        ("v", json!(0)),
        ("v", json!(1.0)),
        ("v", json!("1")),
        ("v", json!(-1)),
        ("v", Value::Null),
    ] {
        let mut v = sample_envelope();
        v[field] = value.clone();
        assert!(
            matches!(
                Envelope::decode(&v.to_string()),
                Err(DecodeError::Invalid(_))
            ),
            "{field} = {value} accepted or misclassified"
        );
    }
    // A newer version is recognised, whatever its size.
    for v in [2u64, 7, u64::from(u32::MAX), u64::MAX] {
        let mut e = sample_envelope();
        e["v"] = json!(v);
        assert!(
            matches!(
                Envelope::decode(&e.to_string()),
                Err(DecodeError::NewerVersion(_))
            ),
            "{v}"
        );
    }
}

/// A duplicated key must not let a hostile second value through (serde refuses duplicates).
#[test]
fn duplicate_keys_are_refused() {
    let t = sample_envelope().to_string();
    for extra in [
        r#","org":"../checkpoints""#,
        r#","org":"acme.okta.com""#,
        r#","v":2"#,
    ] {
        let text = format!("{}{extra}}}", &t[..t.len() - 1]);
        assert!(Envelope::decode(&text).is_err(), "{text}");
    }
}

/// The length cap is checked before parsing; exactly at the cap is still parsed.
#[test]
fn length_cap() {
    let t = sample_envelope().to_string();
    let pad = MAX_TEXT_LEN - t.len();
    let at_cap = format!("{}{}", " ".repeat(pad), t);
    assert_eq!(at_cap.len(), MAX_TEXT_LEN);
    assert!(Envelope::decode(&at_cap).is_ok());
    assert!(Envelope::decode(&format!(" {at_cap}")).is_err());
}

/// The reason of an invalid envelope is logged at every delivery and stored in the poison
/// record next to the raw text, so it should not echo a hostile value of up to 16 KiB.
///
/// FAILS today: serde's message quotes the whole offending string ("invalid type: string
/// \"xxxx…\", expected u64"). Fix in `common/src/envelope.rs`, `Envelope::decode`: build the
/// `Invalid` reasons through a helper that keeps the first 300 characters (like
/// `org::truncate_for_message` does for names), e.g.
/// `.map_err(|e| DecodeError::Invalid(e.to_string().chars().take(300).collect()))`.
#[test]
fn invalid_reasons_are_short() {
    for field in ["epoch", "seq", "sha256", "created", "org", "v"] {
        let mut v = sample_envelope();
        v[field] = json!("x".repeat(9000));
        match Envelope::decode(&v.to_string()) {
            Err(DecodeError::Invalid(reason)) => {
                assert!(reason.len() <= 512, "{field}: {} bytes", reason.len());
            }
            other => panic!("{field}: {other:?}"),
        }
    }
}
