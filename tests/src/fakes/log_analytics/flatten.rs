//! The Data Collector API's own flattening of nested JSON into suffixed columns
//! (`docs/contracts.md` §2.2, `docs/okta-cl-columns.md` "Flattening rules").
//!
//! The legacy service, not the client, turns `{"client":{"geographicalContext":{"city":"X"}}}`
//! into `client_geographicalContext_city_s`. The fake reproduces that so a test can check that
//! the shipper's legacy sink posts *nested* events (posting pre-suffixed names would produce
//! `client_ipAddress_s_s`) and that both sinks fill the content columns with the same values.
//!
//! Rules implemented, from Microsoft's documentation of the API:
//! - nested objects are flattened at any depth, path segments joined with `_`;
//! - arrays are not flattened: the whole array becomes one JSON string in a `_s` column;
//! - `null` properties (and empty objects, which hold nothing) are omitted from the row;
//! - a JSON string is typed `_g` when it looks like a GUID (dashed, 32 hex digits, braced or
//!   parenthesised; stored in the dashed lower-case form), `_t` when it is an ISO 8601
//!   date-time, `_s` otherwise; every number is `_d` (a double), a boolean `_b`;
//! - the type of a column is fixed when the column is created. A later value of the same
//!   property first goes to the column of its natural type if that exists, else to the first
//!   existing column it *converts* to (a string `"1"` into `number_d`, `"true"` into
//!   `boolean_b`); only a string converts, and only to a type it parses as. A value that fits
//!   no existing column creates a new column with its own suffix (the documented example: a
//!   number sent for `boolean_b` creates `boolean_d`, for `string_s` creates `string_d`);
//! - string values longer than 32 KB are truncated (counted);
//! - a table holds at most 500 columns: a value that would create the 501st is dropped
//!   (counted; the documentation gives the limit but not the behaviour).
//!
//! `_t` values keep the string that was sent (the service stores a datetime; keeping the text
//! lets tests compare it byte for byte with what the Logs Ingestion sink sends). `_d` values
//! are stored as JSON doubles: compare them with `Value::as_f64`.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Longest string value the Data Collector API stores; longer values are truncated.
pub const DC_FIELD_LIMIT_BYTES: usize = 32 * 1024;

/// Most columns a Data Collector table can have.
pub const DC_MAX_COLUMNS: usize = 500;

/// The type (and name suffix) of a Data Collector column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DcType {
    String,
    Boolean,
    Double,
    DateTime,
    Guid,
}

impl DcType {
    /// The suffix the service appends to the property path.
    pub fn suffix(self) -> &'static str {
        match self {
            DcType::String => "_s",
            DcType::Boolean => "_b",
            DcType::Double => "_d",
            DcType::DateTime => "_t",
            DcType::Guid => "_g",
        }
    }
}

/// One leaf value of a record, after arrays were serialised and strings truncated.
enum Leaf {
    Str(String),
    Num(f64),
    Bool(bool),
}

impl Leaf {
    /// The type JSON type inference gives the value when its column does not exist yet.
    fn natural(&self) -> DcType {
        match self {
            Leaf::Str(s) if parse_guid(s).is_some() => DcType::Guid,
            Leaf::Str(s) if is_iso_datetime(s) => DcType::DateTime,
            Leaf::Str(_) => DcType::String,
            Leaf::Num(_) => DcType::Double,
            Leaf::Bool(_) => DcType::Boolean,
        }
    }

    /// The stored value if this leaf converts to a column of type `ty`.
    fn convert_to(&self, ty: DcType) -> Option<Value> {
        match (self, ty) {
            (Leaf::Str(s), DcType::String) => Some(Value::String(s.clone())),
            (Leaf::Str(s), DcType::Guid) => parse_guid(s).map(Value::String),
            (Leaf::Str(s), DcType::DateTime) if is_iso_datetime(s) => {
                Some(Value::String(s.clone()))
            }
            (Leaf::Str(s), DcType::Double) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number),
            (Leaf::Str(s), DcType::Boolean) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            (Leaf::Num(n), DcType::Double) => serde_json::Number::from_f64(*n).map(Value::Number),
            (Leaf::Bool(b), DcType::Boolean) => Some(Value::Bool(*b)),
            _ => None,
        }
    }
}

/// What flattening one record produced.
#[derive(Debug, Default)]
pub struct Flattened {
    /// The row: column name (with suffix) → value.
    pub row: Map<String, Value>,
    /// String values cut to [`DC_FIELD_LIMIT_BYTES`].
    pub truncated_fields: u64,
    /// Values dropped because the table already had [`DC_MAX_COLUMNS`] columns.
    pub dropped_fields: u64,
}

/// The columns of one custom table (`{Log-Type}_CL`), which decide where later values go.
#[derive(Debug, Default)]
pub struct DcTable {
    /// Property path → column types in creation order.
    columns: HashMap<String, Vec<DcType>>,
    column_count: usize,
}

