//! Keeping an original event inside the Data Collector API's per-field limit.
//!
//! The legacy service flattens an event itself: every string of a nested object becomes one
//! field, every array one JSON-text field (`target_s`). It truncates a field value longer than
//! 32 KB, which for an array leaves invalid JSON in the column (a group change with thousands of
//! targets) and is counted nowhere. So we cut first, the way the Logs Ingestion rows are cut: a
//! long string at a char boundary, an array by whole trailing elements (it stays valid JSON),
//! each cut counted. An event under the limit as a whole (almost all) is sent byte for byte.

use serde_json::Value;

use super::truncate::floor_char_boundary;

/// Longest field value sent: the service's 32 KB, less a margin for its own serialisation of
/// arrays (spacing, escapes).
pub const DC_FIELD_LIMIT: usize = 32_000;

/// The event's bytes to send and the number of values cut. `raw` is one event of a page.
pub(crate) fn fit(raw: &str) -> Result<(Vec<u8>, u64), serde_json::Error> {
    if raw.len() <= DC_FIELD_LIMIT {
        // No value of it can be longer than the whole.
        return Ok((raw.as_bytes().to_vec(), 0));
    }
    let mut event: Value = serde_json::from_str(raw)?;
    let mut cuts = 0;
    fit_value(&mut event, &mut cuts);
    if cuts == 0 {
        return Ok((raw.as_bytes().to_vec(), 0));
    }
    Ok((serde_json::to_vec(&event)?, cuts))
}

/// Walks the fields the service makes: members of objects at any depth; an array is one field.
fn fit_value(v: &mut Value, cuts: &mut u64) {
    match v {
        Value::Object(members) => {
            for (_, m) in members.iter_mut() {
                fit_value(m, cuts);
            }
        }
        Value::String(s) if s.len() > DC_FIELD_LIMIT => {
            s.truncate(floor_char_boundary(s, DC_FIELD_LIMIT));
            *cuts += 1;
        }
        Value::Array(items) => {
            // `[` + elements joined by `,` + `]`, compact.
            let sizes: Vec<usize> = items
                .iter()
                .map(|i| serde_json::to_vec(i).map_or(usize::MAX / 4, |b| b.len()))
                .collect();
            let mut total = 2 + sizes.iter().sum::<usize>() + sizes.len().saturating_sub(1);
            if total > DC_FIELD_LIMIT {
                let mut keep = sizes.len();
                while keep > 0 && total > DC_FIELD_LIMIT {
                    keep -= 1;
                    total -= sizes[keep] + usize::from(keep > 0);
                }
                items.truncate(keep);
                *cuts += 1;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_events_are_sent_as_they_are() {
        let raw = r#"{"a": 1,  "b": "x"}"#;
        assert_eq!(fit(raw).unwrap(), (raw.as_bytes().to_vec(), 0));
    }

    #[test]
    fn long_arrays_lose_trailing_elements_and_long_strings_are_cut() {
        let targets: Vec<Value> = (0..3_000)
            .map(|i| serde_json::json!({"id": format!("target-{i}"), "type": "User"}))
            .collect();
        let event = serde_json::json!({
            "uuid": "u",
            "target": targets,
            "debugContext": {"debugData": {"url": "é".repeat(20_000)}},
            "small": [1, 2, 3],
        });
        let (bytes, cuts) = fit(&event.to_string()).unwrap();
        assert_eq!(cuts, 2);
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        let target = serde_json::to_vec(&back["target"]).unwrap();
        assert!(target.len() <= DC_FIELD_LIMIT && target.len() > DC_FIELD_LIMIT - 100);
        assert_eq!(back["target"][0], event["target"][0]);
        let url = back["debugContext"]["debugData"]["url"].as_str().unwrap();
        assert!(url.len() <= DC_FIELD_LIMIT && url.chars().all(|c| c == 'é'));
        assert_eq!(back["small"], event["small"]);
        assert_eq!(back["uuid"], "u");
    }

    #[test]
    fn a_big_event_with_only_small_fields_is_untouched() {
        let fields: serde_json::Map<String, Value> = (0..2_000)
            .map(|i| (format!("f{i}"), Value::String("v".repeat(20))))
            .collect();
        let raw = Value::Object(fields).to_string();
        assert!(raw.len() > DC_FIELD_LIMIT);
        assert_eq!(fit(&raw).unwrap(), (raw.as_bytes().to_vec(), 0));
    }
}
