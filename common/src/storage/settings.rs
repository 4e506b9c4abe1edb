//! Where the queue and the container live, and how to authenticate to them.
//!
//! Two modes, chosen by which variable is set (docs/design.md §3):
//! * `AZURE_STORAGE_CONNECTION_STRING`: local/dev (Azurite). Requests are signed with an account
//!   SAS computed from the key in the string ([`super::sas`]).
//! * `AZURE_STORAGE_ACCOUNT`: production, managed identity, https only.
//!
//! Validation errors name the variable to fix and never echo the connection string (it holds
//! the account key).

use url::Url;

use super::StorageError;
use crate::secrets::SecretString;

/// The account name and key of the storage emulator (public, documented by Microsoft).
pub const DEVSTORE_ACCOUNT: &str = "devstoreaccount1";
const DEVSTORE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const CONN: &str = "AZURE_STORAGE_CONNECTION_STRING";
const ACCOUNT: &str = "AZURE_STORAGE_ACCOUNT";
const QUEUE_ENDPOINT: &str = "AZURE_STORAGE_QUEUE_ENDPOINT";
const BLOB_ENDPOINT: &str = "AZURE_STORAGE_BLOB_ENDPOINT";

/// Storage flags shared by both binaries (flatten into their CLIs).
#[derive(clap::Args, Clone, Debug)]
pub struct StorageArgs {
    /// Local/dev storage: `UseDevelopmentStorage=true` or an account-key connection string.
    /// Requests are signed with an account SAS computed from the key.
    // `SecretString` keeps the value out of `Debug`; `hide_env_values` keeps it out of `--help`.
    #[arg(long, env = "AZURE_STORAGE_CONNECTION_STRING", hide_env_values = true)]
    pub connection_string: Option<SecretString>,
    /// Production storage account name (managed identity).
    #[arg(long, env = "AZURE_STORAGE_ACCOUNT")]
    pub account: Option<String>,
    /// Queue service endpoint override (sovereign clouds, private endpoints).
    #[arg(long, env = "AZURE_STORAGE_QUEUE_ENDPOINT")]
    pub queue_endpoint: Option<String>,
    /// Blob service endpoint override (sovereign clouds, private endpoints).
    #[arg(long, env = "AZURE_STORAGE_BLOB_ENDPOINT")]
    pub blob_endpoint: Option<String>,
    /// Queue carrying page envelopes from the collector to the shippers.
    #[arg(long, env = "OKTA_QUEUE", default_value = "okta-pages")]
    pub queue: String,
    /// Container for leader leases, checkpoints, pages, page state, done markers, poison.
    #[arg(long, env = "OKTA_CONTAINER", default_value = "okta-sentinel")]
    pub container: String,
}

impl Default for StorageArgs {
    fn default() -> Self {
        StorageArgs {
            connection_string: None,
            account: None,
            queue_endpoint: None,
            blob_endpoint: None,
            queue: "okta-pages".into(),
            container: "okta-sentinel".into(),
        }
    }
}

/// How requests are authenticated.
#[derive(Clone, Debug)]
pub enum StorageAuth {
    /// Account SAS signed in process with this key (Azurite, dev accounts).
    AccountKey { account: String, key: SecretString },
    /// Entra ID bearer tokens from the managed identity credential; https only.
    ManagedIdentity,
}

/// Validated storage settings.
#[derive(Clone, Debug)]
pub struct StorageSettings {
    pub auth: StorageAuth,
    /// Storage account name.
    pub account: String,
    pub queue_name: String,
    pub container_name: String,
    /// The queue, e.g. `https://acct.queue.core.windows.net/okta-pages`.
    pub queue_url: Url,
    /// The container, e.g. `https://acct.blob.core.windows.net/okta-sentinel`.
    pub container_url: Url,
}

impl StorageSettings {
    /// True when some endpoint is plain http (only ever a loopback host: validated).
    pub fn uses_http(&self) -> bool {
        self.queue_url.scheme() == "http" || self.container_url.scheme() == "http"
    }
}

