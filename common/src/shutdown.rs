//! Graceful shutdown on SIGTERM / SIGINT.
//!
//! Container Apps (and Kubernetes, and `docker stop`) send SIGTERM, wait a grace period, then
//! SIGKILL. Within that period each service must stop taking work, hand back or finish what is
//! in flight, release its leases (so a standby or another replica takes over at once instead
//! of after the lease expires) and exit 0 (docs/design.md §2 "Both"). Every loop therefore selects
//! on one [`CancellationToken`], cancelled by the first signal.
//!
//! A second signal means an impatient operator (Ctrl-C twice): the process exits at once with
//! 130 (128 + SIGINT, the shell convention). Nothing is lost by that either — the design makes
//! any crash point safe — it just skips the courtesy of releasing leases.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Exit code used when a second signal arrives during the graceful shutdown.
pub const FORCED_EXIT_CODE: i32 = 130;

/// Installs the signal handlers and returns the token they cancel.
///
/// Must be called from inside a Tokio runtime, early in `main`: until it runs, SIGTERM still
/// has its default action (immediate termination). If the handlers cannot be installed (which
/// only happens when the runtime has no signal driver), the error is logged and the returned
/// token is cancelled only by Ctrl-C through `tokio::signal::ctrl_c`.
pub fn install() -> CancellationToken {
    let token = CancellationToken::new();
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => {
            tokio::spawn(watch(term, int, token.clone()));
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install SIGTERM/SIGINT handlers; only Ctrl-C will stop gracefully");
            let t = token.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    t.cancel();
                }
            });
        }
    }
    token
}

async fn watch(mut term: Signal, mut int: Signal, token: CancellationToken) {
    let first = next_signal(&mut term, &mut int).await;
    tracing::info!(
        signal = first,
        "shutdown requested: finishing in-flight work; send the signal again to exit at once"
    );
    token.cancel();
    let second = next_signal(&mut term, &mut int).await;
    tracing::warn!(
        signal = second,
        "second signal: exiting now without cleanup"
    );
    std::process::exit(FORCED_EXIT_CODE);
}

async fn next_signal(term: &mut Signal, int: &mut Signal) -> &'static str {
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
