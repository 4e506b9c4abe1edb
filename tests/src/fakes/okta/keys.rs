//! Test keys and client-side JWT helpers for the fake's OAuth service app.
//!
//! Tests need a key pair for `private_key_jwt` and DPoP. rcgen (ring backend here) cannot
//! generate RSA keys, so the RSA pair is a fixed 2048-bit key made for these tests only;
//! the P-256 pair is generated fresh by rcgen. The helpers sign exactly what Okta expects
//! (`docs/contracts.md` §1.8), so tests can drive the fake without the collector.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use sha2::{Digest, Sha256};

/// A fixed RSA test key (PKCS#8). Not a secret: it exists only for local tests.
const TEST_RSA_PRIVATE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCeS/Uef3cG3uJ2\n\
dyxEcfFtk/jFsJtPjCfmPRry9em1q4FUEfO0xQEwx9OibJi08Y8qNrw3+6fOB1C4\n\
Evk2//HS2xYd/Ab2kMiWC9FXyiWjg8yWDGg7YthxS+rjz3QPgUElVowyuSvmQzWp\n\
arfds6mLYPk838QrCrY+Nw5wy5hqQSKbKTJ85wTNGBrKKXF4vs2SEECxTTLEpoK6\n\
SSr4+qOw5f1m0S2MpWF8fdBVoi2LAdCSHqAItPw5PdTqtE5hCyTAU9Fq9/qVVtUq\n\
vuGZcZOTiYpj4ytOoBWt7v/n3blpcL1aAZyBmvOHcj895lqnXuTOSiIms68JeWfU\n\
xh52d1+dAgMBAAECggEAIpzFOifw5MWziue//C9V9PnX+ZIGQ7yHtOZDkECJG7om\n\
izVprmstOXdYJTnNojL3dOmG+k7CgGBFHBq593a7b7mL+n5zH1LFKVnoKmP/GuPk\n\
xiJsYB/a59sLv0hLPmCq1/k2qpimqrCjeSnmjkmMlvdbSB49jJPJCY2MUMmTyBeh\n\
vexxsep8Ut+YFtC5uHwgDKksGocssWFPi8kutNdNzQyj10Uracm0g8exzL3LUTwd\n\
DmhQlpg37CkF9kIqOuto57jx1FXKhN/9/bm83TJtb6ZLReoxwWlyVztvF6CariJt\n\
93by7VAlAJdyvffmvr5LYAHitQkhgEITUQLwFGnxWQKBgQDWZvIuiWc1ijUnqUVj\n\
4BdFm6avifb7S8hqemZbjRjUtW8eCuZVhfPbcfI8i3SYv3GVDaONYbRy4dIbkzcs\n\
81Hy6t9sx+0llHRaU41ZEP7R20LXh8L3gyojHN3NuDt6SKnIGdPYZmQ28J4jOIX2\n\
d/kvq434bJbOGKEId74cqnQCFwKBgQC9AlVkYMGMEOcc435SiDjCy2iEZ1c7JHB1\n\
+8XlgG0a+Nkl0ZdnY/Znd1ZG217+ZHWAdzNh2QtabBdUT/KZfsXPak4ru6qiOGYX\n\
RKw3jcjaVf1myeCufvqLDAP4bbyS1BUYlrv/RO0qHzLyXwJ7bvDoFIcp7Meefs4X\n\
EFDpMOmAawKBgFTNj0k86+fPbMrtNxcUEeBken/AMEKhbPpAw6++lW28/eCCKyz0\n\
uMm5vjiYaFvqjUCJjoFjff5at8JUbmSHMYjFwe3C/lf46jS4C5aJFGFpOn0Jo+JG\n\
rSoKRukRz+TETPNq09IqXcUlU0dXGhWsypFCZ/s06ElIkJlK05V/DjetAoGBAIg3\n\
plMxaEwJ4oZvbhsNEdtRvYGu+K8nE+X0DivY4skNj3IyG2voHy1yVDu83jl5LTXo\n\
sp9STVxdinK5K550Pxu9AZmDJvbCrtEWLQfcp2SzlG0AEW2xFeAgSLxCWiV3s7yE\n\
5fiTNFmnIpCK6L8MtZKNONx+SV9xBBabK7TkC2UBAoGAfChsSPkJvl1oPXVOV+iF\n\
Sb/VjgGvECsm2W6x7+ZebgPM3wxa2fyzRJ0LLNxPolmdO4MIW034uqvjOvbYGrEM\n\
F5Pb3lI08aaDfXnTHIlXqY4AZ83bkIRBLlJKbCACc49wo8f8kA/VO4APCqf0heTm\n\
YRFVszIoCGGy5PEMiNt/9YQ=\n\
-----END PRIVATE KEY-----\n\
";

