//! Parsing a Logs Ingestion body against the DCR stream declaration.
//!
//! One streaming pass over the JSON: every item must be an object; declared columns are
//! type-checked; undeclared columns are skipped without being built (a DCR-based table
//! silently drops them); rows are materialised only when the fake stores them. That keeps
//! the count-only mode cheap enough for the throughput bench (tens of thousands of rows per
//! second on a loaded test machine).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Map, Value};

/// Longest string value the Logs Ingestion API stores; longer values are truncated.
pub const LI_FIELD_LIMIT_BYTES: usize = 64 * 1024;

/// A column type of a DCR stream declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Int,
    Long,
    Real,
    Boolean,
    DateTime,
    Dynamic,
}

impl ColumnType {
    /// Parses a declaration type (`string int long real boolean dynamic datetime`; the table
    /// spellings `dateTime` and `guid` are accepted too, `guid` holding a string).
    pub fn parse(s: &str) -> Option<ColumnType> {
        Some(match s.to_ascii_lowercase().as_str() {
            "string" | "guid" => ColumnType::String,
            "int" => ColumnType::Int,
            "long" => ColumnType::Long,
            "real" => ColumnType::Real,
            "boolean" | "bool" => ColumnType::Boolean,
            "datetime" => ColumnType::DateTime,
            "dynamic" => ColumnType::Dynamic,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Int => "int",
            ColumnType::Long => "long",
            ColumnType::Real => "real",
            ColumnType::Boolean => "boolean",
            ColumnType::DateTime => "datetime",
            ColumnType::Dynamic => "dynamic",
        }
    }

    /// Whether a value of `kind` can go into a column of this type (`null` always can).
    fn accepts(self, kind: &Kind<'_>) -> bool {
        match (self, kind) {
            (_, Kind::Null) | (ColumnType::Dynamic, _) => true,
            (ColumnType::String, Kind::Str(_)) => true,
            (ColumnType::Int, Kind::Int(i)) => i32::try_from(*i).is_ok(),
            (ColumnType::Long, Kind::Int(i)) => i64::try_from(*i).is_ok(),
            (ColumnType::Real, Kind::Int(_) | Kind::Float) => true,
            (ColumnType::Boolean, Kind::Bool) => true,
            (ColumnType::DateTime, Kind::Str(s)) => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
            _ => false,
        }
    }
}

/// The JSON kind of a value, with what the type checks need to see of it.
#[derive(Debug)]
enum Kind<'a> {
    Null,
    Bool,
    Int(i128),
    Float,
    Str(Cow<'a, str>),
    Compound,
}

impl Kind<'_> {
    fn of(v: &Value) -> Kind<'_> {
        match v {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Kind::Int(i128::from(i)),
                (None, Some(u)) => Kind::Int(i128::from(u)),
                _ => Kind::Float,
            },
            Value::String(s) => Kind::Str(Cow::Borrowed(s)),
            Value::Array(_) | Value::Object(_) => Kind::Compound,
        }
    }

    fn describe(&self) -> String {
        match self {
            Kind::Null => "null".into(),
            Kind::Bool => "a boolean".into(),
            Kind::Int(i) => format!("the integer {i}"),
            Kind::Float => "a real number".into(),
            Kind::Str(s) => format!("the string {:?}", truncate_for_message(s)),
            Kind::Compound => "an array or object".into(),
        }
    }
}

fn truncate_for_message(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The outcome of parsing one accepted body.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Items in the array.
    pub count: usize,
    /// The `uuid_g` of each row that has one (as a string), in order.
    pub uuids: Vec<String>,
    /// The rows as stored (declared columns only, `null`s omitted), when storing.
    pub rows: Vec<Map<String, Value>>,
    /// String values longer than [`LI_FIELD_LIMIT_BYTES`] (truncated in stored rows).
    pub truncated_fields: u64,
    /// The `published_t` of each row that has one (as sent), in order: the arrival lag of an
    /// event is the time its row is accepted minus this.
    pub published: Vec<String>,
}

/// Parses `body` (a JSON array of objects) against `columns` (`None`: accept anything).
/// The error text explains the first problem, as the service's 400 message does.
pub fn parse(
    body: &[u8],
    columns: Option<&HashMap<String, ColumnType>>,
    store: bool,
) -> Result<Parsed, String> {
    let mut ctx = Ctx {
        columns,
        store,
        out: Parsed::default(),
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    (&mut ctx)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| e.to_string())?;
    Ok(ctx.out)
}

struct Ctx<'c> {
    columns: Option<&'c HashMap<String, ColumnType>>,
    store: bool,
    out: Parsed,
}

impl<'de> DeserializeSeed<'de> for &mut Ctx<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for &mut Ctx<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(RowSeed(&mut *self))?.is_some() {}
        Ok(())
    }
}

struct RowSeed<'a, 'c>(&'a mut Ctx<'c>);

