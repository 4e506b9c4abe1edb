//! The fake's own accept loop.
//!
//! `axum::serve` cannot do what the faults need: close the listener for an outage (so
//! clients get "connection refused") and close one connection in the middle of a request
//! without answering (so the client sees a connection error, never a status line). Each
//! connection therefore gets a [`ConnKill`] token, passed to the handlers as a request
//! extension; cancelling it drops the connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::Shared;

/// Closes the connection that carried the request (the response is never sent).
#[derive(Clone, Debug)]
pub struct ConnKill(pub CancellationToken);

/// Serves `router` on `listener` until `shutdown`, honouring [`super::LaFault::Down`].
pub async fn run(
    listener: TcpListener,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    router: axum::Router,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut listener = Some(listener);
    loop {
        let down_until = shared.down_until();
        if let Some(until) = down_until {
            // Closing the socket makes new connections fail with "connection refused".
            listener = None;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = shared.faults_changed.notified() => {}
            }
            continue;
        }
        let l = match &listener {
            Some(l) => l,
            None => match TcpListener::bind(addr).await {
                Ok(l) => listener.insert(l),
                Err(e) => {
                    tracing::warn!(error = %e, %addr, "fake Log Analytics cannot re-bind; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                    continue;
                }
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = shared.faults_changed.notified() => continue,
            a = l.accept() => a,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => tcp,
            Err(e) => {
                tracing::debug!(error = %e, "fake Log Analytics accept failed");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let shutdown = shutdown.clone();
        match &tls {
            None => {
                tokio::spawn(serve_connection(tcp, router, shutdown));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(stream) => serve_connection(stream, router, shutdown).await,
                        Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
                    }
                });
            }
        }
    }
}

/// Serves HTTP/1.1 on one connection until it ends, the fake shuts down, or a handler
/// cancels the connection's [`ConnKill`].
async fn serve_connection<S>(io: S, router: axum::Router, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let kill = CancellationToken::new();
    let token = kill.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnKill(token.clone()));
            router.clone().oneshot(req)
        });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service);
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = kill.cancelled() => {}
        r = conn => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "fake Log Analytics connection ended with an error");
            }
        }
    }
}