impl StorageArgs {
    /// Checks the combination of variables and builds the settings.
    pub fn validate(&self) -> Result<StorageSettings, StorageError> {
        check_name("OKTA_QUEUE", "queue", &self.queue)?;
        check_name("OKTA_CONTAINER", "container", &self.container)?;
        let conn = self
            .connection_string
            .as_ref()
            .filter(|c| !c.expose().trim().is_empty());
        let account = self
            .account
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty());

        let (auth, account, queue_ep, blob_ep) = match (conn, account) {
            (None, None) => {
                return Err(cfg(format!(
                    "no storage configured: set {ACCOUNT} (production, managed identity) or \
                     {CONN} (local/dev, e.g. `UseDevelopmentStorage=true` for Azurite)"
                )))
            }
            (Some(_), Some(_)) => {
                return Err(cfg(format!(
                    "both {CONN} and {ACCOUNT} are set: set exactly one ({ACCOUNT} for managed \
                     identity in production, {CONN} for local/dev)"
                )))
            }
            (Some(c), None) => {
                let parsed = parse_connection_string(c)?;
                let auth = StorageAuth::AccountKey {
                    account: parsed.account.clone(),
                    key: parsed.key,
                };
                (
                    auth,
                    parsed.account,
                    (parsed.queue_endpoint, format!("QueueEndpoint of {CONN}")),
                    (parsed.blob_endpoint, format!("BlobEndpoint of {CONN}")),
                )
            }
            (None, Some(a)) => {
                check_account(a)?;
                let endpoint = |service: &str| {
                    Url::parse(&format!("https://{a}.{service}.core.windows.net"))
                        .map_err(|_| cfg(format!("{ACCOUNT}: `{a}` does not form a valid URL")))
                };
                (
                    StorageAuth::ManagedIdentity,
                    a.to_owned(),
                    (endpoint("queue")?, QUEUE_ENDPOINT.to_owned()),
                    (endpoint("blob")?, BLOB_ENDPOINT.to_owned()),
                )
            }
        };

        let pick = |var: &str, over: &Option<String>, default: (Url, String)| match over
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(s) => Ok((parse_endpoint(var, s)?, var.to_owned())),
            None => Ok::<_, StorageError>(default),
        };
        let (queue_ep, queue_src) = pick(QUEUE_ENDPOINT, &self.queue_endpoint, queue_ep)?;
        let (blob_ep, blob_src) = pick(BLOB_ENDPOINT, &self.blob_endpoint, blob_ep)?;
        let managed = matches!(auth, StorageAuth::ManagedIdentity);
        check_scheme(&queue_src, &queue_ep, managed)?;
        check_scheme(&blob_src, &blob_ep, managed)?;

        Ok(StorageSettings {
            queue_url: join(&queue_src, &queue_ep, &self.queue)?,
            container_url: join(&blob_src, &blob_ep, &self.container)?,
            auth,
            account,
            queue_name: self.queue.clone(),
            container_name: self.container.clone(),
        })
    }
}

fn cfg(msg: String) -> StorageError {
    StorageError::Config(msg)
}

struct ParsedConnectionString {
    account: String,
    key: SecretString,
    queue_endpoint: Url,
    blob_endpoint: Url,
}

