//! Loading the service app's private key (`OKTA_PRIVATE_KEY`) into a JWT signing key.
//!
//! Okta's admin console hands out the key either as PEM or as a JWK (JSON), and operators
//! convert it with whatever tool is at hand, so all common encodings are accepted: PKCS#8
//! (`PRIVATE KEY`, RSA or EC), PKCS#1 (`RSA PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`), a private
//! JWK, or a JWK Set holding exactly one key. `jsonwebtoken` signs PKCS#1 RSA and PKCS#8 EC
//! DER, so the other forms are re-encoded here with a minimal DER writer.
//!
//! Why a DER writer of our own (issue 10 asked to replace it or say why not): the one crate that
//! builds an RSA key from JWK components and writes PKCS#1 is `rsa`, a second, pure-Rust RSA
//! implementation beside aws-lc, pulled in only to re-encode; the writer here is three small
//! functions (a TLV, an unsigned INTEGER, the two wrappers), and every input form is tested by
//! signing with it and verifying with `jsonwebtoken`. The DPoP key no longer goes through it:
//! aws-lc-rs generates that one as PKCS#8 (`okta/dpop.rs`).
//!
//! Errors describe the *shape* of the problem only; key material never appears in them.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::Deserialize;

/// Why a private key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("private key: {0}")]
pub struct KeyError(pub String);

fn err(msg: impl Into<String>) -> KeyError {
    KeyError(msg.into())
}

/// A key ready to sign client assertions.
#[derive(Clone)]
pub struct SigningKey {
    pub alg: Algorithm,
    pub key: EncodingKey,
    /// `kid` found in a JWK, used when `OKTA_KEY_ID` is not set.
    pub jwk_kid: Option<String>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("jwk_kid", &self.jwk_kid)
            .finish_non_exhaustive()
    }
}

// DER encodings of the object identifiers involved (tag, length and value).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];

/// Parses a private key given as PEM or JWK JSON.
pub fn load_signing_key(text: &str) -> Result<SigningKey, KeyError> {
    let trimmed = text.trim();
    let key = if trimmed.starts_with('{') {
        from_jwk_json(trimmed)?
    } else if trimmed.starts_with("-----BEGIN") {
        from_pem(trimmed)?
    } else {
        return Err(err(
            "expected a PEM block (-----BEGIN PRIVATE KEY-----) or a JWK (JSON object)",
        ));
    };
    // Sign once now: a key that parses but cannot sign should fail at start-up, clearly,
    // not on the first token request.
    jsonwebtoken::crypto::sign(b"probe", &key.key, key.alg)
        .map_err(|e| err(format!("cannot sign with this {:?} key: {e}", key.alg)))?;
    Ok(key)
}

fn from_pem(text: &str) -> Result<SigningKey, KeyError> {
    let (label, der) = pem_block(text)?;
    let sign = |alg, key| SigningKey {
        alg,
        key,
        jwk_kid: None,
    };
    match label.as_str() {
        "RSA PRIVATE KEY" => Ok(sign(Algorithm::RS256, EncodingKey::from_rsa_der(&der))),
        "EC PRIVATE KEY" => {
            let (alg, curve_oid) = ec_curve(&der)?;
            Ok(sign(
                alg,
                EncodingKey::from_ec_der(&pkcs8_from_sec1(curve_oid, &der)),
            ))
        }
        "PRIVATE KEY" => {
            if contains(&der, OID_RSA) {
                let key = EncodingKey::from_rsa_pem(text.as_bytes())
                    .map_err(|e| err(format!("PKCS#8 RSA key not readable: {e}")))?;
                Ok(sign(Algorithm::RS256, key))
            } else if contains(&der, OID_EC_PUBLIC_KEY) {
                let (alg, _) = ec_curve(&der)?;
                Ok(sign(alg, EncodingKey::from_ec_der(&der)))
            } else {
                Err(err("PKCS#8 key is neither RSA nor EC"))
            }
        }
        "ENCRYPTED PRIVATE KEY" => Err(err(
            "encrypted PKCS#8 keys are not supported; store the key unencrypted in Key Vault",
        )),
        "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE" => {
            Err(err(format!("got a {label}, but the private key is needed")))
        }
        _ => Err(err(format!("unsupported PEM label {label:?}"))),
    }
}