const TEST_RSA_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAnkv1Hn93Bt7idncsRHHx\n\
bZP4xbCbT4wn5j0a8vXptauBVBHztMUBMMfTomyYtPGPKja8N/unzgdQuBL5Nv/x\n\
0tsWHfwG9pDIlgvRV8olo4PMlgxoO2LYcUvq4890D4FBJVaMMrkr5kM1qWq33bOp\n\
i2D5PN/EKwq2PjcOcMuYakEimykyfOcEzRgayilxeL7NkhBAsU0yxKaCukkq+Pqj\n\
sOX9ZtEtjKVhfH3QVaItiwHQkh6gCLT8OT3U6rROYQskwFPRavf6lVbVKr7hmXGT\n\
k4mKY+MrTqAVre7/5925aXC9WgGcgZrzh3I/PeZap17kzkoiJrOvCXln1MYedndf\n\
nQIDAQAB\n\
-----END PUBLIC KEY-----\n\
";

/// `(private PKCS#8 PEM, public SPKI PEM)` of the fixed RSA test key (use with RS256).
pub fn test_rsa_key_pem() -> (String, String) {
    (
        TEST_RSA_PRIVATE_PEM.to_string(),
        TEST_RSA_PUBLIC_PEM.to_string(),
    )
}

/// A fresh P-256 key pair as `(private PKCS#8 PEM, public SPKI PEM)` (use with ES256).
pub fn test_ec_key_pem() -> Result<(String, String), rcgen::Error> {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    Ok((kp.serialize_pem(), kp.public_key_pem()))
}

fn encoding_key(private_pem: &str, alg: Algorithm) -> jsonwebtoken::errors::Result<EncodingKey> {
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(private_pem.as_bytes()),
        _ => EncodingKey::from_rsa_pem(private_pem.as_bytes()),
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A `private_key_jwt` client assertion: `iss` = `sub` = `client_id`, `aud` = `token_url`,
/// a fresh `jti`, expiring in `ttl_secs`.
pub fn client_assertion(
    private_pem: &str,
    alg: Algorithm,
    client_id: &str,
    token_url: &str,
    ttl_secs: i64,
) -> jsonwebtoken::errors::Result<String> {
    let t = now();
    let claims = json!({
        "iss": client_id, "sub": client_id, "aud": token_url,
        "iat": t, "exp": t + ttl_secs, "jti": uuid::Uuid::new_v4().to_string(),
    });
    encode(&Header::new(alg), &claims, &encoding_key(private_pem, alg)?)
}

/// base64url(SHA-256(access token)): the `ath` claim of a resource DPoP proof.
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// A DPoP proof (RFC 9449) signed with `private_pem`, carrying its public JWK.
/// `htu` must be the URL without query; `access_token` adds `ath` (resource requests).
pub fn dpop_proof(
    private_pem: &str,
    alg: Algorithm,
    htm: &str,
    htu: &str,
    nonce: Option<&str>,
    access_token: Option<&str>,
) -> jsonwebtoken::errors::Result<String> {
    let key = encoding_key(private_pem, alg)?;
    let mut header = Header::new(alg);
    header.typ = Some("dpop+jwt".into());
    header.jwk = Some(Jwk::from_encoding_key(&key, alg)?);
    let mut claims = json!({
        "htm": htm, "htu": htu, "iat": now(), "jti": uuid::Uuid::new_v4().to_string(),
    });
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    if let Some(t) = access_token {
        claims["ath"] = json!(access_token_hash(t));
    }
    encode(&header, &claims, &key)
}