impl DcTable {
    /// How many columns the table has (system columns such as `TimeGenerated` excluded).
    pub fn column_count(&self) -> usize {
        self.column_count
    }

    /// Flattens one posted record into a row, creating columns as the service would.
    pub fn ingest(&mut self, record: &Map<String, Value>) -> Flattened {
        let mut out = Flattened::default();
        for (key, value) in record {
            self.walk(key, value, &mut out);
        }
        out
    }

    fn walk(&mut self, path: &str, value: &Value, out: &mut Flattened) {
        let leaf = match value {
            Value::Null => return,
            Value::Object(map) => {
                for (k, v) in map {
                    self.walk(&format!("{path}_{k}"), v, out);
                }
                return;
            }
            Value::Array(_) => Leaf::Str(truncate(value.to_string(), out)),
            Value::String(s) => Leaf::Str(truncate(s.clone(), out)),
            Value::Number(n) => match n.as_f64() {
                Some(f) => Leaf::Num(f),
                None => return,
            },
            Value::Bool(b) => Leaf::Bool(*b),
        };
        match self.place(path, &leaf) {
            Some((ty, v)) => {
                out.row.insert(format!("{path}{}", ty.suffix()), v);
            }
            None => out.dropped_fields += 1,
        }
    }

    /// Chooses the column for `leaf` under property `path`, creating it if needed.
    fn place(&mut self, path: &str, leaf: &Leaf) -> Option<(DcType, Value)> {
        let natural = leaf.natural();
        if let Some(existing) = self.columns.get(path) {
            if existing.contains(&natural) {
                return leaf.convert_to(natural).map(|v| (natural, v));
            }
            for ty in existing {
                if let Some(v) = leaf.convert_to(*ty) {
                    return Some((*ty, v));
                }
            }
        }
        if self.column_count >= DC_MAX_COLUMNS {
            return None;
        }
        let v = leaf.convert_to(natural)?;
        self.columns
            .entry(path.to_string())
            .or_default()
            .push(natural);
        self.column_count += 1;
        Some((natural, v))
    }
}

/// Cuts `s` to at most [`DC_FIELD_LIMIT_BYTES`] bytes on a character boundary.
fn truncate(mut s: String, out: &mut Flattened) -> String {
    if s.len() > DC_FIELD_LIMIT_BYTES {
        let mut end = DC_FIELD_LIMIT_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        out.truncated_fields += 1;
    }
    s
}

