//! The events of one Okta page: the response body, kept whole, and where each event object
//! sits in it, with its head ([`super::head`]) when it could be read on the way.
//!
//! Why one pass: the collector used to parse the body into `Vec<Box<RawValue>>` with
//! serde_json (an allocation and a copy per event) and then walk every event again for its
//! `uuid`, `published` and `domain` (BENCHMARKS.md, issue 14). Here the shared validating
//! scanner ([`common::json_scan`]) splits the array and reads each head in one walk over the
//! bytes, which stay where they arrived. When the scanner cannot vouch for the body, serde_json
//! reads it as before — same acceptance, same error messages — and every head is left for
//! [`super::page::prepare_page`] to read with serde_json. `collector/tests/page_fuzz.rs` holds
//! the two readings to the same answers.

use std::fmt;

use common::json_scan::{for_each_element, Refused, Scan};
use serde_json::value::RawValue;

use super::error::OktaError;
use super::head::{read_event, Head, HeadAt};

/// The events of a page, in order, each a JSON object exactly as Okta sent it.
#[derive(Default)]
pub struct Events {
    /// The response body.
    text: String,
    slots: Vec<Slot>,
}

/// One event: its bytes `start..end` of the body, and its head if it was read on the way.
#[derive(Debug, Clone, Copy)]
struct Slot {
    start: usize,
    end: usize,
    head: Option<HeadAt>,
}

/// One event of a page: its text, and its head when the split read it.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub(crate) text: &'a str,
    pub(crate) head: Option<Head<'a>>,
}

impl<'a> Event<'a> {
    /// An event whose head has not been read: [`super::prepare_page`] reads it with
    /// serde_json (the audit's repair pages, which come from several Okta pages).
    pub fn unread(text: &'a str) -> Self {
        Event { text, head: None }
    }

    /// The event's JSON text, exactly as Okta sent it.
    pub fn text(&self) -> &'a str {
        self.text
    }
}

impl Events {
    /// Splits `text`, a response body that starts with `[` (after whitespace), into its
    /// events; `Malformed` unless it is a JSON array whose elements are all objects.
    pub(crate) fn split(text: String) -> Result<Self, OktaError> {
        let slots = match scan(&text) {
            Ok(slots) => slots,
            // Not vouched for: serde_json decides, and names the error. One such event (deep
            // nesting, an odd escape in a key) sends the whole page this way, every head then
            // read by serde_json: slower, never different.
            Err(Refused) => read_with_serde(&text)?,
        };
        Ok(Events { text, slots })
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the page has no event.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The events in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Event<'_>> + '_ {
        self.slots.iter().map(|slot| {
            let text = self.text.get(slot.start..slot.end).unwrap_or_default();
            Event {
                text,
                head: slot.head.and_then(|h| h.read(&self.text)),
            }
        })
    }
}

/// Counts only: the events are Okta's data and stay out of logs.
impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("events", &self.slots.len())
            .field("bytes", &self.text.len())
            .finish()
    }
}

/// The scanner's split: every element an object, each head read where it is plain.
fn scan(text: &str) -> Scan<Vec<Slot>> {
    let mut slots = Vec::new();
    for_each_element(text, |s, _| {
        let start = s.pos();
        let head = read_event(s)?;
        slots.push(Slot {
            start,
            end: s.pos(),
            head,
        });
        Ok(())
    })?;
    Ok(slots)
}

/// serde_json's split, the reference: no head is read.
fn read_with_serde(text: &str) -> Result<Vec<Slot>, OktaError> {
    let events: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| {
        OktaError::Malformed(format!("invalid JSON array ({} bytes): {e}", text.len()))
    })?;
    let base = text.as_ptr() as usize;
    events
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let event = raw.get();
            if !event.starts_with('{') {
                return Err(OktaError::Malformed(format!(
                    "element {i} of the page is not a JSON object"
                )));
            }
            // A borrowed `RawValue` is a slice of `text`.
            let start = (event.as_ptr() as usize).wrapping_sub(base);
            let end = start.saturating_add(event.len());
            if text.get(start..end) != Some(event) {
                return Err(OktaError::Malformed(format!(
                    "element {i} of the page cannot be located in the body"
                )));
            }
            Ok(Slot {
                start,
                end,
                head: None,
            })
        })
        .collect()
}
