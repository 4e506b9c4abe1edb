//! DPoP proofs (RFC 9449) for apps with "Require DPoP header in token requests".
//!
//! Okta binds a DPoP access token to the public key that signed the token request's proof
//! (`cnf.jkt`); every later request must carry a fresh proof signed by the same key. The key
//! is an ES256 pair generated once per process and never stored: losing it only means asking
//! for a new token.
//!
//! The key is made without an extra crypto crate: a random scalar below the P-256 group order
//! wrapped as PKCS#8 without its public point; `jsonwebtoken`'s aws-lc backend derives the
//! public point when it loads the key, and [`Jwk::from_encoding_key`] reads it back out.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use url::Url;

use super::keys::{pkcs8_from_sec1, sec1_private_key, KeyError, P256};

/// Order `n` of the P-256 group, big-endian: a private scalar must be in `1..n`.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// The process's DPoP key pair.
#[derive(Clone)]
pub struct DpopKey {
    key: EncodingKey,
    /// Public part only (`kty`, `crv`, `x`, `y`), as sent in every proof header.
    jwk: Jwk,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("jkt", &self.thumbprint())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct ProofClaims<'a> {
    jti: String,
    htm: &'a str,
    htu: String,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
}

impl DpopKey {
    /// A fresh ES256 key pair.
    pub fn generate() -> Result<Self, KeyError> {
        let mut rng = rand::rng();
        let mut d = [0u8; 32];
        // A uniformly random 256-bit value is ≥ n with probability ≈ 2⁻³², so this loop runs
        // once in practice; it is bounded anyway.
        for _ in 0..64 {
            rng.fill_bytes(&mut d);
            if d.iter().any(|b| *b != 0) && d < P256_ORDER {
                return Self::from_scalar(&d);
            }
        }
        Err(KeyError("could not draw a DPoP key".into()))
    }

    fn from_scalar(d: &[u8; 32]) -> Result<Self, KeyError> {
        let der = pkcs8_from_sec1(P256, &sec1_private_key(d, None));
        let key = EncodingKey::from_ec_der(&der);
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256)
            .map_err(|e| KeyError(format!("DPoP key unusable: {e}")))?;
        jwk.common = jsonwebtoken::jwk::CommonParameters::default();
        Ok(Self { key, jwk })
    }

    /// The public JWK sent in proofs.
    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// RFC 7638 SHA-256 thumbprint of the public key (what Okta puts in `cnf.jkt`).
    pub fn thumbprint(&self) -> String {
        self.jwk.thumbprint(ThumbprintHash::SHA256)
    }

    /// A proof for one request: `htm` method, `htu` the URL without query and fragment
    /// (RFC 9449 §4.2), `nonce` when the server gave one, `ath` bound to the access token
    /// when one is sent with the request.
    pub fn proof(
        &self,
        htm: &str,
        url: &Url,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(self.jwk.clone());
        let claims = ProofClaims {
            jti: uuid::Uuid::new_v4().to_string(),
            htm,
            htu: htu(url),
            iat: chrono::Utc::now().timestamp(),
            nonce,
            ath: access_token.map(ath),
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| KeyError(format!("cannot sign a DPoP proof: {e}")))
    }
}

/// `htu`: the request URL without query and fragment.
pub fn htu(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// `ath`: base64url(SHA-256(access token)).
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};

    #[test]
    fn proofs_verify_with_the_embedded_key() {
        let k = DpopKey::generate().unwrap();
        let url =
            Url::parse("https://acme.okta.com/api/v1/logs?after=1_2&limit=1000#frag").unwrap();
        let p = k.proof("GET", &url, Some("n-1"), Some("tok")).unwrap();
        let h = decode_header(&p).unwrap();
        assert_eq!(h.typ.as_deref(), Some("dpop+jwt"));
        assert_eq!(h.alg, Algorithm::ES256);
        let jwk = h.jwk.unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        let data =
            decode::<serde_json::Value>(&p, &DecodingKey::from_jwk(&jwk).unwrap(), &v).unwrap();
        let c = data.claims;
        assert_eq!(c["htm"], "GET");
        assert_eq!(c["htu"], "https://acme.okta.com/api/v1/logs");
        assert_eq!(c["nonce"], "n-1");
        assert_eq!(c["ath"], ath("tok"));
        assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()));
        assert!(c["iat"].as_i64().is_some());
        // No private part in the header.
        assert!(serde_json::to_value(&jwk).unwrap().get("d").is_none());
        assert_eq!(jwk.thumbprint(ThumbprintHash::SHA256), k.thumbprint());
    }

    #[test]
    fn token_request_proof_has_no_ath_or_nonce_unless_given() {
        let k = DpopKey::generate().unwrap();
        let url = Url::parse("https://acme.okta.com/oauth2/v1/token").unwrap();
        let p = k.proof("POST", &url, None, None).unwrap();
        let payload = p.split('.').nth(1).unwrap();
        let c: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert!(c.get("ath").is_none() && c.get("nonce").is_none());
        assert_eq!(c["htu"], "https://acme.okta.com/oauth2/v1/token");
    }

    #[test]
    fn keys_differ_per_generation() {
        let a = DpopKey::generate().unwrap();
        let b = DpopKey::generate().unwrap();
        assert_ne!(a.thumbprint(), b.thumbprint());
    }

    #[test]
    fn ath_is_base64url_sha256() {
        // SHA-256("abc") = ba7816bf…
        assert_eq!(ath("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
    }
}
