//! The column manifest: source path → column name → column type, for the `okta_cl` schema.
//!
//! It is the single source of truth for what the shipper sends through the Logs Ingestion API.
//! A DCR-based table keeps only the columns it declares (and drops the rest silently), so the
//! Bicep table and DCR stream are generated from this file or tested equal to it.
//!
//! # File format (`shipper/manifest/okta_cl.v1.json`, keep it stable)
//!
//! ```json
//! {
//!   "version": 1,                      // bumped on any change of names, types or sources
//!   "table": "Okta_CL",                // destination table
//!   "stream": "Custom-Okta_CL",        // DCR stream the shipper posts to
//!   "notes": ["…"],                    // free text: decisions (e.g. the 46-character column)
//!   "columns": [                       // in the order the shipper writes them
//!     {"name": "TimeGenerated", "type": "datetime", "source": "published"},
//!     {"name": "target_s", "type": "string", "source": "target", "kind": "json"},
//!     …
//!   ]
//! }
//! ```
//!
//! * `name`: the column name, byte for byte the legacy `Okta_CL` name.
//! * `type`: the DCR type system — `string`, `int`, `long`, `real`, `boolean`, `datetime`,
//!   `dynamic`.
//! * `source`: the dotted path of the value in the Okta event (`client.geographicalContext.city`).
//!   Several columns may share one source (`TimeGenerated` and `published_t`).
//! * `kind` (optional, default `value`): `value` converts the scalar to the column type; `json`
//!   keeps an array/object as compact JSON text; `guid` is `value` plus normalisation of
//!   GUID-shaped strings to the dashed lower-case form; `rest` collects the keys of the object
//!   at `source` that no other column claims into one JSON object text; `additional` (source
//!   `*`, the last column, at most one) keeps every other field of the event that no column
//!   holds, as one JSON object text keyed by the legacy column name the Data Collector API
//!   would have given the field (docs/design.md §4; see [`super::additional`]).

use std::collections::HashSet;
use std::sync::OnceLock;

use serde::Deserialize;

/// The manifest compiled into the binary.
const MANIFEST_JSON: &str = include_str!("../../manifest/okta_cl.v1.json");

/// Column types of the DCR type system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Int,
    Long,
    Real,
    Boolean,
    Datetime,
    Dynamic,
}

impl ColumnType {
    /// The spelling used in DCR stream declarations and table schemas.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Int => "int",
            ColumnType::Long => "long",
            ColumnType::Real => "real",
            ColumnType::Boolean => "boolean",
            ColumnType::Datetime => "datetime",
            ColumnType::Dynamic => "dynamic",
        }
    }
}

/// How a column's value is taken from its source (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    #[default]
    Value,
    Json,
    Guid,
    Rest,
    Additional,
}

/// Longest custom column name a DCR-based table is documented to accept. The manifest keeps
/// the one legacy name above it (`authenticationContext_authenticationProvider_s`, 46
/// characters); a table deployed without it ([`TableColumns::WithoutOverlong`]) gets its
/// values in the `additional` column instead.
pub const MAX_COLUMN_NAME: usize = 45;

/// Which manifest columns the destination table declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TableColumns {
    /// Every column (a classic table migrated in place keeps the 46-character one).
    #[default]
    All,
    /// Every column whose name is at most [`MAX_COLUMN_NAME`] characters (the Bicep's
    /// `omitOverlongColumns=true`): the values of the others go to the `additional` column.
    WithoutOverlong,
}

/// One declared column.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    pub source: String,
    #[serde(default)]
    pub kind: ColumnKind,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    version: u32,
    table: String,
    stream: String,
    #[serde(default)]
    notes: Vec<String>,
    columns: Vec<Column>,
}

/// Where a column's value comes from once the event is parsed: a captured leaf value, or the
/// collected unclaimed keys of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Leaf(usize),
    Rest(usize),
    /// The fields no other column holds.
    Additional,
}

