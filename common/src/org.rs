//! The normalised org key and the blob names built from it.
//!
//! Everything the pipeline stores for an org lives under names derived from its key, so the
//! key (and every epoch or sequence read back from storage or an envelope) is validated
//! strictly before it becomes part of a blob name: a hostile envelope naming
//! `../checkpoints` must not reach another prefix.

use std::fmt;

use url::Url;

/// The normalised key of an Okta org: the lower-case host without scheme or trailing dot, plus
/// `-{port}` when the port is not the scheme's default (two local fakes on 127.0.0.1 differ).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct OrgKey(String);

/// Why a name read back from storage or an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("org key `{0}` is not a DNS name of [a-z0-9-] labels")]
    OrgKey(String),
    #[error("{what} `{value}` is not a non-negative integer")]
    Number { what: &'static str, value: String },
}

const MAX_KEY_LEN: usize = 253 + 6;

impl OrgKey {
    /// Derives the key from an org origin.
    pub fn from_origin(origin: &Url) -> Result<OrgKey, NameError> {
        let host = origin
            .host_str()
            .unwrap_or_default()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let key = match origin.port() {
            // `Url::port` is None when the port is the scheme's default.
            Some(p) => format!("{host}-{p}"),
            None => host,
        };
        OrgKey::parse(&key)
    }

    /// Validates a key read back from storage or an envelope.
    pub fn parse(s: &str) -> Result<OrgKey, NameError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_KEY_LEN
            && s.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if ok {
            Ok(OrgKey(s.to_string()))
        } else {
            Err(NameError::OrgKey(truncate_for_message(s)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key with dots as dashes, as used in default Key Vault secret names
    /// (Key Vault names allow only alphanumerics and dashes).
    pub fn dashed(&self) -> String {
        self.0.replace('.', "-")
    }
}

impl fmt::Display for OrgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for OrgKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OrgKey::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn truncate_for_message(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Parses an epoch or sequence number that is part of a blob name.
pub fn parse_number(what: &'static str, s: &str) -> Result<u64, NameError> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::Number {
            what,
            value: truncate_for_message(s),
        });
    }
    s.parse().map_err(|_| NameError::Number {
        what,
        value: truncate_for_message(s),
    })
}

/// Blob names of docs/design.md §2, all inside `OKTA_CONTAINER`.
pub mod names {
    use super::OrgKey;

    /// The leader lease blob of an org.
    pub fn leader(org: &OrgKey) -> String {
        format!("leader/{org}")
    }
    /// The checkpoint of an org.
    pub fn checkpoint(org: &OrgKey) -> String {
        format!("checkpoints/{org}.json")
    }
    /// An immutable, content-addressed page (`sha256_hex` of the stored gzip bytes).
    pub fn page(org: &OrgKey, epoch: u64, seq: u64, sha256_hex: &str) -> String {
        let short = sha256_hex.get(..16).unwrap_or(sha256_hex);
        format!("pages/{org}/{epoch}/{seq}-{short}.json.gz")
    }
    /// Prefix of every page of an org.
    pub fn pages_prefix(org: &OrgKey) -> String {
        format!("pages/{org}/")
    }
    /// The shipper's progress for one page.
    pub fn state(org: &OrgKey, epoch: u64, seq: u64) -> String {
        format!("state/{org}/{epoch}/{seq}.json")
    }
    /// Prefix of every page state of an org.
    pub fn state_prefix(org: &OrgKey) -> String {
        format!("state/{org}/")
    }
    /// The marker of a page that was shipped completely.
    pub fn done(org: &OrgKey, epoch: u64, seq: u64) -> String {
        format!("done/{org}/{epoch}/{seq}")
    }
    /// Prefix of every done marker of an org.
    pub fn done_prefix(org: &OrgKey) -> String {
        format!("done/{org}/")
    }
    /// Prefix of every poison record of an org's pages.
    pub fn poison_prefix(org: &OrgKey) -> String {
        format!("poison/{org}/")
    }
    /// The poison record of a page.
    pub fn poison(org: &OrgKey, epoch: u64, seq: u64) -> String {
        format!("poison/{org}/{epoch}/{seq}.json")
    }
    /// Prefix of all poison records.
    pub const POISON_PREFIX: &str = "poison/";
    /// Prefix of the poison records of messages without a page identity.
    pub const UNDECODABLE_PREFIX: &str = "poison/_undecodable/";
    /// The poison record of a message that could not be decoded. Queue message ids are
    /// GUIDs; anything else is replaced so the name stays inside its prefix.
    pub fn undecodable(message_id: &str) -> String {
        let safe: String = message_id
            .chars()
            .take(64)
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{UNDECODABLE_PREFIX}{safe}.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_origins() {
        let k = |s: &str| {
            OrgKey::from_origin(&Url::parse(s).unwrap())
                .unwrap()
                .to_string()
        };
        assert_eq!(k("https://Acme.Okta.com."), "acme.okta.com");
        assert_eq!(k("https://acme.okta.com:443"), "acme.okta.com");
        assert_eq!(k("https://acme.okta.com:8443"), "acme.okta.com-8443");
        assert_eq!(k("http://127.0.0.1:38211"), "127.0.0.1-38211");
        assert_eq!(
            OrgKey::parse("acme.okta.com").unwrap().dashed(),
            "acme-okta-com"
        );
    }

    #[test]
    fn hostile_names_are_refused() {
        for bad in [
            "",
            "../checkpoints",
            "a..b",
            "a/b",
            "A.com",
            "a.com/",
            ".a",
            "a b",
            "ok\u{0}",
        ] {
            assert!(OrgKey::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(serde_json::from_str::<OrgKey>("\"../x\"").is_err());
        assert!(parse_number("seq", "12").is_ok());
        for bad in ["", "-1", "1.5", "../1", "99999999999999999999999"] {
            assert!(parse_number("seq", bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            names::undecodable("../../x"),
            "poison/_undecodable/______x.json"
        );
    }
}