/// The first PEM block: its label and decoded bytes.
fn pem_block(text: &str) -> Result<(String, Vec<u8>), KeyError> {
    let mut lines = text.lines().map(str::trim);
    let label = lines
        .next()
        .and_then(|l| l.strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or_else(|| err("malformed PEM header line"))?
        .to_string();
    let end = format!("-----END {label}-----");
    let mut b64 = String::new();
    for line in lines.by_ref() {
        if line == end {
            let der = STANDARD
                .decode(b64.as_bytes())
                .map_err(|_| err("PEM body is not valid base64"))?;
            return Ok((label, der));
        }
        if line.contains(':') {
            // RFC 1421 headers (Proc-Type, DEK-Info) mean an encrypted legacy key.
            return Err(err("encrypted PEM keys are not supported"));
        }
        b64.push_str(line);
    }
    Err(err(format!("PEM block {label:?} has no END line")))
}

/// Curve of an EC key, found by its OID in the DER (PKCS#8 algorithm parameters or SEC1
/// `[0] parameters`).
fn ec_curve(der: &[u8]) -> Result<(Algorithm, &'static [u8]), KeyError> {
    if contains(der, OID_P256) {
        Ok((Algorithm::ES256, OID_P256))
    } else if contains(der, OID_P384) {
        Ok((Algorithm::ES384, OID_P384))
    } else {
        Err(err(
            "EC key must be on P-256 or P-384 (with its curve named in the key)",
        ))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct PrivateJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    // RSA
    n: Option<String>,
    e: Option<String>,
    d: Option<String>,
    p: Option<String>,
    q: Option<String>,
    dp: Option<String>,
    dq: Option<String>,
    qi: Option<String>,
    // EC (d shared with RSA)
    x: Option<String>,
    y: Option<String>,
}

fn from_jwk_json(text: &str) -> Result<SigningKey, KeyError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| err(format!("JWK is not valid JSON: {e}")))?;
    let value = if value.get("keys").is_some() {
        let set: JwkSet =
            serde_json::from_value(value).map_err(|_| err("JWK Set has no \"keys\" array"))?;
        match <[serde_json::Value; 1]>::try_from(set.keys) {
            Ok([one]) => one,
            Err(_) => return Err(err("JWK Set must hold exactly one key")),
        }
    } else {
        value
    };
    let jwk: PrivateJwk =
        serde_json::from_value(value).map_err(|_| err("JWK members have unexpected types"))?;
    let field = |v: &Option<String>, name: &str| -> Result<Vec<u8>, KeyError> {
        let s = v
            .as_deref()
            .ok_or_else(|| err(format!("JWK lacks \"{name}\" (a private JWK is needed)")))?;
        URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('=').as_bytes())
            .map_err(|_| err(format!("JWK \"{name}\" is not base64url")))
    };
    match jwk.kty.as_str() {
        "RSA" => {
            let parts = [
                (&jwk.n, "n"),
                (&jwk.e, "e"),
                (&jwk.d, "d"),
                (&jwk.p, "p"),
                (&jwk.q, "q"),
                (&jwk.dp, "dp"),
                (&jwk.dq, "dq"),
                (&jwk.qi, "qi"),
            ];
            let mut body = der_uint(&[0]);
            for (v, name) in parts {
                body.extend(der_uint(&field(v, name)?));
            }
            let alg = match jwk.alg.as_deref() {
                None | Some("RS256") => Algorithm::RS256,
                Some("RS384") => Algorithm::RS384,
                Some("RS512") => Algorithm::RS512,
                Some(other) => return Err(err(format!("unsupported RSA JWK alg {other:?}"))),
            };
            Ok(SigningKey {
                alg,
                key: EncodingKey::from_rsa_der(&der(0x30, &body)),
                jwk_kid: jwk.kid,
            })
        }
        "EC" => {
            let (alg, curve_oid, size) = match jwk.crv.as_deref() {
                Some("P-256") => (Algorithm::ES256, OID_P256, 32),
                Some("P-384") => (Algorithm::ES384, OID_P384, 48),
                other => return Err(err(format!("unsupported EC JWK curve {other:?}"))),
            };
            let d = left_pad(&field(&jwk.d, "d")?, size)?;
            let mut point = vec![0x04];
            point.extend(left_pad(&field(&jwk.x, "x")?, size)?);
            point.extend(left_pad(&field(&jwk.y, "y")?, size)?);
            let sec1 = sec1_private_key(&d, Some(&point));
            Ok(SigningKey {
                alg,
                key: EncodingKey::from_ec_der(&pkcs8_from_sec1(curve_oid, &sec1)),
                jwk_kid: jwk.kid,
            })
        }
        other => Err(err(format!("unsupported JWK kty {other:?} (RSA or EC)"))),
    }
}

fn left_pad(bytes: &[u8], size: usize) -> Result<Vec<u8>, KeyError> {
    if bytes.len() > size {
        return Err(err("EC JWK coordinate longer than the curve allows"));
    }
    let mut v = vec![0; size - bytes.len()];
    v.extend_from_slice(bytes);
    Ok(v)
}

/// SEC1 `ECPrivateKey` (RFC 5915) with the optional public key, without parameters (they
/// live in the PKCS#8 wrapper).
fn sec1_private_key(d: &[u8], public_point: Option<&[u8]>) -> Vec<u8> {
    let mut body = der_uint(&[1]);
    body.extend(der(0x04, d));
    if let Some(point) = public_point {
        let mut bits = vec![0x00]; // no unused bits
        bits.extend_from_slice(point);
        body.extend(der(0xa1, &der(0x03, &bits)));
    }
    der(0x30, &body)
}

