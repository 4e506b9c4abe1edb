//! One pass over an event that captures, per manifest source path, the raw JSON of its value.
//!
//! The legacy flattening (`client.geographicalContext.city` → `client_geographicalContext_city_s`)
//! is fixed per path by the manifest, so the walk only descends into objects the manifest
//! names, borrows each leaf as a `&RawValue` (no copy, no re-serialisation), keeps unclaimed
//! keys of a `rest` object (new `debugData` keys), and borrows every other member as an
//! [`Extra`] for the `additional` column (docs/design.md §4: nothing is dropped silently).
//!
//! It also enforces [`super::MAX_NESTING`] on what it borrows: serde_json skips a borrowed
//! value without a depth limit, and the page's objects the walk descends into are as deep as
//! the manifest at most, so checking the borrowed arrays and objects (a minority of the page's
//! bytes) covers the whole page without a separate scan of every byte.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::jsontext::{depth_exceeds, push_str_literal};
use super::manifest::{Child, Node};
use super::MAX_NESTING;

pub(crate) use common::json_scan::EVENT_LEVEL;

/// Refuses `raw` when, placed in a container at nesting level `level`, it nests deeper than
/// [`MAX_NESTING`] (a string, number or literal never does).
pub(crate) fn check_depth<E: de::Error>(raw: &RawValue, level: usize) -> Result<(), E> {
    let b = raw.get().as_bytes();
    if matches!(b.first(), Some(b'[' | b'{')) && depth_exceeds(b, MAX_NESTING.saturating_sub(level))
    {
        return Err(E::custom(format_args!(
            "nests arrays/objects deeper than {MAX_NESTING} levels"
        )));
    }
    Ok(())
}

/// The captured values of one event, indexed like the manifest's leaves and rest objects.
/// Reused from event to event to avoid allocations.
pub(crate) struct Captured<'de> {
    /// Each value's JSON text, a slice of the page (serde_json's `RawValue` text, or the
    /// same bytes as found by [`super::scan`]).
    pub(crate) leaves: Vec<Option<&'de str>>,
    pub(crate) rests: Vec<Vec<(Cow<'de, str>, &'de str)>>,
    /// Members (and odd values) no column claims, in document order.
    pub(crate) extras: Vec<Extra<'de>>,
}

/// A value of the event that the manifest has no column for: member `key` of the object at
/// manifest node `node`, or (`key: None`) a non-object value where the manifest expects the
/// object `node` (`"client": "x"`).
pub(crate) struct Extra<'de> {
    pub(crate) node: usize,
    pub(crate) key: Option<Cow<'de, str>>,
    /// The value's JSON text: borrowed from the page, or rebuilt for an odd value (rare).
    pub(crate) text: Cow<'de, str>,
}

impl<'de> Captured<'de> {
    pub(crate) fn new(leaf_count: usize, rest_count: usize) -> Self {
        Captured {
            leaves: vec![None; leaf_count],
            rests: (0..rest_count).map(|_| Vec::new()).collect(),
            extras: Vec::new(),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.leaves.iter_mut().for_each(|l| *l = None);
        self.rests.iter_mut().for_each(Vec::clear);
        self.extras.clear();
    }

    /// Keeps the odd value `text` found where node `node`'s object was expected.
    fn odd(&mut self, node: usize, text: String) {
        self.extras.push(Extra {
            node,
            key: None,
            text: Cow::Owned(text),
        });
    }
}

/// Walks `event` (a JSON object) along `tree`, filling `cap`.
///
/// The page-at-once path is [`super::stream::for_each_event`]; this one serves the two-pass
/// reading that names a broken page's error precisely.
pub(crate) fn capture<'de>(
    event: &'de str,
    tree: &Node,
    cap: &mut Captured<'de>,
) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(event);
    ObjectSeed::new(tree, cap).deserialize(&mut de)?;
    de.end()
}

/// Captures the members of the object it is given along `node`; where the manifest expects an
/// object but the event has another kind of value, that value is kept as an [`Extra`].
pub(crate) struct ObjectSeed<'a, 'c, 'de> {
    node: &'a Node,
    cap: &'c mut Captured<'de>,
    /// Nesting level of the object in its page (its members' values are one deeper).
    level: usize,
}

impl<'a, 'c, 'de> ObjectSeed<'a, 'c, 'de> {
    /// The seed of an event object.
    pub(crate) fn new(node: &'a Node, cap: &'c mut Captured<'de>) -> Self {
        Self::at_level(node, cap, EVENT_LEVEL)
    }

    /// The seed of the object `node` at nesting `level` of its page (for [`super::scan`],
    /// which hands it the rare value that is not an object where `node` expects one).
    pub(crate) fn at_level(node: &'a Node, cap: &'c mut Captured<'de>, level: usize) -> Self {
        ObjectSeed { node, cap, level }
    }

    /// The next member's value, borrowed, after the depth check.
    fn raw_value<A: MapAccess<'de>>(&self, map: &mut A) -> Result<&'de RawValue, A::Error> {
        let raw: &'de RawValue = map.next_value()?;
        check_depth(raw, self.level)?;
        Ok(raw)
    }
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match self.node.child(&key) {
                Some(Child::Leaf(id)) => {
                    let raw = self.raw_value(&mut map)?;
                    self.cap.leaves[*id] = Some(raw.get());
                }
                Some(Child::Object(node)) => map.next_value_seed(ObjectSeed {
                    node,
                    cap: &mut *self.cap,
                    level: self.level + 1,
                })?,
                None => match self.node.rest {
                    Some(r) => {
                        let raw = self.raw_value(&mut map)?;
                        self.cap.rests[r].push((key, raw.get()));
                    }
                    None => {
                        let raw = self.raw_value(&mut map)?;
                        if raw.get() != "null" {
                            self.cap.extras.push(Extra {
                                node: self.node.id,
                                key: Some(key),
                                text: Cow::Borrowed(raw.get()),
                            });
                        }
                    }
                },
            }
        }
        Ok(())
    }

    // Where the manifest expects an object, anything else has no column: it is kept as an
    // extra, its JSON text rebuilt (the visitor no longer sees the raw text). Rare.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut text = String::from("[");
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            // The array stands where the object was expected, at the object's level.
            check_depth(item, self.level)?;
            if text.len() > 1 {
                text.push(',');
            }
            text.push_str(item.get());
        }
        text.push(']');
        self.cap.odd(self.node.id, text);
        Ok(())
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.cap.odd(self.node.id, v.to_string());
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.cap.odd(self.node.id, v.to_string());
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.cap.odd(self.node.id, v.to_string());
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // serde_json gives finite values only (an out-of-range literal is a parse error).
        let text = serde_json::to_string(&v).unwrap_or_else(|_| format!("\"{v}\""));
        self.cap.odd(self.node.id, text);
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        let mut lit = Vec::with_capacity(v.len() + 2);
        push_str_literal(v, &mut lit);
        self.cap
            .odd(self.node.id, String::from_utf8_lossy(&lit).into_owned());
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// An object key, borrowed from the page unless it contains escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}
