//! Secret values that cannot leak by accident.
//!
//! [`SecretString`] never prints its value through `Debug` or `Display`, is not `Serialize`,
//! and must be opened explicitly with [`SecretString::expose`] at the one place that sends it.

use std::fmt;
use std::sync::Arc;

/// A secret (Okta API token, private key, workspace key). Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Arc<str>);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::from(value.into()))
    }

    /// The value itself. Call it only where the secret goes on the wire or into a signature.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = SecretString::new("00abcSUPERSECRET");
        assert!(!format!("{s:?}").contains("SUPERSECRET"));
        assert!(!format!("{s}").contains("SUPERSECRET"));
        assert!(!format!("{:#?}", Some(&s)).contains("SUPERSECRET"));
        assert_eq!(s.expose(), "00abcSUPERSECRET");
    }
}
