//! One error type for every storage call, with the storage error code kept.
//!
//! The delivery logic (docs/design.md §2) branches on *which* failure happened: a stale ETag
//! (`412 ConditionNotMet`) means "someone else wrote", a missing lease id (`412 LeaseIdMissing`)
//! means "our lease is gone", `409 LeaseAlreadyPresent` means "held elsewhere, come back later".
//! The same HTTP status carries different meanings, so the classifiers below look at the
//! `x-ms-error-code` the service returned, which the SDK keeps in
//! `ErrorKind::HttpResponse { error_code, .. }`.
//!
//! Messages never carry secrets: SDK transport errors print the request URL, and with account-SAS
//! auth that URL holds the SAS signature, so every message passes through [`redact`].

use azure_core::error::ErrorKind;

/// A failed storage operation.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The service answered with an unexpected status.
    #[error("storage service returned {status} {}: {message}", code.as_deref().unwrap_or("(no error code)"))]
    Service {
        status: u16,
        /// The storage error code (`x-ms-error-code`), e.g. `ConditionNotMet`.
        code: Option<String>,
        message: String,
    },
    /// The request may not have reached the service (connect, TLS, I/O, timeout, token fetch).
    #[error("storage transport error: {0}")]
    Transport(String),
    /// The configuration or an argument is unusable; retrying will not help.
    #[error("storage configuration error: {0}")]
    Config(String),
    /// A response (or a blob) could not be used as it was.
    #[error("storage response could not be decoded: {0}")]
    Decode(String),
}

/// Lease error codes that mean "the lease this caller relied on is not (or no longer) held".
const LEASE_LOST_CODES: &[&str] = &[
    "LeaseIdMissing",
    "LeaseIdMismatchWithBlobOperation",
    "LeaseIdMismatchWithLeaseOperation",
    "LeaseLost",
    "LeaseNotPresentWithBlobOperation",
    "LeaseNotPresentWithLeaseOperation",
    "LeaseIsBrokenAndCannotBeRenewed",
    "LeaseIsBreakingAndCannotBeChanged",
];

/// Lease error codes that mean "someone else holds (or is breaking) the lease".
const LEASE_PRESENT_CODES: &[&str] = &["LeaseAlreadyPresent", "LeaseIsBreakingAndCannotBeAcquired"];

/// Codes of "create" calls that found the resource already there.
const ALREADY_EXISTS_CODES: &[&str] = &[
    "BlobAlreadyExists",
    "ContainerAlreadyExists",
    "QueueAlreadyExists",
];

