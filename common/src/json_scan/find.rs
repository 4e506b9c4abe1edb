//! The byte search every pass over a page's JSON repeats (the shipper's row builder, the
//! collector's page split): where the JSON string that is being read ends, or has an escape —
//! the next `"` or `\`.
//!
//! Most strings of a page are short (keys, ids, enum values), so the first bytes after the
//! current position decide nearly every search. They are looked at 16 at a time with SSE2,
//! which every x86_64 CPU has: two compares and a mask, a few instructions inlined where a
//! string is read, where a call to `memchr2` paid its runtime dispatch and its set-up on every
//! string (and searched strings shorter than its vector byte by byte). Past [`INLINE_BYTES`],
//! a long string (a user agent, a URL, a whole object's text) goes to `memchr2`, whose AVX2
//! loop is the faster one there. Other targets keep one portable search.
//!
//! The pass that validates a page ([`super::Scanner`]) stops at a control byte too
//! ([`string_stop`]): JSON allows none inside a string, and outside strings its grammar takes
//! only whitespace, so that one more compare per 16 bytes replaces a pass over the whole page
//! looking for them (≈ 3 % of the row builder).

use memchr::memchr2;

/// Bytes searched inline before `memchr2` takes over.
const INLINE_BYTES: usize = 64;

/// Index of the first `"` or `\` in `b` at or after `from`; `None` if there is none.
#[inline(always)]
pub fn quote_or_backslash(b: &[u8], from: usize) -> Option<usize> {
    match in_blocks(b, from, from.saturating_add(INLINE_BYTES), block_mask) {
        Ok(found) => Some(found),
        Err(reached) => long_tail(b, reached),
    }
}

/// Index of the first `"`, `\\` or control byte (below 0x20, which JSON forbids inside a
/// string) in `b` at or after `from`; `None` if there is none. The validating pass reads
/// strings with it, so that it needs no separate pass over the page for control bytes.
#[inline(always)]
pub fn string_stop(b: &[u8], from: usize) -> Option<usize> {
    match in_blocks(b, from, usize::MAX, stop_mask) {
        Ok(found) => Some(found),
        Err(reached) => stop_tail(b, reached),
    }
}

/// The first byte `mask` flags, searched a block at a time from `from` while a whole block
/// fits in `b` and starts before `end`: `Ok` with its index, or `Err` with where the search
/// stopped.
#[inline(always)]
fn in_blocks(
    b: &[u8],
    from: usize,
    end: usize,
    mask: impl Fn(&[u8; BLOCK]) -> u32,
) -> Result<usize, usize> {
    let mut i = from;
    while i < end {
        let Some(block) = b
            .get(i..i + BLOCK)
            .and_then(|s| <&[u8; BLOCK]>::try_from(s).ok())
        else {
            break;
        };
        let found = mask(block);
        if found != 0 {
            return Ok(i + found.trailing_zeros() as usize);
        }
        i += BLOCK;
    }
    Err(i)
}

/// The last few bytes of `b` (out of line: rare).
#[inline(never)]
fn stop_tail(b: &[u8], i: usize) -> Option<usize> {
    let rest = b.get(i..)?;
    Some(
        i + rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?,
    )
}

/// The rest of a long string, or the last few bytes of `b` (out of line: rare).
#[inline(never)]
fn long_tail(b: &[u8], i: usize) -> Option<usize> {
    let rest = b.get(i..)?;
    Some(i + memchr2(b'"', b'\\', rest)?)
}

/// Bytes looked at per step.
const BLOCK: usize = 16;

/// Bit `k` set where byte `k` of `block` is `"` or `\`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn block_mask(block: &[u8; BLOCK]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86_64 baseline, so these instructions exist wherever this
    // code runs; the load reads exactly the 16 bytes `block` borrows and needs no alignment.
    let mask = unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        _mm_movemask_epi8(_mm_or_si128(quote, backslash))
    };
    // The mask has 16 bits, all in the low half.
    mask as u32
}