/// Parses `UseDevelopmentStorage=true` or `AccountName=…;AccountKey=…;(BlobEndpoint=…;
/// QueueEndpoint=…|DefaultEndpointsProtocol=…;EndpointSuffix=…)`. Keys are case-insensitive,
/// as in the other Azure SDKs. Values never appear in errors.
fn parse_connection_string(cs: &SecretString) -> Result<ParsedConnectionString, StorageError> {
    let mut kv = std::collections::HashMap::new();
    for part in cs
        .expose()
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let Some((k, v)) = part.split_once('=') else {
            return Err(cfg(format!(
                "{CONN} is malformed: expected `Key=Value` pairs separated by `;`"
            )));
        };
        kv.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    let get = |k: &str| kv.get(k).map(String::as_str).filter(|v| !v.is_empty());

    if let Some(v) = get("usedevelopmentstorage") {
        if !v.eq_ignore_ascii_case("true") {
            return Err(cfg(format!("{CONN}: UseDevelopmentStorage must be `true`")));
        }
        if get("developmentstorageproxyuri").is_some() {
            return Err(cfg(format!(
                "{CONN}: DevelopmentStorageProxyUri is not supported; give a full connection \
                 string with AccountName, AccountKey, BlobEndpoint and QueueEndpoint instead"
            )));
        }
        let url = |port: u16| {
            Url::parse(&format!("http://127.0.0.1:{port}/{DEVSTORE_ACCOUNT}"))
                .map_err(|_| cfg(format!("{CONN}: internal error building the emulator URL")))
        };
        return Ok(ParsedConnectionString {
            account: DEVSTORE_ACCOUNT.into(),
            key: SecretString::new(DEVSTORE_KEY),
            queue_endpoint: url(10001)?,
            blob_endpoint: url(10000)?,
        });
    }
    if get("sharedaccesssignature").is_some() {
        return Err(cfg(format!(
            "{CONN}: SAS connection strings are not supported (a SAS expires); use \
             `UseDevelopmentStorage=true`, an account-key connection string, or {ACCOUNT} with \
             managed identity"
        )));
    }
    let account = get("accountname").ok_or_else(|| {
        cfg(format!(
            "{CONN} has no AccountName: use `UseDevelopmentStorage=true` or a string with \
             AccountName, AccountKey and endpoints"
        ))
    })?;
    let key = get("accountkey").ok_or_else(|| {
        cfg(format!(
            "{CONN} has no AccountKey (shared-key access is how local/dev storage is signed; \
             in production set {ACCOUNT} and use managed identity)"
        ))
    })?;
    // Decoded here only to fail early; the signer decodes it again when connecting.
    super::sas::AccountSasSigner::new(account, &SecretString::new(key), false)?;
    let protocol = get("defaultendpointsprotocol").unwrap_or("https");
    if protocol != "https" && protocol != "http" {
        return Err(cfg(format!(
            "{CONN}: DefaultEndpointsProtocol must be `https` or `http`"
        )));
    }
    let suffix = get("endpointsuffix").unwrap_or("core.windows.net");
    let endpoint = |explicit: &str, service: &str| -> Result<Url, StorageError> {
        match get(explicit) {
            Some(v) => Url::parse(v).map_err(|_| {
                cfg(format!(
                    "{CONN}: the {} value is not a valid URL",
                    key_name(explicit)
                ))
            }),
            None => {
                Url::parse(&format!("{protocol}://{account}.{service}.{suffix}")).map_err(|_| {
                    cfg(format!(
                        "{CONN}: AccountName/EndpointSuffix do not form a valid URL"
                    ))
                })
            }
        }
    };
    let queue_endpoint = endpoint("queueendpoint", "queue")?;
    let blob_endpoint = endpoint("blobendpoint", "blob")?;
    for (name, url) in [
        ("QueueEndpoint", &queue_endpoint),
        ("BlobEndpoint", &blob_endpoint),
    ] {
        check_endpoint_shape(url).map_err(|why| cfg(format!("{CONN}: {name} {why}")))?;
    }
    Ok(ParsedConnectionString {
        account: account.to_owned(),
        key: SecretString::new(key),
        queue_endpoint,
        blob_endpoint,
    })
}

fn key_name(lower: &str) -> &'static str {
    match lower {
        "queueendpoint" => "QueueEndpoint",
        _ => "BlobEndpoint",
    }
}

fn parse_endpoint(var: &str, value: &str) -> Result<Url, StorageError> {
    let url = Url::parse(value).map_err(|_| {
        cfg(format!(
            "{var} is not a valid URL (expected e.g. `https://acct.queue.core.windows.net`)"
        ))
    })?;
    check_endpoint_shape(&url).map_err(|why| cfg(format!("{var} {why}")))?;
    Ok(url)
}

/// An endpoint is an origin plus an optional path (Azurite: `/devstoreaccount1`), nothing else.
fn check_endpoint_shape(url: &Url) -> Result<(), &'static str> {
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err("must be an http(s) URL");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user info");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not contain a query or fragment (SAS tokens in URLs are not supported)");
    }
    Ok(())
}

