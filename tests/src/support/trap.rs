//! A raw TCP listener standing in for a foreign origin: it records every connection and
//! every byte it gets, so a test can prove a credential never went there.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// The listener; it stops accepting when dropped.
pub struct Trap {
    pub port: u16,
    connections: Arc<AtomicUsize>,
    bytes: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Trap {
    /// Listens on a free loopback port. A connection is read until it closes or stays idle
    /// for 5 s (so a client holding it open does not keep a task alive forever).
    pub async fn start() -> anyhow::Result<Trap> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let connections = Arc::new(AtomicUsize::new(0));
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let (c, b) = (connections.clone(), bytes.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let b = b.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await
                    {
                        if n == 0 {
                            break;
                        }
                        b.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        Ok(Trap {
            port,
            connections,
            bytes,
            task,
        })
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Every byte received so far, all connections together.
    pub fn received(&self) -> Vec<u8> {
        self.bytes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.task.abort();
    }
}
