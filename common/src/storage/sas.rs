//! Account SAS signed in process with the account key.
//!
//! The Azure SDK 1.x crates have no SharedKey auth (docs/azure-sdk-notes.md §Q2): a client either
//! carries a bearer credential (https only) or has a SAS already in its URL. For Azurite and
//! other account-key setups we mint an account SAS ourselves, valid for [`SAS_VALIDITY`], and
//! the client set is rebuilt with a fresh one after [`SAS_REFRESH_AFTER`], long before expiry.

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::StorageError;
use crate::secrets::SecretString;

/// Service version the SAS is signed for. 2020-12-06 and later add the encryption-scope line
/// to the string to sign.
pub const SAS_VERSION: &str = "2021-08-06";
/// How long a minted SAS is valid.
pub const SAS_VALIDITY: Duration = Duration::from_secs(60 * 60);
/// When clients are rebuilt with a new SAS: half-way through, so a slow request started just
/// before the refresh still finishes with a valid signature.
pub const SAS_REFRESH_AFTER: Duration = Duration::from_secs(30 * 60);
/// Start time back-dated for clock skew between us and the service.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// Signs account SAS tokens for one account.
#[derive(Clone, Debug)]
pub struct AccountSasSigner {
    account: String,
    /// The decoded account key (bytes), never printed.
    key: SecretBytes,
    /// `https,http` for loopback endpoints (Azurite over http), `https` otherwise.
    allow_http: bool,
}

#[derive(Clone)]
struct SecretBytes(Vec<u8>);

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl AccountSasSigner {
    /// `key` is the base64 account key as it appears in connection strings.
    pub fn new(
        account: &str,
        key: &SecretString,
        allow_http: bool,
    ) -> Result<AccountSasSigner, StorageError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.expose().trim())
            .map_err(|_| {
                StorageError::Config(
                    "the AccountKey in AZURE_STORAGE_CONNECTION_STRING is not valid base64".into(),
                )
            })?;
        if bytes.is_empty() {
            return Err(StorageError::Config(
                "the AccountKey in AZURE_STORAGE_CONNECTION_STRING is empty".into(),
            ));
        }
        Ok(AccountSasSigner {
            account: account.to_owned(),
            key: SecretBytes(bytes),
            allow_http,
        })
    }

    /// A SAS query string (no leading `?`) for blob and queue, all resource types, the
    /// permissions this project uses, valid from `now - skew` to `now + SAS_VALIDITY`.
    pub fn sign(&self, now: DateTime<Utc>) -> Result<String, StorageError> {
        let to_chrono = |d: Duration| {
            chrono::Duration::from_std(d)
                .map_err(|_| StorageError::Config("SAS duration out of range".into()))
        };
        let st = fmt_time(now - to_chrono(CLOCK_SKEW)?);
        let se = fmt_time(now + to_chrono(SAS_VALIDITY)?);
        let (sp, ss, srt) = ("rwdlacup", "bq", "sco");
        let spr = if self.allow_http {
            "https,http"
        } else {
            "https"
        };
        let string_to_sign = format!(
            "{}\n{sp}\n{ss}\n{srt}\n{st}\n{se}\n\n{spr}\n{SAS_VERSION}\n\n",
            self.account
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key.0)
            .map_err(|_| StorageError::Config("account key unusable for HMAC".into()))?;
        mac.update(string_to_sign.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        Ok(url::form_urlencoded::Serializer::new(String::new())
            .append_pair("sv", SAS_VERSION)
            .append_pair("ss", ss)
            .append_pair("srt", srt)
            .append_pair("sp", sp)
            .append_pair("st", &st)
            .append_pair("se", &se)
            .append_pair("spr", spr)
            .append_pair("sig", &sig)
            .finish())
    }
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `url` with `sas` as its query (storage URLs carry no other query).
pub(crate) fn with_sas(url: &url::Url, sas: &str) -> url::Url {
    let mut u = url.clone();
    u.set_query(Some(sas));
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The well-known Azurite key (public, documented by Microsoft).
    const DEV_KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    #[test]
    fn signature_matches_a_known_vector() {
        let signer =
            AccountSasSigner::new("devstoreaccount1", &SecretString::new(DEV_KEY), true).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let q = signer.sign(now).unwrap();
        let pairs: std::collections::HashMap<_, _> = url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(pairs["sv"], "2021-08-06");
        assert_eq!(pairs["st"], "2026-01-02T02:59:05Z");
        assert_eq!(pairs["se"], "2026-01-02T04:04:05Z");
        assert_eq!(pairs["spr"], "https,http");
        // Independent recomputation of the documented string to sign.
        let sts = "devstoreaccount1\nrwdlacup\nbq\nsco\n2026-01-02T02:59:05Z\n2026-01-02T04:04:05Z\n\nhttps,http\n2021-08-06\n\n";
        let key = base64::engine::general_purpose::STANDARD
            .decode(DEV_KEY)
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(sts.as_bytes());
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(pairs["sig"], expected);
    }

    #[test]
    fn https_only_for_remote_and_key_never_printed() {
        let signer = AccountSasSigner::new("acct", &SecretString::new(DEV_KEY), false).unwrap();
        assert!(signer.sign(Utc::now()).unwrap().contains("spr=https&"));
        assert!(!format!("{signer:?}").contains("Eby8"));
        let bad =
            AccountSasSigner::new("acct", &SecretString::new("%%%not-base64"), false).unwrap_err();
        assert!(!bad.to_string().contains("not-base64"));
    }
}
