//! Stopping a service and checking how it ended.

use std::time::Duration;

use crate::procs::Service;

/// How long a service may take to finish after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(30);

/// Sends SIGTERM and asserts the service exits 0 within the grace period (a clean stop
/// releases leases and finishes in-flight work). `context` says which step of the test.
pub fn terminate_cleanly(svc: &mut Service, context: &str) -> anyhow::Result<()> {
    let st = svc.terminate(GRACE)?;
    assert!(
        st.is_some_and(|s| s.success()),
        "{context}: {} exit {st:?}\n{}",
        svc.name,
        svc.log_text()
    );
    Ok(())
}

/// Waits up to `timeout` for a service started with `OKTA_SENTINEL_FAILPOINTS` to die at
/// failpoint `point`, and asserts it did (the failpoint's exit code; the log otherwise).
pub async fn wait_failpoint_exit(
    svc: &mut Service,
    point: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let status = svc.wait_exit(timeout).await?;
    assert_eq!(
        status.code(),
        Some(common::failpoint::EXIT_CODE),
        "{point}: {}",
        svc.log_text()
    );
    Ok(())
}