/// Plain http only for loopback hosts, and never with managed identity (the SDK refuses to send
/// a bearer token over http, and so do we).
fn check_scheme(var: &str, url: &Url, managed_identity: bool) -> Result<(), StorageError> {
    if url.scheme() == "https" {
        return Ok(());
    }
    if managed_identity {
        return Err(cfg(format!(
            "{var} must use https with managed identity ({ACCOUNT}); plain http is only for \
             local storage through {CONN}"
        )));
    }
    crate::config::require_https_or_loopback(url).map_err(|reason| {
        cfg(format!(
            "{var} {reason} (plain http is only for local storage such as Azurite)"
        ))
    })
}

fn join(var: &str, endpoint: &Url, name: &str) -> Result<Url, StorageError> {
    let mut url = endpoint.clone();
    url.path_segments_mut()
        .map_err(|()| cfg(format!("{var} cannot take a path")))?
        .pop_if_empty()
        .push(name);
    Ok(url)
}

/// Queue and container names: 3–63 characters of `[a-z0-9-]`, starting and ending with a letter
/// or digit, no `--` (the rules both services share).
fn check_name(var: &str, what: &str, name: &str) -> Result<(), StorageError> {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(cfg(format!(
            "{var} `{name}` is not a valid {what} name: use 3-63 lower-case letters, digits and \
             single dashes, starting and ending with a letter or digit"
        )))
    }
}

