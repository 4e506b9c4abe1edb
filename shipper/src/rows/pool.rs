//! The buffers a page's rows are written into, kept for the next page.
//!
//! A page's rows take a few MB in one buffer ([`super::RowBatch`]). Allocated fresh for every
//! page, glibc serves a buffer that size with a new `mmap`, and the kernel zeroes each of its
//! pages on first touch: in the end-to-end bench's profile that was ≈ 6 % of the shipper's
//! CPU (`clear_page_erms` and the page faults). The buffer is handed out as [`Bytes`] (request
//! bodies are runs of it), so it comes back when the last chunk of the page is dropped, and
//! goes to the next page instead of the allocator.
//!
//! The buffer a page is inflated into comes from the same list and goes back to it when the
//! rows are built (`page::with_inflated`).
//!
//! At most [`KEPT`] buffers of at most [`KEPT_BYTES`] each are kept: one per page in flight
//! at the default concurrency, and one per page being built; a larger one (a page of huge
//! events) is freed as usual.

use std::sync::Mutex;

use bytes::Bytes;

/// Buffers kept for reuse.
pub const KEPT: usize = 6;
/// Largest buffer kept (a page of 1,000 typical events needs ≈ 3.5 MB for its rows, ≈ 2.9 MB
/// inflated).
pub const KEPT_BYTES: usize = 16 * 1024 * 1024;

static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer with room for at least `capacity` bytes, reused when one is free.
pub fn take(capacity: usize) -> Vec<u8> {
    let mut buf = take_as_left();
    buf.clear();
    buf.reserve(capacity);
    buf
}

/// A buffer to be overwritten, reused when one is free, with the contents its last user left:
/// bytes that `Vec::resize` then need not zero again (a page is inflated into its buffer).
pub fn take_as_left() -> Vec<u8> {
    FREE.lock()
        .ok()
        .and_then(|mut free| free.pop())
        .unwrap_or_default()
}

/// `buf` as [`Bytes`] that gives the buffer back when the last of them is dropped.
pub fn share(buf: Vec<u8>) -> Bytes {
    Bytes::from_owner(Returned(buf))
}

/// A buffer that goes back to the free list when dropped.
struct Returned(Vec<u8>);

impl AsRef<[u8]> for Returned {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.0));
    }
}

/// Puts `buf` on the free list (unless it is too large, or the list is full).
pub fn give_back(buf: Vec<u8>) {
    if buf.capacity() > KEPT_BYTES || buf.capacity() == 0 {
        return;
    }
    if let Ok(mut free) = FREE.lock() {
        if free.len() < KEPT {
            free.push(buf);
        }
    }
}

/// Buffers on the free list now (for tests).
pub fn free_count() -> usize {
    FREE.lock().map_or(0, |free| free.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_the_list() {
        while free_count() > 0 {
            drop(take(0));
        }
    }

    #[test]
    fn a_shared_buffer_comes_back_when_its_last_slice_is_dropped() {
        // Other tests of this binary build rows too: empty the list, then look only for this
        // buffer's address.
        empty_the_list();
        let mut buf = take(1000);
        buf.extend_from_slice(b"[{},{}]");
        let at = buf.as_ptr();
        let shared = share(buf);
        let part = shared.slice(1..3);
        drop(shared);
        let back = |at| FREE.lock().unwrap().iter().any(|b| b.as_ptr() == at);
        assert!(!back(at), "a slice still holds it");
        drop(part);
        let returned = back(at) || free_count() == KEPT;
        assert!(returned, "returned to the free list (unless it was full)");
        let big = share(Vec::with_capacity(KEPT_BYTES + 1));
        let big_at = big.as_ptr();
        drop(big);
        assert!(!back(big_at), "too large to keep");
    }

    /// A buffer given back directly (an inflated page's) is handed out again with what it
    /// held, so that inflating the next page into it zeroes nothing.
    #[test]
    fn a_buffer_given_back_is_taken_again_as_it_was_left() {
        empty_the_list();
        let mut buf = take(4096);
        buf.extend_from_slice(b"inflated page");
        let at = buf.as_ptr();
        give_back(buf);
        // Other tests of this binary use the list too: look for this buffer among the next.
        let mut taken = Vec::new();
        while free_count() > 0 && !taken.iter().any(|b: &Vec<u8>| b.as_ptr() == at) {
            taken.push(take_as_left());
        }
        let ours = taken.iter().find(|b| b.as_ptr() == at);
        assert_eq!(ours.map(Vec::as_slice), Some(&b"inflated page"[..]));
        give_back(Vec::new());
        assert!(
            !FREE.lock().unwrap().iter().any(|b| b.capacity() == 0),
            "an empty buffer is not kept"
        );
    }
}
