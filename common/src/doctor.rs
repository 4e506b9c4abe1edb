//! `doctor`: check a live deployment with the identity and configuration the service really
//! runs with, and say exactly what to fix.
//!
//! Each check performs the very operation the service needs (a token for an audience, a queue
//! or blob operation, a Key Vault read, an Okta request, an empty batch to the sink) through
//! the service's own clients, and becomes one line:
//!
//! ```text
//! OK  storage queue okta-pages: add message
//! FAILED storage queue okta-pages: update message: 403 AuthorizationPermissionMismatch — fix: grant …
//! ```
//!
//! `collector doctor` / `shipper doctor` print the lines and exit 0 when every check is OK, 1
//! when any FAILED (2 stays "bad configuration", decided before any check runs). The services
//! run the same checks at start-up and log each FAILED line as a warning, so a misconfigured
//! deployment says what is wrong in its first log lines while it keeps retrying
//! (docs/design.md §2: RBAC can take many minutes to propagate, so nothing here is fatal).
//!
//! The checks shared by both services live in the submodules: [`identity`] (managed-identity
//! tokens), [`storage`] (queue and blob probes, 403 mapped to the role to grant) and [`vault`]
//! (Key Vault secrets, never printed).

pub mod identity;
pub mod storage;
pub mod vault;

use std::fmt;

/// Separator between a FAILED line's cause and its fix.
pub const FIX: &str = " — fix: ";

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The operation worked; `note` adds what an operator should know (a skipped part, the
    /// rate-limit budget spent).
    Ok { note: Option<String> },
    /// The operation failed: why, and what to do about it (the role to grant and on what
    /// scope, the secret to set, the setting to correct).
    Failed { cause: String, fix: String },
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. `storage queue okta-pages: add message`.
    pub name: String,
    pub status: Status,
}

impl Check {
    pub fn ok(name: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Ok { note: None },
        }
    }

    /// OK with a note (`skipped: …` is an OK with a note, not a failure).
    pub fn ok_with(name: impl Into<String>, note: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Ok {
                note: Some(note.into()),
            },
        }
    }

    pub fn failed(
        name: impl Into<String>,
        cause: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            status: Status::Failed {
                cause: cause.into(),
                fix: fix.into(),
            },
        }
    }

    pub fn is_failed(&self) -> bool {
        matches!(self.status, Status::Failed { .. })
    }
}

impl fmt::Display for Check {
    /// `OK  <check>`, `OK  <check> (<note>)` or `FAILED <check>: <cause> — fix: <fix>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.status {
            Status::Ok { note: None } => write!(f, "OK  {}", self.name),
            Status::Ok { note: Some(n) } => write!(f, "OK  {} ({n})", self.name),
            Status::Failed { cause, fix } => write!(f, "FAILED {}: {cause}{FIX}{fix}", self.name),
        }
    }
}

/// Every check of one run, in the order they ran.
#[derive(Debug, Clone, Default)]
pub struct Report {
    checks: Vec<Check>,
}

/// `doctor` found something to fix (maps to exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} checks FAILED (see the FAILED lines above)")]
pub struct DoctorFailed {
    pub failed: usize,
    pub total: usize,
}

impl Report {
    pub fn new() -> Report {
        Report::default()
    }

    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    pub fn extend(&mut self, checks: impl IntoIterator<Item = Check>) {
        self.checks.extend(checks);
    }

    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.is_failed())
    }

    /// The lines, one per check.
    pub fn lines(&self) -> Vec<String> {
        self.checks.iter().map(Check::to_string).collect()
    }

    /// `Ok` when every check is OK; the error maps to exit code 1 in the binaries.
    pub fn outcome(&self) -> Result<(), DoctorFailed> {
        match self.failed().count() {
            0 => Ok(()),
            failed => Err(DoctorFailed {
                failed,
                total: self.checks.len(),
            }),
        }
    }

    /// Prints the lines on stdout (the command's output; logs stay on stderr).
    pub fn print(&self) {
        for line in self.lines() {
            println!("{line}");
        }
    }

    /// The start-up self-check: each FAILED line as a warning (what an operator's alert on
    /// WARN lines sees first), the OK lines at info level, then one summary line.
    pub fn log(&self, service: &str) {
        for c in &self.checks {
            if c.is_failed() {
                tracing::warn!(check = %c.name, "{service} self-check: {c}");
            } else {
                tracing::info!(check = %c.name, "{service} self-check: {c}");
            }
        }
        match self.outcome() {
            Ok(()) => tracing::info!(
                "{service} self-check: all {} checks OK",
                self.checks.len()
            ),
            Err(e) => tracing::warn!(
                "{service} self-check: {e}; the service keeps running and retrying (run `{service} doctor` after fixing)"
            ),
        }
    }
}

pub(crate) use crate::storage::error::error_chain as chain;

/// Who the managed identity is, for the fix texts: the client id, or "system-assigned".
pub fn identity_label(service: &str, client_id: Option<&str>) -> String {
    match client_id {
        Some(id) => format!("the {service}'s managed identity (client id {id})"),
        None => format!("the {service}'s system-assigned managed identity"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_outcome() {
        let mut r = Report::new();
        r.push(Check::ok("a"));
        r.push(Check::ok_with("b", "skipped: nothing to read"));
        assert!(r.outcome().is_ok());
        r.push(Check::failed("c", "403 X", "grant Y on Z"));
        assert_eq!(
            r.lines(),
            vec![
                "OK  a".to_string(),
                "OK  b (skipped: nothing to read)".to_string(),
                "FAILED c: 403 X — fix: grant Y on Z".to_string(),
            ]
        );
        let e = r.outcome().unwrap_err();
        assert_eq!((e.failed, e.total), (1, 3));
    }
}
