//! Bounded reading and decompression of request bodies.
//!
//! The fake must answer an over-size request with the service's status (413 or 404), not
//! with a connection reset, so it reads past the limit and discards the rest (up to
//! [`DRAIN_CAP`]) before answering; and it must not let a gzip bomb exhaust memory.

use std::io::Read;

use futures::StreamExt;

/// Most bytes read and thrown away from an over-size body before answering anyway.
pub const DRAIN_CAP: u64 = 64 * 1024 * 1024;

/// A request body read up to a limit.
pub struct Bounded {
    /// The body, or `None` when it was longer than the limit.
    pub bytes: Option<Vec<u8>>,
    /// Bytes received (counting discarded ones; stops at [`DRAIN_CAP`]).
    pub received: u64,
}

/// Reads `body`, keeping it only if it is at most `limit` bytes.
pub async fn read_bounded(body: axum::body::Body, limit: usize) -> Result<Bounded, axum::Error> {
    let mut stream = body.into_data_stream();
    let mut kept = Some(Vec::new());
    let mut received: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        received += chunk.len() as u64;
        if let Some(buf) = &mut kept {
            if buf.len() + chunk.len() > limit {
                kept = None;
            } else {
                buf.extend_from_slice(&chunk);
            }
        }
        if kept.is_none() && received >= DRAIN_CAP {
            break;
        }
    }
    Ok(Bounded {
        bytes: kept,
        received,
    })
}

/// Why a gzip body could not be expanded.
#[derive(Debug, thiserror::Error)]
pub enum GunzipError {
    #[error("decompressed body exceeds {cap} bytes")]
    TooLarge { cap: usize },
    #[error("invalid gzip data: {0}")]
    Corrupt(String),
}

/// Decompresses a gzip body (several members allowed), refusing more than `cap` bytes of
/// output so a small bomb cannot allocate gigabytes.
pub fn gunzip_bounded(data: &[u8], cap: usize) -> Result<Vec<u8>, GunzipError> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(cap));
    flate2::read::MultiGzDecoder::new(data)
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| GunzipError::Corrupt(e.to_string()))?;
    if out.len() > cap {
        return Err(GunzipError::TooLarge { cap });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = e.write_all(data);
        e.finish().unwrap_or_default()
    }

    #[test]
    fn gunzip_refuses_bombs_and_garbage() {
        let bomb = gz(&vec![b'a'; 4 * 1024 * 1024]);
        assert!(bomb.len() < 64 * 1024);
        assert!(matches!(
            gunzip_bounded(&bomb, 1024 * 1024),
            Err(GunzipError::TooLarge { .. })
        ));
        assert_eq!(
            gunzip_bounded(&bomb, 4 * 1024 * 1024).map(|v| v.len()).ok(),
            Some(4 * 1024 * 1024)
        );
        assert!(matches!(
            gunzip_bounded(b"not gzip", 1024),
            Err(GunzipError::Corrupt(_))
        ));
    }

    #[tokio::test]
    async fn read_bounded_keeps_or_discards() {
        let small = read_bounded(axum::body::Body::from(vec![1u8; 10]), 10).await;
        assert_eq!(small.ok().and_then(|b| b.bytes).map(|b| b.len()), Some(10));
        let big = read_bounded(axum::body::Body::from(vec![1u8; 11]), 10).await;
        let big = big.ok();
        assert!(big.as_ref().is_some_and(|b| b.bytes.is_none()));
        assert_eq!(big.map(|b| b.received), Some(11));
    }
}