/// A node of the source-path tree used by the flattener: which keys of an object are leaves
/// (captured), which are objects to descend into, and whether unclaimed keys are kept.
#[derive(Debug, Default)]
pub(crate) struct Node {
    pub(crate) children: Vec<(Box<str>, Child)>,
    pub(crate) rest: Option<usize>,
    /// Index of this object in [`Manifest::node_paths`].
    pub(crate) id: usize,
}

#[derive(Debug)]
pub(crate) enum Child {
    Leaf(usize),
    Object(Node),
}

impl Node {
    /// Looked up for every key of every event on a manifest path (26 names under
    /// `debugData`): names of another length or last byte are rejected before comparing
    /// bytes, which would otherwise call `memcmp` for each same-length name.
    pub(crate) fn child(&self, key: &str) -> Option<&Child> {
        let key = key.as_bytes();
        self.children
            .iter()
            .find(|(name, _)| {
                let name = name.as_bytes();
                name.len() == key.len() && name.last() == key.last() && name == key
            })
            .map(|(_, c)| c)
    }
}

/// Why a manifest is invalid (only ever seen by the manifest's own tests).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("duplicate column name {0}")]
    DuplicateName(String),
    #[error("column {name}: invalid name (letters, digits and _ only, starting with a letter)")]
    BadName { name: String },
    #[error("column {name}: source path {source_path:?} conflicts with another column's path")]
    PathConflict { name: String, source_path: String },
    #[error("column {name}: kind {kind:?} needs type string")]
    KindNeedsString { name: String, kind: ColumnKind },
    #[error("column {name}: kind additional needs source \"*\", must be the last column and the only one of its kind")]
    BadAdditional { name: String },
}

/// The parsed manifest plus the compiled path tree.
#[derive(Debug)]
pub struct Manifest {
    pub version: u32,
    pub table: String,
    pub stream: String,
    pub notes: Vec<String>,
    columns: Vec<Column>,
    /// `"name":` pre-encoded per column, so writing a row copies bytes.
    pub(crate) prefixes: Vec<Vec<u8>>,
    pub(crate) slots: Vec<Slot>,
    pub(crate) tree: Node,
    pub(crate) leaf_count: usize,
    pub(crate) rest_count: usize,
    /// The leaf that holds `published` (for [`crate::rows::Row::published`]).
    pub(crate) published_leaf: Option<usize>,
    /// Per leaf id, the legacy name of its source path without suffix
    /// (`client.geographicalContext.city` → `client_geographicalContext_city`): where a value
    /// no column can hold is kept in the `additional` column.
    pub(crate) leaf_paths: Vec<String>,
    /// Per object node id, its legacy path (`""` for the event, `client_userAgent`, …).
    pub(crate) node_paths: Vec<String>,
}

