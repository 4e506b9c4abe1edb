//! One pass over an event that captures, per manifest source path, the raw JSON of its value.
//!
//! The legacy flattening (`client.geographicalContext.city` → `client_geographicalContext_city_s`)
//! is fixed per path by the manifest, so the walk only descends into objects the manifest
//! names, borrows each leaf as a `&RawValue` (no copy, no re-serialisation), keeps unclaimed
//! keys of a `rest` object (new `debugData` keys) and skips everything else without building
//! values.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::manifest::{Child, Node};

/// The captured values of one event, indexed like the manifest's leaves and rest objects.
/// Reused from event to event to avoid allocations.
pub(crate) struct Captured<'de> {
    pub(crate) leaves: Vec<Option<&'de RawValue>>,
    pub(crate) rests: Vec<Vec<(Cow<'de, str>, &'de RawValue)>>,
}

impl<'de> Captured<'de> {
    pub(crate) fn new(leaf_count: usize, rest_count: usize) -> Self {
        Captured {
            leaves: vec![None; leaf_count],
            rests: (0..rest_count).map(|_| Vec::new()).collect(),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.leaves.iter_mut().for_each(|l| *l = None);
        self.rests.iter_mut().for_each(Vec::clear);
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
    ObjectSeed { node: tree, cap }.deserialize(&mut de)?;
    de.end()
}

/// Captures the members of the object it is given along `node`; where the manifest expects an
/// object but the event has another kind of value, that value is skipped (it has no column).
pub(crate) struct ObjectSeed<'a, 'c, 'de> {
    node: &'a Node,
    cap: &'c mut Captured<'de>,
}

impl<'a, 'c, 'de> ObjectSeed<'a, 'c, 'de> {
    pub(crate) fn new(node: &'a Node, cap: &'c mut Captured<'de>) -> Self {
        ObjectSeed { node, cap }
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
                    let raw: &'de RawValue = map.next_value()?;
                    self.cap.leaves[*id] = Some(raw);
                }
                Some(Child::Object(node)) => map.next_value_seed(ObjectSeed {
                    node,
                    cap: &mut *self.cap,
                })?,
                None => match self.node.rest {
                    Some(r) => {
                        let raw: &'de RawValue = map.next_value()?;
                        self.cap.rests[r].push((key, raw));
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                },
            }
        }
        Ok(())
    }

    // Where the manifest expects an object, anything else has no column: skip it.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
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
