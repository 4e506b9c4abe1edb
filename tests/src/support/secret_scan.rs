//! Scanning what a run produced for secrets: every form a secret value can take (as is,
//! url-encoded, Base64 in any alignment), bearer JWTs and unredacted SAS signatures, over logs,
//! blobs (gzip pages decompressed), queue messages and health answers. Findings never print a
//! secret: the context around each one is masked.

use std::io::Read;
use std::time::Duration;

use base64::Engine;

/// A secret value to look for, with a label for the report (the value is never printed).
pub struct Needle {
    pub label: String,
    pub value: String,
}

/// The parts of base64 text that depend only on `bytes`, for the three alignments `bytes`
/// can have inside a longer encoded string, in the standard and the url-safe alphabets.
pub fn base64_forms(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for engine in [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for offset in 0..3usize {
            let mut buf = vec![0u8; offset];
            buf.extend_from_slice(bytes);
            let enc = engine.encode(&buf);
            // Characters whose 6 bits all come from `bytes`.
            let start = (8 * offset).div_ceil(6);
            let end = (8 * (offset + bytes.len())) / 6;
            if end > start + 8 {
                out.push(enc[start..end].to_string());
            }
        }
    }
    out
}

pub fn url_encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Something the run produced, as text.
pub struct Artifact {
    pub source: String,
    pub text: String,
}

/// A bearer JWT (`eyJ….eyJ…`), e.g. a managed-identity access token.
pub fn find_jwt(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(pos) = text[from..].find("eyJ") {
        let start = from + pos;
        let mut i = start;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-' || b[i] == b'_') {
            i += 1;
        }
        if i - start >= 12 && text[i..].starts_with(".eyJ") {
            return Some(start);
        }
        from = start + 3;
    }
    None
}

/// An unredacted SAS signature (`sig=` followed by a real value).
pub fn find_sas_signature(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower[from..].find("sig=") {
        let start = from + pos;
        let value: String = text[start + 4..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "%+/=".contains(*c))
            .collect();
        if value.len() >= 8 && value != "REDACTED" {
            return Some(start);
        }
        from = start + 4;
    }
    None
}

/// A short context around `at`, with every needle masked (so the report never prints one).
pub fn context(text: &str, at: usize, needles: &[Needle]) -> String {
    let mut lo = at.saturating_sub(80);
    while !text.is_char_boundary(lo) {
        lo -= 1;
    }
    let mut hi = (at + 120).min(text.len());
    while !text.is_char_boundary(hi) {
        hi += 1;
    }
    let mut c = text[lo..hi].to_string();
    for n in needles {
        c = c.replace(&n.value, &format!("<{}>", n.label));
    }
    c
}

/// Every finding in `artifacts`, as report lines.
pub fn scan(artifacts: &[Artifact], needles: &[Needle]) -> Vec<String> {
    let mut findings = Vec::new();
    for a in artifacts {
        for n in needles {
            if let Some(at) = a.text.find(&n.value) {
                findings.push(format!(
                    "{} contains the {}: …{}…",
                    a.source,
                    n.label,
                    context(&a.text, at, needles)
                ));
            }
        }
        if let Some(at) = find_jwt(&a.text) {
            findings.push(format!(
                "{} contains a bearer JWT: …{}…",
                a.source,
                context(&a.text, at, needles)
            ));
        }
        if let Some(at) = find_sas_signature(&a.text) {
            findings.push(format!(
                "{} contains an unredacted SAS signature: …{}…",
                a.source,
                context(&a.text, at, needles)
            ));
        }
    }
    findings
}

/// Every blob of the container as text (gzip pages decompressed too), and the visible queue
/// messages (received with a 1 s visibility timeout, so they come back at once).
pub async fn snapshot_storage(
    storage: &common::storage::Storage,
    phase: &str,
    out: &mut Vec<Artifact>,
) -> anyhow::Result<Vec<String>> {
    let names = super::blob_names(storage, "").await;
    for name in &names {
        let Some(blob) = storage.blobs.read(name).await? else {
            continue;
        };
        let bytes = blob.bytes.to_vec();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut text = String::new();
            let mut dec = flate2::read::MultiGzDecoder::new(&bytes[..]).take(256 << 20);
            let mut raw = Vec::new();
            dec.read_to_end(&mut raw)?;
            text.push_str(&String::from_utf8_lossy(&raw));
            out.push(Artifact {
                source: format!("{phase} blob {name} (decompressed)"),
                text,
            });
        }
        out.push(Artifact {
            source: format!("{phase} blob {name}"),
            text: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    for m in storage.queue.receive(32, Duration::from_secs(1)).await? {
        out.push(Artifact {
            source: format!("{phase} queue message {}", m.id),
            text: m.text,
        });
    }
    Ok(names)
}

pub fn read_logs(dir: &std::path::Path, out: &mut Vec<Artifact>) -> anyhow::Result<usize> {
    let mut lines = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let text = String::from_utf8_lossy(&std::fs::read(&path)?).into_owned();
        lines += text.lines().count();
        out.push(Artifact {
            source: format!("log {}", path.display()),
            text,
        });
    }
    Ok(lines)
}

/// A needle for `value` and its url-encoded and Base64 forms (any alignment).
pub fn needle_forms(label: &str, value: &str) -> Vec<Needle> {
    let mut out = vec![Needle {
        label: label.to_string(),
        value: value.to_string(),
    }];
    let encoded = url_encoded(value);
    if encoded != value {
        out.push(Needle {
            label: format!("{label} (url-encoded)"),
            value: encoded,
        });
    }
    for f in base64_forms(value.as_bytes()) {
        out.push(Needle {
            label: format!("{label} (base64)"),
            value: f,
        });
    }
    out
}