/// The dashed lower-case form of `s` if it looks like a GUID: `xxxxxxxx-xxxx-xxxx-xxxx-
/// xxxxxxxxxxxx`, 32 hex digits, or either of those in `{}` / `()` (the forms .NET's
/// `Guid.TryParse` accepts, which the service uses).
pub fn parse_guid(s: &str) -> Option<String> {
    let inner =
        if (s.starts_with('{') && s.ends_with('}')) || (s.starts_with('(') && s.ends_with(')')) {
            s.get(1..s.len().saturating_sub(1))?
        } else {
            s
        };
    let hex: String = match inner.len() {
        32 => inner.to_string(),
        36 => {
            let b = inner.as_bytes();
            if [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
                return None;
            }
            inner.chars().filter(|&c| c != '-').collect()
        }
        _ => return None,
    };
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// Whether `s` is an ISO 8601 date-time (date, `T`, time, optional fraction, optional zone).
pub fn is_iso_datetime(s: &str) -> bool {
    parse_iso_datetime(s).is_some()
}

/// Parses an ISO 8601 date-time; a value without a zone is taken as UTC.
pub fn parse_iso_datetime(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    // Require the `T` form: the service does not type a bare date or a space-separated
    // timestamp as a datetime from JSON inference.
    if s.len() < 19 || s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn flattens_an_okta_event_like_the_legacy_connector() {
        let mut t = DcTable::default();
        let f = t.ingest(&obj(json!({
            "uuid": "DC9FD3C0-598C-11EF-8478-2B7584BF8D5B",
            "published": "2024-08-13T10:00:00.123Z",
            "version": "0",
            "severity": "INFO",
            "actor": {"id": "00u1", "detailEntry": null},
            "client": {"geographicalContext": {"geolocation": {"lat": 37.5, "lon": -122}}},
            "securityContext": {"isProxy": false, "asNumber": 7922},
            "target": [{"id": "0oa1", "type": "AppInstance"}],
            "debugContext": {"debugData": {"deviceFingerprint": "3f2c4a5b6c7d8e9f0a1b2c3d4e5f6a7b"}},
            "authenticationContext": {"issuer": null, "externalSessionId": "102abc"},
            "empty": {}
        })));
        let r = &f.row;
        assert_eq!(r["uuid_g"], json!("dc9fd3c0-598c-11ef-8478-2b7584bf8d5b"));
        assert_eq!(r["published_t"], json!("2024-08-13T10:00:00.123Z"));
        assert_eq!(r["version_s"], json!("0"));
        assert_eq!(r["actor_id_s"], json!("00u1"));
        assert!(!r.contains_key("actor_detailEntry_s"));
        assert_eq!(
            r["client_geographicalContext_geolocation_lat_d"].as_f64(),
            Some(37.5)
        );
        assert_eq!(
            r["client_geographicalContext_geolocation_lon_d"].as_f64(),
            Some(-122.0)
        );
        assert_eq!(r["securityContext_isProxy_b"], json!(false));
        assert_eq!(r["securityContext_asNumber_d"].as_f64(), Some(7922.0));
        assert_eq!(
            r["target_s"],
            json!(r#"[{"id":"0oa1","type":"AppInstance"}]"#)
        );
        assert_eq!(
            r["debugContext_debugData_deviceFingerprint_g"],
            json!("3f2c4a5b-6c7d-8e9f-0a1b-2c3d4e5f6a7b")
        );
        assert_eq!(
            r["authenticationContext_externalSessionId_s"],
            json!("102abc")
        );
        assert!(!r.keys().any(|k| k.starts_with("empty")));
        assert!(!r
            .keys()
            .any(|k| k.starts_with("authenticationContext_issuer")));
    }

    #[test]
    fn later_values_follow_the_documented_conversion_rules() {
        let mut t = DcTable::default();
        let first = t.ingest(&obj(json!({"number": 1, "boolean": true, "string": "s"})));
        let mut names: Vec<_> = first.row.keys().cloned().collect();
        names.sort();
        assert_eq!(names, vec!["boolean_b", "number_d", "string_s"]);
        // All values as strings: they convert, no new column.
        let second = t.ingest(&obj(
            json!({"number": "2", "boolean": "false", "string": "t"}),
        ));
        assert_eq!(second.row["number_d"].as_f64(), Some(2.0));
        assert_eq!(second.row["boolean_b"], json!(false));
        assert_eq!(second.row["string_s"], json!("t"));
        // Numbers that cannot convert create boolean_d and string_d.
        let third = t.ingest(&obj(json!({"number": 3, "boolean": 1, "string": 1})));
        assert_eq!(third.row["boolean_d"].as_f64(), Some(1.0));
        assert_eq!(third.row["string_d"].as_f64(), Some(1.0));
        assert_eq!(t.column_count(), 5);
        // On a fresh table, strings that look like numbers or booleans stay strings.
        let mut fresh = DcTable::default();
        let r = fresh
            .ingest(&obj(json!({"number": "1", "boolean": "true"})))
            .row;
        assert_eq!(r["number_s"], json!("1"));
        assert_eq!(r["boolean_s"], json!("true"));
    }

    #[test]
    fn long_values_are_truncated_and_the_column_limit_holds() {
        let mut t = DcTable::default();
        let long = "é".repeat(DC_FIELD_LIMIT_BYTES);
        let f = t.ingest(&obj(json!({ "big": long })));
        assert_eq!(f.truncated_fields, 1);
        let stored = f.row["big_s"].as_str().unwrap_or_default();
        assert!(stored.len() <= DC_FIELD_LIMIT_BYTES && stored.len() > DC_FIELD_LIMIT_BYTES - 2);

        let mut wide = Map::new();
        for i in 0..(DC_MAX_COLUMNS + 3) {
            wide.insert(format!("c{i:03}"), json!(i));
        }
        let f = t.ingest(&wide);
        assert_eq!(t.column_count(), DC_MAX_COLUMNS);
        assert_eq!(f.dropped_fields, 4); // `big_s` already took one column
    }

    #[test]
    fn guid_and_datetime_detection() {
        assert_eq!(
            parse_guid("{8145D822-13A7-44AD-859C-36F31A84F6DD}").as_deref(),
            Some("8145d822-13a7-44ad-859c-36f31a84f6dd")
        );
        assert_eq!(
            parse_guid("8145d82213a744ad859c36f31a84f6dd").as_deref(),
            Some("8145d822-13a7-44ad-859c-36f31a84f6dd")
        );
        assert_eq!(parse_guid("8145d822-13a7-44ad-859c-36f31a84f6dg"), None);
        assert_eq!(parse_guid("8145d822a13a7-44ad-859c-36f31a84f6d"), None);
        assert!(is_iso_datetime("2024-08-13T10:00:00Z"));
        assert!(is_iso_datetime("2024-08-13T10:00:00.1234567+02:00"));
        assert!(is_iso_datetime("2024-08-13T10:00:00"));
        assert!(!is_iso_datetime("2024-08-13"));
        assert!(!is_iso_datetime("2024-08-13 10:00:00Z"));
        assert!(!is_iso_datetime("yesterday at noon"));
    }
}