/// Storage account names: 3–24 lower-case letters and digits.
fn check_account(name: &str) -> Result<(), StorageError> {
    let ok = (3..=24).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(cfg(format!(
            "{ACCOUNT} `{name}` is not a storage account name: use 3-24 lower-case letters and \
             digits (the name only, not a URL)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(s: &str) -> StorageArgs {
        StorageArgs {
            connection_string: Some(SecretString::new(s)),
            ..StorageArgs::default()
        }
    }

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        storage: StorageArgs,
    }

    #[test]
    fn flags_parse_and_defaults_apply() {
        use clap::Parser as _;
        let cli = Cli::try_parse_from([
            "bin",
            "--connection-string",
            "UseDevelopmentStorage=true",
            "--queue",
            "q-test",
        ])
        .unwrap();
        assert_eq!(cli.storage.queue, "q-test");
        assert_eq!(cli.storage.container, "okta-sentinel");
        assert!(!format!("{cli:?}").contains("UseDevelopmentStorage"));
        let s = cli.storage.validate().unwrap();
        assert_eq!(s.queue_name, "q-test");
    }

    #[test]
    fn neither_set_names_both_variables() {
        let e = StorageArgs::default().validate().unwrap_err().to_string();
        assert!(e.contains(CONN) && e.contains(ACCOUNT), "{e}");
    }

    #[test]
    fn both_set_is_refused() {
        let mut a = conn("UseDevelopmentStorage=true");
        a.account = Some("acct".into());
        let e = a.validate().unwrap_err().to_string();
        assert!(e.contains("exactly one"), "{e}");
    }

    #[test]
    fn development_storage_points_at_azurite() {
        let s = conn("UseDevelopmentStorage=true").validate().unwrap();
        assert_eq!(
            s.queue_url.as_str(),
            "http://127.0.0.1:10001/devstoreaccount1/okta-pages"
        );
        assert_eq!(
            s.container_url.as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/okta-sentinel"
        );
        assert!(
            matches!(s.auth, StorageAuth::AccountKey { ref account, .. } if account == DEVSTORE_ACCOUNT)
        );
        assert!(s.uses_http());
    }

    #[test]
    fn full_connection_string_with_explicit_endpoints() {
        let s = conn("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5a2V5;BlobEndpoint=http://127.0.0.1:4000/devstoreaccount1;QueueEndpoint=http://localhost:4001/devstoreaccount1/;")
            .validate()
            .unwrap();
        assert_eq!(
            s.queue_url.as_str(),
            "http://localhost:4001/devstoreaccount1/okta-pages"
        );
        assert_eq!(
            s.container_url.as_str(),
            "http://127.0.0.1:4000/devstoreaccount1/okta-sentinel"
        );
    }

    #[test]
    fn suffix_connection_string_builds_public_endpoints() {
        let s = conn("AccountName=acct;AccountKey=a2V5a2V5;EndpointSuffix=core.usgovcloudapi.net")
            .validate()
            .unwrap();
        assert_eq!(
            s.queue_url.as_str(),
            "https://acct.queue.core.usgovcloudapi.net/okta-pages"
        );
        assert!(!s.uses_http());
    }

    #[test]
    fn connection_string_value_never_in_errors_or_debug() {
        let secret = "AccountName=acct;AccountKey=SUPERSECRETKEYAA;BlobEndpoint=http://10.0.0.1/x;QueueEndpoint=http://10.0.0.1/y";
        let args = conn(secret);
        assert!(!format!("{args:?}").contains("SUPERSECRET"));
        let e = args.validate().unwrap_err().to_string();
        assert!(
            e.contains("QueueEndpoint of AZURE_STORAGE_CONNECTION_STRING"),
            "{e}"
        );
        assert!(!e.contains("SUPERSECRET"), "{e}");
        for bad in [
            "garbage-without-equals SUPERSECRETKEY",
            "AccountName=acct",
            "AccountKey=SUPERSECRETKEY",
            "SharedAccessSignature=sv=SUPERSECRETKEY",
            "UseDevelopmentStorage=SUPERSECRETKEY",
        ] {
            let e = conn(bad).validate().unwrap_err().to_string();
            assert!(e.contains(CONN), "{e}");
            assert!(!e.contains("SUPERSECRET"), "{e}");
        }
        let ok = conn("AccountName=acct;AccountKey=SUPERSECRETKEYAA")
            .validate()
            .unwrap();
        assert!(!format!("{ok:?}").contains("SUPERSECRET"));
    }

    #[test]
    fn managed_identity_defaults_and_https_rule() {
        let a = StorageArgs {
            account: Some("prodacct".into()),
            ..StorageArgs::default()
        };
        let s = a.validate().unwrap();
        assert_eq!(
            s.queue_url.as_str(),
            "https://prodacct.queue.core.windows.net/okta-pages"
        );
        assert_eq!(
            s.container_url.as_str(),
            "https://prodacct.blob.core.windows.net/okta-sentinel"
        );
        assert!(matches!(s.auth, StorageAuth::ManagedIdentity));

        let mut http = a.clone();
        http.queue_endpoint = Some("http://127.0.0.1:10001/devstoreaccount1".into());
        let e = http.validate().unwrap_err().to_string();
        assert!(e.contains(QUEUE_ENDPOINT) && e.contains("https"), "{e}");

        let mut over = a.clone();
        over.blob_endpoint = Some("https://127.0.0.1:11000/devstoreaccount1".into());
        let s = over.validate().unwrap();
        assert_eq!(
            s.container_url.as_str(),
            "https://127.0.0.1:11000/devstoreaccount1/okta-sentinel"
        );

        let bad = StorageArgs {
            account: Some("https://prodacct.blob.core.windows.net".into()),
            ..StorageArgs::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains(ACCOUNT));
    }

    #[test]
    fn http_to_a_remote_host_is_refused() {
        let mut a = conn("UseDevelopmentStorage=true");
        a.blob_endpoint = Some("http://storage.example.com/acct".into());
        let e = a.validate().unwrap_err().to_string();
        assert!(e.contains(BLOB_ENDPOINT), "{e}");
        a.blob_endpoint = Some("https://storage.example.com/acct?sv=1&sig=x".into());
        let e = a.validate().unwrap_err().to_string();
        assert!(e.contains("query") && !e.contains("sig=x"), "{e}");
    }

    #[test]
    fn queue_and_container_names_are_checked() {
        for bad in [
            "ab",
            "Okta",
            "okta--pages",
            "-okta",
            "okta_pages",
            "okta/pages",
        ] {
            let mut a = conn("UseDevelopmentStorage=true");
            a.queue = bad.into();
            let e = a.validate().unwrap_err().to_string();
            assert!(e.contains("OKTA_QUEUE"), "{bad}: {e}");
            let mut a = conn("UseDevelopmentStorage=true");
            a.container = bad.into();
            let e = a.validate().unwrap_err().to_string();
            assert!(e.contains("OKTA_CONTAINER"), "{bad}: {e}");
        }
    }
}