impl<'de> DeserializeSeed<'de> for RowSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object (one row)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.0;
        let index = ctx.out.count;
        let mut row = Map::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let ty = match ctx.columns {
                None => None,
                Some(cols) => match cols.get(key.as_ref()) {
                    Some(t) => Some(*t),
                    None => {
                        // Not declared: the DCR drops it without complaint.
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                },
            };
            let bad = |kind: &Kind<'_>, ty: ColumnType| {
                A::Error::custom(format!(
                    "row {index}: column '{key}' is declared {} but holds {}",
                    ty.name(),
                    kind.describe()
                ))
            };
            if ctx.store || key == "uuid_g" || key == "published_t" {
                let mut v: Value = map.next_value()?;
                let kind = Kind::of(&v);
                if let Some(t) = ty {
                    if !t.accepts(&kind) {
                        return Err(bad(&kind, t));
                    }
                }
                if let Value::String(s) = &mut v {
                    if s.len() > LI_FIELD_LIMIT_BYTES {
                        let mut end = LI_FIELD_LIMIT_BYTES;
                        while !s.is_char_boundary(end) {
                            end -= 1;
                        }
                        s.truncate(end);
                        ctx.out.truncated_fields += 1;
                    }
                    if key == "uuid_g" {
                        ctx.out.uuids.push(s.clone());
                    } else if key == "published_t" {
                        ctx.out.published.push(s.clone());
                    }
                }
                if ctx.store && !v.is_null() {
                    row.insert(key.into_owned(), v);
                }
            } else {
                match ty {
                    None | Some(ColumnType::Dynamic) => {
                        map.next_value::<IgnoredAny>()?;
                    }
                    Some(t) => {
                        let kind = map.next_value::<KindOwned>()?.0;
                        if !t.accepts(&kind) {
                            return Err(bad(&kind, t));
                        }
                        if matches!(&kind, Kind::Str(s) if s.len() > LI_FIELD_LIMIT_BYTES) {
                            ctx.out.truncated_fields += 1;
                        }
                    }
                }
            }
        }
        ctx.out.count += 1;
        if ctx.store {
            ctx.out.rows.push(row);
        }
        Ok(())
    }
}

/// A map key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a column name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The [`Kind`] of a value read from the stream without building it (arrays and objects
/// are skipped).
struct KindOwned<'de>(Kind<'de>);

impl<'de> serde::Deserialize<'de> for KindOwned<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KindOwned<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(KindOwned(Kind::Null))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(KindOwned(Kind::Null))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(KindOwned(Kind::Bool))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(KindOwned(Kind::Int(i128::from(v))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(KindOwned(Kind::Int(i128::from(v))))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(KindOwned(Kind::Float))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(KindOwned(Kind::Str(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(KindOwned(Kind::Str(Cow::Owned(v.to_owned()))))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KindOwned(Kind::Compound))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(KindOwned(Kind::Compound))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> HashMap<String, ColumnType> {
        [
            ("uuid_g", "string"),
            ("TimeGenerated", "datetime"),
            ("n_d", "real"),
            ("c", "int"),
            ("ok_b", "boolean"),
            ("target_s", "string"),
            ("dyn", "dynamic"),
        ]
        .iter()
        .filter_map(|(n, t)| Some((n.to_string(), ColumnType::parse(t)?)))
        .collect()
    }

    const GOOD: &str = r#"[
        {"uuid_g":"a","TimeGenerated":"2024-01-01T00:00:00.000Z","n_d":1.5,"c":3,
         "ok_b":true,"target_s":"[1]","dyn":{"x":[1,2]},"extra":"dropped","nul":null},
        {"uuid_g":"b","TimeGenerated":null,"n_d":2,"c\u0000":1}
    ]"#;

    #[test]
    fn stored_and_counted_paths_agree() {
        let c = cols();
        let stored = parse(GOOD.as_bytes(), Some(&c), true);
        let counted = parse(GOOD.as_bytes(), Some(&c), false);
        let (stored, counted) = match (stored, counted) {
            (Ok(s), Ok(c)) => (s, c),
            other => panic!("{other:?}"),
        };
        assert_eq!((stored.count, counted.count), (2, 2));
        assert_eq!(stored.uuids, vec!["a", "b"]);
        assert_eq!(counted.uuids, vec!["a", "b"]);
        assert!(counted.rows.is_empty());
        assert!(!stored.rows[0].contains_key("extra"));
        assert!(!stored.rows[0].contains_key("nul"));
        assert!(!stored.rows[1].contains_key("TimeGenerated"));
        assert_eq!(stored.rows[0]["dyn"], serde_json::json!({"x":[1,2]}));
        // Without a declaration everything is kept.
        let any = parse(GOOD.as_bytes(), None, true).map(|p| p.rows[0].contains_key("extra"));
        assert_eq!(any, Ok(true));
    }

    #[test]
    fn type_mismatches_and_shapes_are_refused_in_both_modes() {
        let c = cols();
        for store in [true, false] {
            for bad in [
                r#"[{"TimeGenerated":"yesterday"}]"#,
                r#"[{"n_d":"1.5"}]"#,
                r#"[{"c":1.5}]"#,
                r#"[{"c":3000000000}]"#,
                r#"[{"ok_b":"true"}]"#,
                r#"[{"target_s":[1]}]"#,
                r#"[{"uuid_g":5}]"#,
                r#"{"uuid_g":"a"}"#,
                r#"[["a"]]"#,
                r#"[{"uuid_g":"a"}] trailing"#,
                r#"[{"uuid_g":"a"}"#,
            ] {
                assert!(
                    parse(bad.as_bytes(), Some(&c), store).is_err(),
                    "{bad} {store}"
                );
            }
        }
        let msg = parse(br#"[{"c":"x"}]"#, Some(&c), false)
            .err()
            .unwrap_or_default();
        assert!(msg.contains("column 'c' is declared int"), "{msg}");
    }

    #[test]
    fn long_strings_are_truncated_and_counted() {
        let c = cols();
        let body = format!(
            r#"[{{"target_s":"{}"}}]"#,
            "x".repeat(LI_FIELD_LIMIT_BYTES + 5)
        );
        let stored = parse(body.as_bytes(), Some(&c), true).ok();
        assert_eq!(stored.as_ref().map(|p| p.truncated_fields), Some(1));
        assert_eq!(
            stored.and_then(|p| p.rows[0]["target_s"].as_str().map(str::len)),
            Some(LI_FIELD_LIMIT_BYTES)
        );
        let counted = parse(body.as_bytes(), Some(&c), false).map(|p| p.truncated_fields);
        assert_eq!(counted, Ok(1));
    }
}
