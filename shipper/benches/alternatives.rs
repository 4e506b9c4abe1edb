//! The compressors measured against the shipper's (`common::gzip`, ISA-L igzip) and not used,
//! shared by both benches (`transform.rs`, `instructions.rs`).

use std::io::Write;

/// flate2's streaming zlib-rs encoder, fresh per body: what `chunk::gzip` was before igzip
/// (level 1 is zlib-ng's `deflate_quick`).
pub fn zlib_rs_gzip(body: &[u8], level: u32) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::new(level),
    );
    enc.write_all(body)
        .and_then(|()| enc.finish())
        .unwrap_or_default()
}

/// libdeflate's whole-buffer gzip.
pub fn libdeflate_gzip(body: &[u8], level: i32) -> Vec<u8> {
    let lvl = libdeflater::CompressionLvl::new(level).unwrap_or_default();
    let mut c = libdeflater::Compressor::new(lvl);
    let mut out = vec![0; c.gzip_compress_bound(body.len())];
    let n = c.gzip_compress(body, &mut out).unwrap_or(0);
    out.truncate(n);
    out
}