impl StorageError {
    /// The HTTP status of a service error.
    pub fn status(&self) -> Option<u16> {
        match self {
            StorageError::Service { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The storage error code of a service error (`ConditionNotMet`, `LeaseIdMissing`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            StorageError::Service { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// 404: blob, container, queue or message not found.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// 412 `ConditionNotMet`: an `If-Match` ETag was stale (someone else wrote).
    ///
    /// Deliberately false for the lease flavours of 412, see [`Self::is_lease_lost`].
    pub fn is_condition_not_met(&self) -> bool {
        self.status() == Some(412) && matches!(self.code(), Some("ConditionNotMet") | None)
    }

    /// The resource already exists: 409 `BlobAlreadyExists` (and its container and queue
    /// siblings). `Blobs::create_only` reports a 412 `ConditionNotMet` on `If-None-Match: *`
    /// as this too, so callers test one predicate.
    pub fn is_already_exists(&self) -> bool {
        self.status() == Some(409)
            && self
                .code()
                .is_some_and(|c| ALREADY_EXISTS_CODES.contains(&c))
    }

    /// 409 `LeaseAlreadyPresent` (or a lease being broken): another holder has the lease.
    pub fn is_lease_already_present(&self) -> bool {
        self.status() == Some(409)
            && self
                .code()
                .is_some_and(|c| LEASE_PRESENT_CODES.contains(&c))
    }

    /// The lease the caller used is missing, wrong, expired or broken (412 on writes, 409 on
    /// lease operations): whatever it protected may have been taken over.
    pub fn is_lease_lost(&self) -> bool {
        matches!(self.status(), Some(409 | 412))
            && self.code().is_some_and(|c| LEASE_LOST_CODES.contains(&c))
    }

    /// 400 `PopReceiptMismatch`: the message was received again by someone else (or the
    /// receipt was superseded by an Update Message).
    pub fn is_pop_receipt_mismatch(&self) -> bool {
        self.code() == Some("PopReceiptMismatch")
    }

    /// Worth retrying with backoff: 5xx, 408, 429 and transport failures.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Service { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            StorageError::Transport(_) => true,
            StorageError::Config(_) | StorageError::Decode(_) => false,
        }
    }

    /// A service error built by hand (used when re-labelling an outcome, and by tests).
    pub fn service(status: u16, code: Option<&str>, message: impl Into<String>) -> Self {
        StorageError::Service {
            status,
            code: code.map(str::to_owned),
            message: message.into(),
        }
    }
}

impl From<azure_core::Error> for StorageError {
    fn from(e: azure_core::Error) -> Self {
        match e.kind() {
            ErrorKind::HttpResponse {
                status,
                error_code,
                raw_response,
            } => {
                let status = u16::from(*status);
                // Without `x-ms-error-code` the SDK puts the status text in `error_code`;
                // only a code-shaped value is a storage error code.
                let code = error_code
                    .as_deref()
                    .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric()))
                    .map(str::to_owned);
                let message = raw_response
                    .as_ref()
                    .and_then(|r| xml_message(r.body()))
                    .unwrap_or_else(|| error_chain(&e));
                StorageError::Service {
                    status,
                    code,
                    message: redact(&message),
                }
            }
            ErrorKind::DataConversion => StorageError::Decode(redact(&error_chain(&e))),
            ErrorKind::Credential => {
                StorageError::Transport(redact(&format!("credential: {}", error_chain(&e))))
            }
            ErrorKind::Connection | ErrorKind::Io | ErrorKind::Other => {
                StorageError::Transport(redact(&error_chain(&e)))
            }
            // `ErrorKind` may grow; an unknown kind is treated as retryable rather than fatal.
            #[allow(unreachable_patterns)]
            _ => StorageError::Transport(redact(&error_chain(&e))),
        }
    }
}

/// The error and its sources, `a: b: c`: reqwest hides the useful part ("connection
/// refused", "invalid peer certificate") in the source chain, and SDK errors often say only
/// "non-transport error" at the top. Only for errors raised outside a response body that could
/// hold a secret (the callers redact or never pass such bodies). Shared by storage, Key Vault
/// and `doctor`.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// The first line of `<Message>` of a storage XML error body (the rest is RequestId/Time).
fn xml_message(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Message>")? + "<Message>".len();
    let end = start + text[start..].find("</Message>")?;
    let msg = text[start..end].lines().next()?.trim();
    (!msg.is_empty()).then(|| msg.to_owned())
}

/// Replaces the value of every `sig=` (the SAS signature) with `REDACTED`.
///
/// The SAS is a bearer credential for its lifetime; SDK errors print full request URLs.
pub(crate) fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = find_ascii_ci(rest, "sig=") {
        let value_start = pos + 4;
        out.push_str(&rest[..value_start]);
        let tail = &rest[value_start..];
        let value_len = tail
            .find(['&', ' ', ')', '"', '\'', '>', '<', '\n', '\r'])
            .unwrap_or(tail.len());
        if value_len > 0 {
            out.push_str("REDACTED");
        }
        rest = &tail[value_len..];
    }
    out.push_str(rest);
    out
}

fn find_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    (0..h.len().checked_sub(n.len())? + 1).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_removes_every_signature() {
        let s = "error sending request for url (http://127.0.0.1:10001/a/q?sv=2021-08-06&sig=abc%2Bdef%3D&se=x) and SIG=zzz";
        let r = redact(s);
        assert!(!r.contains("abc%2Bdef"), "{r}");
        assert!(!r.contains("zzz"), "{r}");
        assert!(r.contains("sig=REDACTED&se=x"), "{r}");
        assert_eq!(redact("no secrets"), "no secrets");
        assert_eq!(redact("ends with sig="), "ends with sig=");
    }

    #[test]
    fn classifiers_distinguish_the_412s_and_409s() {
        let stale = StorageError::service(412, Some("ConditionNotMet"), "x");
        let lease_missing = StorageError::service(412, Some("LeaseIdMissing"), "x");
        let present = StorageError::service(409, Some("LeaseAlreadyPresent"), "x");
        let exists = StorageError::service(409, Some("BlobAlreadyExists"), "x");
        let pop = StorageError::service(400, Some("PopReceiptMismatch"), "x");
        assert!(stale.is_condition_not_met() && !stale.is_lease_lost());
        assert!(lease_missing.is_lease_lost() && !lease_missing.is_condition_not_met());
        assert!(present.is_lease_already_present() && !present.is_lease_lost());
        assert!(exists.is_already_exists() && !exists.is_lease_already_present());
        assert!(pop.is_pop_receipt_mismatch() && !pop.is_transient());
        assert!(StorageError::service(503, Some("ServerBusy"), "x").is_transient());
        assert!(StorageError::service(429, None, "x").is_transient());
        assert!(StorageError::Transport("reset".into()).is_transient());
        assert!(!StorageError::Config("bad".into()).is_transient());
        assert!(StorageError::service(404, Some("BlobNotFound"), "x").is_not_found());
    }

    #[test]
    fn xml_message_takes_the_first_line() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>ConditionNotMet</Code><Message>The condition specified using HTTP conditional header(s) is not met.\nRequestId:1\nTime:2</Message></Error>";
        assert_eq!(
            xml_message(body).as_deref(),
            Some("The condition specified using HTTP conditional header(s) is not met.")
        );
        assert_eq!(xml_message(b"not xml"), None);
    }
}
