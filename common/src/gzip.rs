//! gzip compression of whole buffers: the collector's stored pages and the shipper's Logs
//! Ingestion request bodies.
//!
//! The compressor is ISA-L's igzip (Intel's Intelligent Storage Acceleration Library, through
//! the `isal-rs` crate, built from its vendored source), one call per buffer
//! (`isal_deflate_stateless`). On the bench's request bodies its level 1 takes ≈ 40 % of the
//! time of zlib-rs's level 1 (`deflate_quick`), which this replaced, and compresses them better
//! (5.7:1 against 4.6:1); libdeflate's level 1 was as slow as zlib-rs (BENCHMARKS.md, issue 14).
//! Inflating stays with libdeflate and flate2 (`shipper::chunk`): igzip's inflater was no faster.

/// igzip's compression levels. Level 0 of igzip still compresses (a smaller hash table), so
/// "no compression" is not a level here: the caller simply does not gzip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// igzip level 1: the fast default.
    Fast,
    /// igzip level 3: better ratio, more CPU.
    Best,
}

impl Level {
    /// `1` → [`Level::Fast`], `3` → [`Level::Best`]; anything else is not an igzip level here.
    #[must_use]
    pub fn from_number(n: u32) -> Option<Self> {
        match n {
            1 => Some(Self::Fast),
            3 => Some(Self::Best),
            _ => None,
        }
    }

    fn isal(self) -> isal::CompressionLevel {
        match self {
            Self::Fast => isal::CompressionLevel::One,
            Self::Best => isal::CompressionLevel::Three,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("gzip compression of {len} bytes failed: {reason}")]
pub struct GzipError {
    len: usize,
    reason: String,
}

/// gzip of `data` (one member, no name, mtime 0).
///
/// # Errors
/// Only if igzip refuses even with room for stored blocks (not expected); the error names the
/// input's size, never its bytes.
pub fn gzip(data: &[u8], level: Level) -> Result<Vec<u8>, GzipError> {
    // igzip writes into a buffer it is given. The rows and pages compress 4–6:1, so a third of
    // the input is tried first (less memory zeroed and kept per call); what does not fit there
    // (incompressible input) is compressed again into room for stored blocks: 5 bytes per
    // 64 KiB block plus the 10-byte header and 8-byte trailer, well inside len/4096 + 64.
    let first = data.len() / 3 + 1024;
    let bound = data.len() + data.len() / 4096 + 64;
    match compress_into(data, level, first) {
        Ok(out) => Ok(out),
        Err(_) => compress_into(data, level, bound).map_err(|e| GzipError {
            len: data.len(),
            reason: e.to_string(),
        }),
    }
}

fn compress_into(data: &[u8], level: Level, room: usize) -> Result<Vec<u8>, isal::error::Error> {
    let mut out = vec![0u8; room];
    let n = isal::compress_into(data, &mut out, level.isal(), isal::Codec::Gzip)?;
    out.truncate(n);
    out.shrink_to_fit();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut out)
            .unwrap_or_default();
        out
    }

    /// A xorshift stream: bytes no compressor can shrink, so igzip must fall back to stored
    /// blocks inside the output bound.
    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed.to_le_bytes()[0]
            })
            .collect()
    }

    #[test]
    fn round_trips_text_noise_and_empty_input_at_both_levels() {
        let text =
            br#"{"TimeGenerated":"2024-08-13T15:58:20.353Z","eventType_s":"user.session.start"},"#
                .repeat(20_000);
        for level in [Level::Fast, Level::Best] {
            for data in [
                Vec::new(),
                b"[]".to_vec(),
                text.clone(),
                noise(1, 1),
                noise(65_535, 2),
                noise(65_536 * 3 + 7, 3),
                noise(1_000_002, 4),
            ] {
                let gz = gzip(&data, level).unwrap_or_default();
                assert_eq!(&gz[..2], &[0x1f, 0x8b], "a gzip member");
                assert_eq!(gunzip(&gz), data, "{} bytes at {level:?}", data.len());
            }
            let gz = gzip(&text, level).unwrap_or_default();
            assert!(gz.len() * 4 < text.len(), "text compresses at {level:?}");
        }
    }

    #[test]
    fn levels_are_one_and_three() {
        assert_eq!(Level::from_number(1), Some(Level::Fast));
        assert_eq!(Level::from_number(3), Some(Level::Best));
        for n in [0, 2, 4, 9] {
            assert_eq!(Level::from_number(n), None);
        }
    }
}
