//! gzip compression of whole buffers: the collector's stored pages and the shipper's Logs
//! Ingestion request bodies.
//!
//! The compressor is ISA-L's igzip (Intel's Intelligent Storage Acceleration Library, through
//! `isal-sys`, built from its vendored source), one stateless call per buffer
//! (`isal_deflate_stateless`). On the bench's request bodies its level 1 takes ≈ 40 % of the
//! time of zlib-rs's level 1 (`deflate_quick`), which this replaced, and compresses them better
//! (5.7:1 against 4.6:1); libdeflate's level 1 was as slow as zlib-rs (BENCHMARKS.md, issue 14).
//! Inflating stays with libdeflate and flate2 (`shipper::chunk`): igzip's inflater was no faster.
//!
//! Each thread keeps its igzip stream and level buffer (82 KB and 276 KB at level 1) for its next
//! buffer: a stateless call resets both itself, and building them afresh for every request body
//! (as `isal-rs`'s `compress_into` does) zeroed and copied that much memory each time — ≈ 1.9 %
//! of the shipper's CPU in the issue-14 profile.

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::ptr;

use isal_sys::igzip_lib as sys;

/// igzip's compression levels. Level 0 of igzip still compresses (a smaller hash table), and
/// was measured no faster than level 1 on the bench's bodies, so "no compression" is not a
/// level here: the caller simply does not gzip.
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

    /// igzip's level number and the size of the level buffer it needs.
    fn isal(self) -> (u32, usize) {
        match self {
            Self::Fast => (1, sys::ISAL_DEF_LVL1_DEFAULT as usize),
            Self::Best => (3, sys::ISAL_DEF_LVL3_DEFAULT as usize),
        }
    }

    fn slot(self) -> usize {
        match self {
            Self::Fast => 0,
            Self::Best => 1,
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
/// Only if igzip refuses even with room for stored blocks (not expected), or for input past
/// 4 GiB; the error names the input's size, never its bytes.
pub fn gzip(data: &[u8], level: Level) -> Result<Vec<u8>, GzipError> {
    // igzip writes into a buffer it is given. The rows and pages compress 4–6:1, so a third of
    // the input is tried first (less memory kept per call); what does not fit there
    // (incompressible input) is compressed again into room for stored blocks: 5 bytes per
    // 64 KiB block plus the 10-byte header and 8-byte trailer, well inside len/4096 + 64.
    let first = data.len() / 3 + 1024;
    let bound = data.len() + data.len() / 4096 + 64;
    let failed = |reason: String| GzipError {
        len: data.len(),
        reason,
    };
    match compress_into(data, level, first) {
        Ok(out) => Ok(out),
        Err(Overflow::Room) => compress_into(data, level, bound).map_err(|e| failed(e.to_string())),
        Err(e) => Err(failed(e.to_string())),
    }
}

/// Why one igzip call gave no output.
#[derive(Debug, thiserror::Error)]
enum Overflow {
    #[error("the output did not fit its buffer")]
    Room,
    #[error("the input is larger than igzip takes in one call (4 GiB)")]
    TooLarge,
    #[error("igzip returned {0}")]
    Code(i32),
    #[error("igzip reported {written} bytes written into room for {room}")]
    Overrun { written: usize, room: usize },
}

/// A thread's igzip stream with its level buffer, kept between calls.
struct Deflater {
    stream: Box<sys::isal_zstream>,
    level_buf: Box<[u8]>,
}

impl Deflater {
    fn new(level: Level) -> Self {
        // Zeroed on the heap directly: the stream is 82 KB, too big to build on a stack.
        let layout = Layout::new::<sys::isal_zstream>();
        // SAFETY: the layout is that of a sized type of non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) }.cast::<sys::isal_zstream>();
        if raw.is_null() {
            alloc::handle_alloc_error(layout);
        }
        // SAFETY: `raw` was allocated by the global allocator with the layout of
        // `isal_zstream`, which holds only integers, arrays of integers and raw pointers, for
        // all of which zero is a valid value (null pointers included); every field igzip reads
        // is set by `isal_deflate_stateless_init` and by `compress_into` before a call.
        let stream = unsafe { Box::from_raw(raw) };
        Self {
            stream,
            level_buf: vec![0u8; level.isal().1].into_boxed_slice(),
        }
    }
}

thread_local! {
    /// One [`Deflater`] per level this thread has compressed at.
    static DEFLATERS: RefCell<[Option<Deflater>; 2]> = const { RefCell::new([None, None]) };
}

fn compress_into(data: &[u8], level: Level, room: usize) -> Result<Vec<u8>, Overflow> {
    let avail_in = u32::try_from(data.len()).map_err(|_| Overflow::TooLarge)?;
    let avail_out = u32::try_from(room).map_err(|_| Overflow::TooLarge)?;
    let (number, _) = level.isal();
    let mut out = Vec::<u8>::with_capacity(room);
    DEFLATERS.with(|cell| {
        let mut slots = cell.borrow_mut();
        let d = slots[level.slot()].get_or_insert_with(|| Deflater::new(level));
        let s: &mut sys::isal_zstream = &mut d.stream;
        // SAFETY: `s` is a valid, exclusively borrowed stream; the init only writes its fields.
        unsafe { sys::isal_deflate_stateless_init(s) };
        s.level = number;
        s.level_buf = d.level_buf.as_mut_ptr();
        s.level_buf_size = d.level_buf.len() as u32;
        s.gzip_flag = sys::IGZIP_GZIP as u16;
        s.flush = sys::NO_FLUSH as u16;
        s.end_of_stream = 1;
        s.next_in = data.as_ptr().cast_mut();
        s.avail_in = avail_in;
        s.next_out = out.as_mut_ptr();
        s.avail_out = avail_out;
        // SAFETY: igzip reads `avail_in` bytes at `next_in` (the live slice `data`; it never
        // writes through it), writes at most `avail_out` bytes at `next_out` (the spare capacity
        // of `out`, `room` bytes), and uses `level_buf` (ours, of the size it is told) as
        // scratch. Nothing else holds these buffers during the call.
        let rc = unsafe { sys::isal_deflate_stateless(s) };
        let written = s.total_out as usize;
        // No pointer into the caller's buffers outlives the call.
        s.next_in = ptr::null_mut();
        s.next_out = ptr::null_mut();
        if rc == sys::STATELESS_OVERFLOW {
            return Err(Overflow::Room);
        }
        if rc != sys::COMP_OK as i32 {
            return Err(Overflow::Code(rc));
        }
        if written > room {
            return Err(Overflow::Overrun { written, room });
        }
        // SAFETY: igzip initialised the first `total_out` bytes of the spare capacity, and
        // `written <= room == out.capacity()`.
        unsafe { out.set_len(written) };
        Ok(())
    })?;
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

    /// The stream and level buffer a thread keeps carry nothing from one call to the next: the
    /// same input gives the same bytes before and after other inputs (an overflowing one
    /// included) and at the other level in between.
    #[test]
    fn a_reused_stream_carries_nothing_between_calls() {
        let text = br#"{"TimeGenerated":"2024-08-13T15:58:20.353Z","displayMessage_s":"x"},"#
            .repeat(5_000);
        let first = gzip(&text, Level::Fast).unwrap_or_default();
        for other in [noise(300_000, 9), b"[]".to_vec(), text[..1000].to_vec()] {
            let _ = gzip(&other, Level::Fast);
            let _ = gzip(&other, Level::Best);
            assert_eq!(gzip(&text, Level::Fast).unwrap_or_default(), first);
        }
        assert_eq!(gunzip(&first), text);
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