/// PKCS#8 `PrivateKeyInfo` wrapping a SEC1 key on the given curve.
fn pkcs8_from_sec1(curve_oid: &[u8], sec1: &[u8]) -> Vec<u8> {
    let mut alg_id = OID_EC_PUBLIC_KEY.to_vec();
    alg_id.extend_from_slice(curve_oid);
    let mut body = der_uint(&[0]);
    body.extend(der(0x30, &alg_id));
    body.extend(der(0x04, sec1));
    der(0x30, &body)
}

/// One DER TLV.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A DER INTEGER holding the unsigned big-endian value `bytes`.
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let mut v = Vec::with_capacity(bytes.len() + 1);
    let digits = &bytes[skip..];
    if digits.first().is_none_or(|b| b & 0x80 != 0) {
        v.push(0);
    }
    v.extend_from_slice(digits);
    der(0x02, &v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_and_integers() {
        assert_eq!(der(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = der(0x04, &[0; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(der_uint(&[0]), vec![0x02, 1, 0]);
        assert_eq!(der_uint(&[0, 0, 0x7f]), vec![0x02, 1, 0x7f]);
        assert_eq!(der_uint(&[0x80]), vec![0x02, 2, 0, 0x80]);
    }

    use jsonwebtoken::{decode, DecodingKey, Validation};

    const RSA_PUBLIC: &str = include_str!("test_keys/rsa_public.pem");
    const EC_PUBLIC: &str = include_str!("test_keys/ec_public.pem");

    /// Signs a JWT with the loaded key and verifies it with the public key.
    fn signs_verifiably(private: &str, public: &str, alg: Algorithm, kid: Option<&str>) {
        let k = load_signing_key(private).unwrap();
        assert_eq!(k.alg, alg);
        assert_eq!(k.jwk_kid.as_deref(), kid);
        let claims = serde_json::json!({"sub": "x", "exp": 4_000_000_000u64});
        let jwt = jsonwebtoken::encode(&jsonwebtoken::Header::new(k.alg), &claims, &k.key).unwrap();
        let dk = match alg {
            Algorithm::ES256 => DecodingKey::from_ec_pem(public.as_bytes()),
            _ => DecodingKey::from_rsa_pem(public.as_bytes()),
        }
        .unwrap();
        let got = decode::<serde_json::Value>(&jwt, &dk, &Validation::new(alg)).unwrap();
        assert_eq!(got.claims["sub"], "x");
    }

    #[test]
    fn every_rsa_encoding_signs() {
        for private in [
            include_str!("test_keys/rsa_pkcs1.pem"),
            include_str!("test_keys/rsa_pkcs8.pem"),
        ] {
            signs_verifiably(private, RSA_PUBLIC, Algorithm::RS256, None);
        }
        let jwk = include_str!("test_keys/rsa_private.jwk");
        signs_verifiably(jwk, RSA_PUBLIC, Algorithm::RS256, Some("test-rsa-kid"));
        let set = format!(r#"{{"keys":[{jwk}]}}"#);
        signs_verifiably(&set, RSA_PUBLIC, Algorithm::RS256, Some("test-rsa-kid"));
    }

    #[test]
    fn every_ec_encoding_signs() {
        for private in [
            include_str!("test_keys/ec_sec1.pem"),
            include_str!("test_keys/ec_pkcs8.pem"),
        ] {
            signs_verifiably(private, EC_PUBLIC, Algorithm::ES256, None);
        }
        let jwk = include_str!("test_keys/ec_private.jwk");
        signs_verifiably(jwk, EC_PUBLIC, Algorithm::ES256, Some("test-ec-kid"));
    }

    #[test]
    fn a_public_jwk_is_not_enough() {
        let jwk: serde_json::Value =
            serde_json::from_str(include_str!("test_keys/ec_private.jwk")).unwrap();
        let mut public = jwk.clone();
        public.as_object_mut().unwrap().remove("d");
        let e = load_signing_key(&public.to_string()).unwrap_err();
        assert!(e.0.contains("\"d\""), "{e}");
        let e = load_signing_key(RSA_PUBLIC).unwrap_err();
        assert!(e.0.contains("PUBLIC KEY"), "{e}");
    }

    #[test]
    fn rejects_garbage_without_echoing_it() {
        for bad in [
            "SUPERSECRETgarbage",
            "-----BEGIN PRIVATE KEY-----\nSUPERSECRET!!\n-----END PRIVATE KEY-----",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
            r#"{"kty":"RSA","n":"SUPERSECRET"}"#,
            r#"{"kty":"oct","k":"SUPERSECRET"}"#,
            r#"{"keys":[]}"#,
        ] {
            let e = load_signing_key(bad).unwrap_err();
            assert!(!e.to_string().contains("SUPERSECRET"), "{e}");
        }
    }
}
