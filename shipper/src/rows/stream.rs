//! One streaming pass over a page: the top-level array is walked element by element, and each
//! event's manifest values are captured (as borrowed slices of the page) while the parser is
//! on it.
//!
//! Splitting the page into `Vec<&RawValue>` first and then parsing each event again scanned
//! every byte twice (a quarter of the row builder's time); this reads it once. Events before
//! `from_event` are still read — the page must be valid JSON and every event an object, as
//! before — but only as `&RawValue`, without descending into them.

use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::flatten::{check_depth, Captured, ObjectSeed, EVENT_LEVEL};
use super::manifest::Node;

/// Walks the JSON array `page`, filling `cap` for each event `from_event..` along `tree` and
/// handing it to `on_event` with the event's index.
///
/// Fails on anything the two-pass reading ([`super::events`] then
/// [`super::flatten::capture`]) refuses, and only then; the error does not say which of its
/// cases it was (the caller asks the two-pass reading for that).
pub(crate) fn for_each_event<'de, F>(
    page: &'de str,
    tree: &Node,
    from_event: usize,
    cap: &mut Captured<'de>,
    on_event: F,
) -> Result<(), serde_json::Error>
where
    F: FnMut(usize, &Captured<'de>),
{
    let mut de = serde_json::Deserializer::from_str(page);
    PageSeed {
        tree,
        from_event,
        cap,
        on_event,
    }
    .deserialize(&mut de)?;
    de.end()
}

struct PageSeed<'a, 'c, 'de, F> {
    tree: &'a Node,
    from_event: usize,
    cap: &'c mut Captured<'de>,
    on_event: F,
}

impl<'de, F> DeserializeSeed<'de> for PageSeed<'_, '_, 'de, F>
where
    F: FnMut(usize, &Captured<'de>),
{
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // Like `Vec<&RawValue>`: anything but an array is refused here.
        d.deserialize_seq(self)
    }
}

impl<'de, F> Visitor<'de> for PageSeed<'_, '_, 'de, F>
where
    F: FnMut(usize, &Captured<'de>),
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            if index < self.from_event {
                // Already shipped: validated and checked to be an object, not captured.
                match seq.next_element::<&'de RawValue>()? {
                    None => return Ok(()),
                    Some(raw) if raw.get().starts_with('{') => {
                        check_depth(raw, EVENT_LEVEL - 1)?;
                    }
                    Some(_) => {
                        return Err(de::Error::invalid_type(
                            de::Unexpected::Other("non-object event"),
                            &"a JSON object",
                        ))
                    }
                }
            } else {
                self.cap.clear();
                let seed = EventSeed {
                    tree: self.tree,
                    cap: &mut *self.cap,
                };
                if seq.next_element_seed(seed)?.is_none() {
                    return Ok(());
                }
                (self.on_event)(index, &*self.cap);
            }
            index += 1;
        }
    }
}

/// One event: it must be an object (serde_json's `deserialize_map` refuses anything else),
/// whose members are captured like [`super::flatten::capture`] does.
struct EventSeed<'a, 'c, 'de> {
    tree: &'a Node,
    cap: &'c mut Captured<'de>,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(ObjectSeed::new(self.tree, self.cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::manifest::manifest;

    /// The indices and `uuid` texts the walk reports for `page` from `from`.
    fn walk(page: &str, from: usize) -> Result<Vec<(usize, Option<String>)>, serde_json::Error> {
        let m = manifest();
        let uuid = m
            .columns()
            .iter()
            .position(|c| c.name == "uuid_g")
            .map(|i| m.slots[i]);
        let mut cap = Captured::new(m.leaf_count, m.rest_count);
        let mut seen = Vec::new();
        for_each_event(page, &m.tree, from, &mut cap, |i, cap| {
            let text = match uuid {
                Some(crate::rows::manifest::Slot::Leaf(id)) => cap.leaves[id].map(str::to_string),
                _ => None,
            };
            seen.push((i, text));
        })?;
        Ok(seen)
    }

    #[test]
    fn reports_each_event_from_the_first_wanted() {
        let page = r#" [ {"uuid":"a"}, {"x":[1,{"uuid":"no"}]} ,{"uuid":"c","uuid":"d"} ] "#;
        let got = walk(page, 0).unwrap();
        assert_eq!(
            got,
            vec![
                (0, Some(r#""a""#.to_string())),
                (1, None),
                (2, Some(r#""d""#.to_string())),
            ]
        );
        let got = walk(page, 2).unwrap();
        assert_eq!(got, vec![(2, Some(r#""d""#.to_string()))]);
        assert!(walk(page, 7).unwrap().is_empty());
        assert!(walk("[]", 0).unwrap().is_empty());
    }

    #[test]
    fn refuses_what_the_two_pass_reading_refuses() {
        for page in [
            r#"{"uuid":"a"}"#,
            r#"[{"uuid":"a"}"#,
            r#"[{"uuid":"a"},]"#,
            r#"[{"uuid":"a"}] x"#,
            r#"[{"uuid":"a"}, 3]"#,
            r#"[3, {"uuid":"a"}]"#,
            r#"[{"uuid":"a"}, "s"]"#,
            r#"[{"client": 1e999}]"#,
        ] {
            assert!(walk(page, 0).is_err(), "{page}");
        }
        // Events before `from` are still checked to be objects.
        assert!(walk(r#"[3, {"uuid":"a"}]"#, 1).is_err());
        assert!(walk(r#"[[], {"uuid":"a"}]"#, 1).is_err());
    }

    /// The walk checks the nesting of every value it borrows, wherever it sits, so that no
    /// separate scan of the page is needed: at the limit it walks on, one deeper it refuses.
    #[test]
    fn refuses_values_nested_past_the_limit_wherever_they_are() {
        use crate::rows::MAX_NESTING;
        // `{level}` is where the value's first bracket sits in the page.
        let cases: [(&str, usize, usize); 5] = [
            // a leaf (`target` is one), an unclaimed member, an array where an object is
            // expected (`client`), an unclaimed member of a nested object, a skipped event.
            (r#"[{"target":@}]"#, 3, 0),
            (r#"[{"unknown":@}]"#, 3, 0),
            (r#"[{"client":[@]}]"#, 4, 0),
            (r#"[{"client":{"zz":@}}]"#, 4, 0),
            (r#"[{"a":@},{"uuid":"b"}]"#, 3, 1),
        ];
        for (shape, level, from) in cases {
            for (extra, ok) in [(0, true), (1, false)] {
                let depth = MAX_NESTING + 1 - level + extra;
                let value = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
                let page = shape.replace('@', &value);
                assert_eq!(walk(&page, from).is_ok(), ok, "{shape} depth {depth}");
            }
        }
    }
}