impl Manifest {
    /// Columns in the order rows carry them.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Parses and validates a manifest document.
    pub fn parse(json: &str) -> Result<Manifest, ManifestError> {
        let file: ManifestFile = serde_json::from_str(json)?;
        let mut names = HashSet::new();
        let mut tree = Node::default();
        let mut leaves: Vec<(String, usize)> = Vec::new();
        let mut slots = Vec::with_capacity(file.columns.len());
        let mut prefixes = Vec::with_capacity(file.columns.len());
        let mut rest_count = 0;
        for col in &file.columns {
            if !names.insert(col.name.as_str()) {
                return Err(ManifestError::DuplicateName(col.name.clone()));
            }
            let valid = col.name.starts_with(|c: char| c.is_ascii_alphabetic())
                && col
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(ManifestError::BadName {
                    name: col.name.clone(),
                });
            }
            if matches!(
                col.kind,
                ColumnKind::Json | ColumnKind::Guid | ColumnKind::Rest | ColumnKind::Additional
            ) && col.ty != ColumnType::String
            {
                return Err(ManifestError::KindNeedsString {
                    name: col.name.clone(),
                    kind: col.kind,
                });
            }
            let conflict = || ManifestError::PathConflict {
                name: col.name.clone(),
                source_path: col.source.clone(),
            };
            if col.kind == ColumnKind::Additional {
                let last = std::ptr::eq(col, &file.columns[file.columns.len() - 1]);
                if col.source != "*" || !last {
                    return Err(ManifestError::BadAdditional {
                        name: col.name.clone(),
                    });
                }
                slots.push(Slot::Additional);
                let mut prefix = serde_json::to_vec(&col.name)?;
                prefix.push(b':');
                prefixes.push(prefix);
                continue;
            }
            let segments: Vec<&str> = col.source.split('.').collect();
            if segments.iter().any(|s| s.is_empty()) {
                return Err(conflict());
            }
            let slot = if col.kind == ColumnKind::Rest {
                let node = object_node(&mut tree, &segments).ok_or_else(conflict)?;
                let id = match node.rest {
                    Some(id) => id,
                    None => {
                        node.rest = Some(rest_count);
                        rest_count += 1;
                        rest_count - 1
                    }
                };
                Slot::Rest(id)
            } else if let Some((_, id)) = leaves.iter().find(|(s, _)| *s == col.source) {
                Slot::Leaf(*id)
            } else {
                let id = leaves.len();
                let (last, parents) = segments.split_last().ok_or_else(conflict)?;
                let node = object_node(&mut tree, parents).ok_or_else(conflict)?;
                if node.child(last).is_some() {
                    return Err(conflict());
                }
                node.children.push(((*last).into(), Child::Leaf(id)));
                leaves.push((col.source.clone(), id));
                Slot::Leaf(id)
            };
            slots.push(slot);
            let mut prefix = serde_json::to_vec(&col.name)?;
            prefix.push(b':');
            prefixes.push(prefix);
        }
        let published_leaf = leaves
            .iter()
            .find(|(s, _)| s == "published")
            .map(|(_, id)| *id);
        let leaf_paths = leaves.iter().map(|(s, _)| s.replace('.', "_")).collect();
        let mut node_paths = Vec::new();
        number_nodes(&mut tree, String::new(), &mut node_paths);
        Ok(Manifest {
            version: file.version,
            table: file.table,
            stream: file.stream,
            notes: file.notes,
            leaf_count: leaves.len(),
            columns: file.columns,
            prefixes,
            slots,
            tree,
            rest_count,
            published_leaf,
            leaf_paths,
            node_paths,
        })
    }

    /// Whether column `index` is absent from a table that declares `table`.
    pub(crate) fn omitted(&self, index: usize, table: TableColumns) -> bool {
        table == TableColumns::WithoutOverlong && self.columns[index].name.len() > MAX_COLUMN_NAME
    }
}

/// Gives every object node its id and legacy path, depth first.
fn number_nodes(node: &mut Node, path: String, paths: &mut Vec<String>) {
    node.id = paths.len();
    paths.push(path.clone());
    for (key, child) in &mut node.children {
        if let Child::Object(n) = child {
            let p = if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}_{key}")
            };
            number_nodes(n, p, paths);
        }
    }
}

/// Walks (creating) the object nodes along `path`; `None` if a leaf is in the way.
fn object_node<'a>(mut node: &'a mut Node, path: &[&str]) -> Option<&'a mut Node> {
    for seg in path {
        let pos = match node.children.iter().position(|(k, _)| k.as_ref() == *seg) {
            Some(p) => p,
            None => {
                node.children
                    .push(((*seg).into(), Child::Object(Node::default())));
                node.children.len() - 1
            }
        };
        node = match &mut node.children[pos].1 {
            Child::Object(n) => n,
            Child::Leaf(_) => return None,
        };
    }
    Some(node)
}

/// The manifest compiled into the binary, parsed once.
pub fn manifest() -> &'static Manifest {
    static MANIFEST: OnceLock<Manifest> = OnceLock::new();
    MANIFEST.get_or_init(|| {
        // Invariant: the embedded file is validated by `embedded_manifest_is_valid` below and
        // cannot change after compilation, so parsing it cannot fail at run time.
        #[allow(clippy::expect_used)]
        Manifest::parse(MANIFEST_JSON).expect("embedded okta_cl manifest is valid")
    })
}