/// Bit `k` set where byte `k` of `block` is `"` or `\`.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn block_mask(block: &[u8; BLOCK]) -> u32 {
    block.iter().enumerate().fold(0, |mask, (k, &c)| {
        mask | (u32::from(c == b'"' || c == b'\\') << k)
    })
}

/// Bit `k` set where byte `k` of `block` is `"`, `\\` or below 0x20.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn stop_mask(block: &[u8; BLOCK]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: as in `block_mask`: SSE2 is in the x86_64 baseline, and the load reads the 16
    // bytes `block` borrows.
    let mask = unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // max(c, 0x1f) == 0x1f exactly when c <= 0x1f (unsigned).
        let limit = _mm_set1_epi8(0x1f);
        let control = _mm_cmpeq_epi8(_mm_max_epu8(v, limit), limit);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control))
    };
    mask as u32
}

/// Bit `k` set where byte `k` of `block` is `"`, `\\` or below 0x20.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn stop_mask(block: &[u8; BLOCK]) -> u32 {
    block.iter().enumerate().fold(0, |mask, (k, &c)| {
        mask | (u32::from(c == b'"' || c == b'\\' || c < 0x20) << k)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(b: &[u8], from: usize) -> Option<usize> {
        b.get(from..)?
            .iter()
            .position(|&c| c == b'"' || c == b'\\')
            .map(|k| from + k)
    }

    fn stop_reference(b: &[u8], from: usize) -> Option<usize> {
        b.get(from..)?
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
            .map(|k| from + k)
    }

    #[test]
    fn finds_the_first_stop_of_a_string_at_every_offset() {
        for len in [0usize, 1, 15, 16, 17, 33, 64, 65, 200] {
            for at in 0..len {
                for target in [b'"', b'\\', 0x00, b'\t', 0x1f] {
                    let mut b = vec![b' '; len];
                    b.iter_mut().step_by(3).for_each(|c| *c = 0x7f);
                    b[at] = target;
                    for from in [0, at.saturating_sub(1), at, at + 1] {
                        let want = stop_reference(&b, from);
                        assert_eq!(string_stop(&b, from), want, "len {len}, {target} at {at}");
                    }
                }
            }
            assert_eq!(string_stop(&vec![0x20; len], 0), None, "a space is no stop");
            assert_eq!(string_stop(&vec![0x80; len], 0), None);
        }
    }

    #[test]
    fn finds_the_first_quote_or_backslash_at_every_offset() {
        // Every position of the target around the block and inline boundaries, both bytes,
        // and bytes that differ from them by one bit (a wrong compare would match those).
        for len in [0usize, 1, 15, 16, 17, 31, 32, 63, 64, 65, 80, 200] {
            for at in 0..len {
                for target in [b'"', b'\\'] {
                    for from in [0, 1, at.saturating_sub(1), at, at + 1] {
                        let mut b = vec![b'"' ^ 0x01; len];
                        b.iter_mut().step_by(3).for_each(|c| *c = b'\\' ^ 0x40);
                        b[at] = target;
                        assert_eq!(
                            quote_or_backslash(&b, from),
                            reference(&b, from),
                            "len {len}, target {target} at {at}, from {from}"
                        );
                    }
                }
            }
            assert_eq!(quote_or_backslash(&vec![b'a'; len], 0), None);
        }
        assert_eq!(quote_or_backslash(b"ab", 3), None, "a start past the end");
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn agrees_with_a_plain_search(
            // Mostly other bytes (any value, those near `"` and `\` included), so that the
            // targets fall in every block and past the inline bytes.
            b in proptest::collection::vec(
                prop_oneof![40 => any::<u8>(), 1 => Just(b'"'), 1 => Just(b'\\')],
                0..300,
            ),
            from in 0usize..320,
        ) {
            prop_assert_eq!(quote_or_backslash(&b, from), reference(&b, from));
            prop_assert_eq!(string_stop(&b, from), stop_reference(&b, from));
        }
    }
}
