//! Opaque `after` cursors minted by the fake (`docs/contracts.md` §1.1, §1.9).
//!
//! A cursor carries a position in the log and an HMAC tag, so the fake accepts exactly the
//! cursors it minted and rejects forged ones. Okta's next links carry `since` beside
//! `after`; the tag therefore also binds the `since` of the request that minted the cursor,
//! which is how a client-crafted `since`+`after` pair is told apart from the fake's own
//! link (400 E0000001). A request with `after` alone is accepted, as Okta accepts it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why an `after` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CursorError {
    #[error("malformed cursor")]
    Malformed,
    #[error("cursor was not issued for this query")]
    Forged,
}

/// A polling position: the index of the next entry in ingestion order, and a generation
/// that makes an "advanced" empty-page cursor differ from the one requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollingCursor {
    pub pos: usize,
    pub generation: u64,
}

/// The per-fake HMAC key.
pub struct CursorKey {
    key: [u8; 32],
}

impl CursorKey {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn tag(&self, msg: &str) -> String {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(msg.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..8])
    }

    /// A polling cursor; `since` is the raw `since` parameter of the request that minted it.
    pub fn mint_polling(&self, c: PollingCursor, since: Option<&str>) -> String {
        let body = format!("{}_{}", c.pos, c.generation);
        let any = self.tag(&format!("p|{body}"));
        let bound = self.tag(&format!("p|{body}|{}", since.unwrap_or("")));
        format!("{body}.{any}{bound}")
    }

    /// Checks a polling cursor; `since` is the raw `since` of the current request.
    pub fn open_polling(
        &self,
        after: &str,
        since: Option<&str>,
    ) -> Result<PollingCursor, CursorError> {
        let (body, tags) = after.split_once('.').ok_or(CursorError::Malformed)?;
        let (pos, generation) = body.split_once('_').ok_or(CursorError::Malformed)?;
        let pos: usize = pos.parse().map_err(|_| CursorError::Malformed)?;
        let generation: u64 = generation.parse().map_err(|_| CursorError::Malformed)?;
        if tags.len() != 32 {
            return Err(CursorError::Malformed);
        }
        let (any, bound) = tags.split_at(16);
        if any != self.tag(&format!("p|{body}")) {
            return Err(CursorError::Forged);
        }
        if let Some(since) = since {
            if bound != self.tag(&format!("p|{body}|{since}")) {
                return Err(CursorError::Forged);
            }
        }
        Ok(PollingCursor { pos, generation })
    }

    /// A bounded-query cursor: an offset into the result set of exactly this query
    /// (`binding` is the query's `since`, `until` and `sortOrder`).
    pub fn mint_bounded(&self, offset: usize, binding: &str) -> String {
        let tag = self.tag(&format!("b|{offset}|{binding}"));
        format!("b{offset}.{tag}")
    }

    pub fn open_bounded(&self, after: &str, binding: &str) -> Result<usize, CursorError> {
        let rest = after.strip_prefix('b').ok_or(CursorError::Malformed)?;
        let (offset, tag) = rest.split_once('.').ok_or(CursorError::Malformed)?;
        let offset: usize = offset.parse().map_err(|_| CursorError::Malformed)?;
        if tag != self.tag(&format!("b|{offset}|{binding}")) {
            return Err(CursorError::Forged);
        }
        Ok(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_round_trip_and_binding() {
        let k = CursorKey::new([7; 32]);
        let c = PollingCursor {
            pos: 42,
            generation: 3,
        };
        let s = k.mint_polling(c, Some("2024-01-01T00:00:00Z"));
        assert_eq!(k.open_polling(&s, Some("2024-01-01T00:00:00Z")), Ok(c));
        assert_eq!(k.open_polling(&s, None), Ok(c));
        assert_eq!(
            k.open_polling(&s, Some("2024-01-02T00:00:00Z")),
            Err(CursorError::Forged)
        );
        let forged = s.replacen("42_", "43_", 1);
        assert_eq!(k.open_polling(&forged, None), Err(CursorError::Forged));
        assert_eq!(
            k.open_polling("1627500044869_1", None),
            Err(CursorError::Malformed)
        );
        let other = CursorKey::new([8; 32]);
        assert_eq!(other.open_polling(&s, None), Err(CursorError::Forged));
    }

    #[test]
    fn bounded_round_trip() {
        let k = CursorKey::new([1; 32]);
        let s = k.mint_bounded(200, "a|b|ASCENDING");
        assert_eq!(k.open_bounded(&s, "a|b|ASCENDING"), Ok(200));
        assert_eq!(
            k.open_bounded(&s, "a|c|ASCENDING"),
            Err(CursorError::Forged)
        );
        assert!(k.open_polling(&s, None).is_err());
    }
}