/// The raw JSON text of the embedded manifest (for tools that generate or compare the table).
pub fn manifest_json() -> &'static str {
    MANIFEST_JSON
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_manifest_is_valid() {
        let m = Manifest::parse(MANIFEST_JSON).unwrap();
        assert_eq!(m.version, 1);
        assert_eq!(m.table, "Okta_CL");
        assert_eq!(m.columns()[0].name, "TimeGenerated");
        assert!(m.published_leaf.is_some());
        assert_eq!(m.rest_count, 1);
    }

    #[test]
    fn content_columns_are_declared_byte_for_byte() {
        // The columns docs/okta-cl-columns.md says the Sentinel content depends on.
        let required = [
            "eventType_s",
            "legacyEventType_s",
            "displayMessage_s",
            "severity_s",
            "version_s",
            "uuid_g",
            "published_t",
            "TimeGenerated",
            "outcome_result_s",
            "outcome_reason_s",
            "actor_alternateId_s",
            "actor_displayName_s",
            "actor_id_s",
            "actor_type_s",
            "actor_detailEntry_s",
            "client_ipAddress_s",
            "client_device_s",
            "client_id_s",
            "client_zone_s",
            "client_userAgent_browser_s",
            "client_userAgent_os_s",
            "client_userAgent_rawUserAgent_s",
            "client_geographicalContext_city_s",
            "client_geographicalContext_state_s",
            "client_geographicalContext_country_s",
            "client_geographicalContext_postalCode_s",
            "client_geographicalContext_geolocation_lat_d",
            "client_geographicalContext_geolocation_lon_d",
            "authenticationContext_externalSessionId_s",
            "authenticationContext_credentialType_s",
            "authenticationContext_authenticationProvider_s",
            "authenticationContext_authenticationStep_d",
            "authenticationContext_credentialProvider_s",
            "authenticationContext_interface_s",
            "authenticationContext_issuer_id_s",
            "authenticationContext_issuer_type_s",
            "securityContext_asNumber_d",
            "securityContext_asOrg_s",
            "securityContext_domain_s",
            "securityContext_isp_s",
            "securityContext_isProxy_b",
            "target_s",
            "request_ipChain_s",
            "transaction_id_s",
            "transaction_type_s",
            "debugContext_debugData_logOnlySecurityData_s",
            "debugContext_debugData_threatSuspected_s",
            "debugContext_debugData_threatDetections_s",
            "debugContext_debugData_factor_s",
            "debugContext_debugData_privilegeGranted_s",
            "debugContext_debugData_s",
            "domain_s",
            "debugContext_debugData_deviceFingerprint_g",
            "debugContext_debugData_transactionId_g",
        ];
        let m = manifest();
        for name in required {
            assert!(
                m.columns().iter().any(|c| c.name == name),
                "missing column {name}"
            );
        }
        for c in m.columns() {
            let want = match c.name.rsplit('_').next() {
                Some("d") => ColumnType::Real,
                Some("b") => ColumnType::Boolean,
                Some("t") => ColumnType::Datetime,
                _ if c.name == "TimeGenerated" => ColumnType::Datetime,
                _ => ColumnType::String,
            };
            assert_eq!(c.ty, want, "{}", c.name);
        }
    }

    #[test]
    fn rejects_conflicting_and_duplicate_columns() {
        let dup = r#"{"version":1,"table":"T","stream":"S","columns":[
            {"name":"a_s","type":"string","source":"a"},{"name":"a_s","type":"string","source":"b"}]}"#;
        assert!(matches!(
            Manifest::parse(dup),
            Err(ManifestError::DuplicateName(_))
        ));
        let conflict = r#"{"version":1,"table":"T","stream":"S","columns":[
            {"name":"a_s","type":"string","source":"a"},{"name":"a_b_s","type":"string","source":"a.b"}]}"#;
        assert!(matches!(
            Manifest::parse(conflict),
            Err(ManifestError::PathConflict { .. })
        ));
        let bad_kind = r#"{"version":1,"table":"T","stream":"S","columns":[
            {"name":"a_d","type":"real","source":"a","kind":"json"}]}"#;
        assert!(matches!(
            Manifest::parse(bad_kind),
            Err(ManifestError::KindNeedsString { .. })
        ));
    }
}
