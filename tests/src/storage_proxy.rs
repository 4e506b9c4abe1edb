//! A counting TCP proxy for HTTP/1.1: it forwards bytes unchanged between one process and
//! Azurite and counts the requests it sees, by kind (`PUT blob`, `lease:renew`, `POST
//! messages`, …), so the bench can report storage transactions per 1,000 events per process.
//!
//! It can also inject the two storage faults whose outcome a client cannot know
//! ([`FaultRule`]): a request dropped before Azurite sees it, and a request Azurite carried out
//! whose answer never arrives. Both look the same to the client (the connection breaks), which
//! is exactly what a conditional write must survive.
//!
//! It can also refuse one kind of operation the way Azure refuses a role that lacks its data
//! action ([`FaultRule::refuse_kind`]): `403 AuthorizationPermissionMismatch`, without
//! forwarding the request, so `doctor` can be shown to name the role to grant.
//!
//! Why a proxy and not Azurite's debug log: the log mixes every client (the bench's own queue
//! polling included) and its format is not a contract. Each measured process gets its own
//! proxy pair (blob + queue), so attributing a request to a process is just "which port".
//!
//! The request stream is parsed just enough to skip bodies (`Content-Length` or `chunked`),
//! so bytes inside an uploaded page can never be mistaken for a request line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What one proxy has seen so far.
#[derive(Debug, Clone, Default)]
pub struct ProxyCounts {
    /// Requests by kind (see [`classify`]).
    pub requests: BTreeMap<String, u64>,
    /// Bytes sent by the client (requests, bodies included).
    pub bytes_up: u64,
    /// Bytes sent back by Azurite.
    pub bytes_down: u64,
}

impl ProxyCounts {
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }
}

/// How an injected fault breaks a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// The connection breaks before any byte of the request reaches Azurite: it never happened.
    DropRequest,
    /// Azurite gets the whole request and carries it out; the connection breaks before the
    /// answer reaches the client.
    LoseAnswer,
    /// Storage stops answering for this long: from the matching request on (that one
    /// included), every request through every proxy sharing the [`Hold`] waits, then goes on
    /// unchanged. Nothing fails; answers are just late — a storage outage as a client with
    /// long timeouts sees it.
    Hold(Duration),
    /// Azurite never sees the request: the proxy answers `403 AuthorizationPermissionMismatch`
    /// (the storage service's answer to a caller whose role lacks the data action) and closes.
    RefusePermission,
}

/// The storage service's answer to a request whose caller lacks the data action.
fn permission_mismatch() -> Vec<u8> {
    let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthorizationPermissionMismatch</Code>\
        <Message>This request is not authorized to perform this operation using this permission.\n\
        RequestId:00000000-0000-0000-0000-000000000000\nTime:2026-01-01T00:00:00.0000000Z</Message></Error>";
    format!(
        "HTTP/1.1 403 This request is not authorized to perform this operation using this permission.\r\n\
         Content-Type: application/xml\r\n\
         x-ms-error-code: AuthorizationPermissionMismatch\r\n\
         x-ms-request-id: 00000000-0000-0000-0000-000000000000\r\n\
         Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A storage freeze shared by proxies (blob and queue), started by a [`FaultMode::Hold`] rule.
#[derive(Debug, Clone, Default)]
pub struct Hold {
    until: Arc<Mutex<Option<Instant>>>,
    started: Arc<AtomicU64>,
}

impl Hold {
    /// Holds every request from now for `d` (a freeze under way is extended, never shortened).
    pub fn start(&self, d: Duration) {
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        let end = Instant::now() + d;
        if until.is_none_or(|u| u < end) {
            *until = Some(end);
        }
        self.started.fetch_add(1, Ordering::SeqCst);
    }

    /// How many times a freeze was started.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    /// Waits while a freeze is under way.
    async fn wait(&self) {
        let until = *self.until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = until {
            tokio::time::sleep_until(t.into()).await;
        }
    }
}

/// Breaks the `nth` (1-based) request whose method is `method`, whose path contains
/// `path_contains` and, when `header` is set, that carries that header (any value); with
/// [`FaultRule::times`], also the matching requests right after it (to outlast SDK retries).
#[derive(Debug)]
pub struct FaultRule {
    pub method: &'static str,
    pub path_contains: String,
    pub header: Option<&'static str>,
    /// When set, matches requests of this kind (see [`classify`]) instead of `method`,
    /// `path_contains` and `header`.
    pub kind: Option<String>,
    pub nth: u64,
    pub times: u64,
    pub mode: FaultMode,
    seen: AtomicU64,
    fired: AtomicBool,
}

impl FaultRule {
    pub fn new(
        method: &'static str,
        path_contains: impl Into<String>,
        header: Option<&'static str>,
        nth: u64,
        mode: FaultMode,
    ) -> FaultRule {
        FaultRule {
            method,
            path_contains: path_contains.into(),
            header,
            kind: None,
            nth,
            times: 1,
            mode,
            seen: AtomicU64::new(0),
            fired: AtomicBool::new(false),
        }
    }

    /// Refuses every request of `kind` (e.g. `queue PUT message`, `blob lease:acquire`) with
    /// `403 AuthorizationPermissionMismatch`, as storage does when the caller's role lacks the
    /// operation's data action.
    pub fn refuse_kind(kind: impl Into<String>) -> FaultRule {
        let mut rule = FaultRule::new("", "", None, 1, FaultMode::RefusePermission).times(u64::MAX);
        rule.kind = Some(kind.into());
        rule
    }

    /// Breaks `times` matching requests in a row, from the `nth` on.
    pub fn times(mut self, times: u64) -> FaultRule {
        self.times = times.max(1);
        self
    }

    /// Whether the fault was injected.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    fn check(&self, head: &Head) -> Option<FaultMode> {
        // Blob names may arrive percent-encoded (`state%2Forg%2F…`).
        let path = head
            .target
            .split('?')
            .next()
            .unwrap_or("")
            .replace("%2F", "/")
            .replace("%2f", "/");
        let matches = match &self.kind {
            Some(kind) => head.kind == *kind,
            None => {
                head.method == self.method
                    && path.contains(&self.path_contains)
                    && self
                        .header
                        .is_none_or(|h| head.headers.iter().any(|n| n == h))
            }
        };
        let hit = if matches {
            self.seen.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            0
        };
        if hit >= self.nth && hit < self.nth.saturating_add(self.times) {
            self.fired.store(true, Ordering::SeqCst);
            return Some(self.mode);
        }
        None
    }
}

/// A running proxy; stops accepting when dropped (open connections end with their peers).
pub struct CountingProxy {
    addr: SocketAddr,
    counts: Arc<Mutex<ProxyCounts>>,
    faults: Arc<Vec<FaultRule>>,
    hold: Hold,
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `upstream`. `service`
    /// (`blob` or `queue`) prefixes the request kinds.
    pub async fn start(upstream: SocketAddr, service: &'static str) -> anyhow::Result<Self> {
        Self::with_faults(upstream, service, Vec::new()).await
    }

    /// Like [`CountingProxy::start`], breaking the requests `faults` name.
    pub async fn with_faults(
        upstream: SocketAddr,
        service: &'static str,
        faults: Vec<FaultRule>,
    ) -> anyhow::Result<Self> {
        Self::with_faults_and_hold(upstream, service, faults, Hold::default()).await
    }

    /// Like [`CountingProxy::with_faults`]; a [`FaultMode::Hold`] rule freezes `hold`, which
    /// other proxies may share (blob and queue freeze together).
    pub async fn with_faults_and_hold(
        upstream: SocketAddr,
        service: &'static str,
        faults: Vec<FaultRule>,
        hold: Hold,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Mutex::new(ProxyCounts::default()));
        let faults = Arc::new(faults);
        let (shared, rules, freeze) = (counts.clone(), faults.clone(), hold.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (counts, rules, hold) = (shared.clone(), rules.clone(), freeze.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        relay(client, server, service, counts, rules, hold).await;
                    }
                });
            }
        });
        Ok(CountingProxy {
            addr,
            counts,
            faults,
            hold,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of the counters.
    pub fn counts(&self) -> ProxyCounts {
        lock(&self.counts).clone()
    }

    /// How many of the fault rules have fired.
    pub fn faults_fired(&self) -> usize {
        self.faults.iter().filter(|f| f.fired()).count()
    }

    /// The freeze this proxy honours.
    pub fn hold(&self) -> &Hold {
        &self.hold
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(m: &Mutex<ProxyCounts>) -> MutexGuard<'_, ProxyCounts> {
    // Counters only: a poisoned lock still holds usable numbers.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    service: &'static str,
    counts: Arc<Mutex<ProxyCounts>>,
    faults: Arc<Vec<FaultRule>>,
    hold: Hold,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up_counts = counts.clone();
    // Set once a LoseAnswer request went up: the next answer bytes are swallowed and both
    // sides are closed. HTTP/1.1 without pipelining: the next answer is that request's.
    let lose_answer = Arc::new(AtomicBool::new(false));
    let lose = lose_answer.clone();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    // The answer to a refused request, written by the downstream half, which owns the
    // client's write side.
    let (refuse_tx, mut refuse_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let up = async move {
        let mut parser = RequestParser::new(service);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let seen = parser.feed(&buf[..n]);
            let mut drop_request = false;
            let mut refuse = false;
            {
                let mut c = lock(&up_counts);
                c.bytes_up += n as u64;
                for head in &seen {
                    *c.requests.entry(head.kind.clone()).or_default() += 1;
                    // Every rule counts every request (no short-circuit).
                    for mode in faults
                        .iter()
                        .filter_map(|f| f.check(head))
                        .collect::<Vec<_>>()
                    {
                        match mode {
                            FaultMode::DropRequest => drop_request = true,
                            FaultMode::LoseAnswer => lose.store(true, Ordering::SeqCst),
                            FaultMode::Hold(d) => hold.start(d),
                            FaultMode::RefusePermission => refuse = true,
                        }
                    }
                }
            }
            if refuse {
                // Nothing goes to Azurite. Read the rest of the request (its body) so the
                // client is not cut off mid-write, then answer and close.
                while !parser.at_request_boundary() {
                    match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            parser.feed(&buf[..n]);
                        }
                    }
                }
                let _ = refuse_tx.send(permission_mismatch());
                return;
            }
            if drop_request {
                // Without pipelining the buffer holding a request's head starts with it.
                let _ = stop_tx.send(true);
                return;
            }
            hold.wait().await;
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = sw.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = tokio::select! {
                // A refusal first: the upstream half ends right after sending it, which also
                // makes `stop_rx` ready.
                biased;
                Some(answer) = refuse_rx.recv() => {
                    let _ = cw.write_all(&answer).await;
                    let _ = cw.shutdown().await;
                    return;
                }
                r = sr.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                },
                _ = stop_rx.changed() => return,
            };
            if lose_answer.load(Ordering::SeqCst) {
                return;
            }
            lock(&counts).bytes_down += n as u64;
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = cw.shutdown().await;
    };
    // A half that ends for a fault drops its sockets' halves, which closes the connections.
    tokio::join!(up, down);
}

/// A request head as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Head {
    /// See [`classify`].
    pub kind: String,
    pub method: String,
    pub target: String,
    /// Lower-case header names.
    pub headers: Vec<String>,
}

/// Where the parser is in the client's byte stream.
#[derive(Debug)]
enum State {
    /// Collecting a request head until the blank line.
    Head,
    /// Skipping this many body bytes.
    Body(u64),
    /// Reading a chunk-size line of a chunked body.
    ChunkSize,
    /// Skipping chunk data plus its CRLF.
    ChunkData(u64),
    /// Reading trailer lines after the last chunk, until an empty line.
    Trailer,
}

/// Incremental HTTP/1.1 request-stream parser that reports one kind per request head.
pub struct RequestParser {
    service: &'static str,
    state: State,
    line: Vec<u8>,
}

/// Longest request head or line kept; beyond that the stream is not HTTP we understand.
const MAX_HEAD: usize = 256 * 1024;

impl RequestParser {
    pub fn new(service: &'static str) -> Self {
        RequestParser {
            service,
            state: State::Head,
            line: Vec::new(),
        }
    }

    /// Whether the stream is between requests (the last request's body is complete).
    pub fn at_request_boundary(&self) -> bool {
        matches!(self.state, State::Head) && self.line.is_empty()
    }

    /// Consumes `data`; returns the requests whose heads completed in it.
    pub fn feed(&mut self, mut data: &[u8]) -> Vec<Head> {
        let mut seen = Vec::new();
        while !data.is_empty() {
            match self.state {
                State::Body(left) => {
                    let take = (left as usize).min(data.len());
                    data = &data[take..];
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::Head
                    } else {
                        State::Body(left)
                    };
                }
                State::ChunkData(left) => {
                    let take = (left as usize).min(data.len());
                    data = &data[take..];
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::ChunkSize
                    } else {
                        State::ChunkData(left)
                    };
                }
                State::Head => {
                    let (done, rest) = self.take_until(data, b"\r\n\r\n");
                    data = rest;
                    if done {
                        let head = std::mem::take(&mut self.line);
                        let (parsed, next) = self.parse_head(&head);
                        seen.push(parsed);
                        self.state = next;
                    }
                }
                State::ChunkSize => {
                    let (done, rest) = self.take_until(data, b"\r\n");
                    data = rest;
                    if done {
                        let line = std::mem::take(&mut self.line);
                        let text = String::from_utf8_lossy(&line);
                        let hex = text
                            .trim()
                            .split(';')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .to_string();
                        let size = u64::from_str_radix(&hex, 16).unwrap_or(0);
                        self.state = if size == 0 {
                            State::Trailer
                        } else {
                            State::ChunkData(size + 2)
                        };
                    }
                }
                State::Trailer => {
                    let (done, rest) = self.take_until(data, b"\r\n");
                    data = rest;
                    if done {
                        let line = std::mem::take(&mut self.line);
                        if line.len() <= 2 {
                            self.state = State::Head;
                        }
                    }
                }
            }
        }
        seen
    }

    /// Appends bytes of `data` to the line buffer until it ends with `end`; returns whether it
    /// does now, and the unconsumed rest of `data`.
    fn take_until<'a>(&mut self, data: &'a [u8], end: &[u8]) -> (bool, &'a [u8]) {
        for (i, b) in data.iter().enumerate() {
            self.line.push(*b);
            if self.line.ends_with(end) {
                return (true, &data[i + 1..]);
            }
            if self.line.len() > MAX_HEAD {
                // Not HTTP as we know it: stop trying to frame it, just forward.
                self.line.clear();
                self.state = State::Body(u64::MAX);
                return (false, &data[i + 1..]);
            }
        }
        (false, &[])
    }

    fn parse_head(&self, head: &[u8]) -> (Head, State) {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap_or("");
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("?").to_string();
        let target = parts.next().unwrap_or("/").to_string();
        let mut content_length = 0u64;
        let mut chunked = false;
        let mut lease_action = None;
        let mut headers = Vec::new();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim().to_ascii_lowercase();
            headers.push(name.clone());
            let value = value.trim();
            match name.as_str() {
                "content-length" => content_length = value.parse().unwrap_or(0),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                "x-ms-lease-action" => lease_action = Some(value.to_ascii_lowercase()),
                _ => {}
            }
        }
        let kind = classify(self.service, &method, &target, lease_action.as_deref());
        let next = if chunked {
            State::ChunkSize
        } else if content_length > 0 {
            State::Body(content_length)
        } else {
            State::Head
        };
        (
            Head {
                kind,
                method,
                target,
                headers,
            },
            next,
        )
    }
}

/// A short, stable name of a storage operation, e.g. `blob PUT`, `blob lease:acquire`,
/// `queue POST messages`, `queue PUT message` (visibility update).
pub fn classify(service: &str, method: &str, target: &str, lease_action: Option<&str>) -> String {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let comp = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("comp="))
        .map(str::to_string);
    if let Some(action) = lease_action {
        return format!("{service} lease:{action}");
    }
    if service == "queue" {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        // /account/queue/messages[/id]
        let what = match segments.as_slice() {
            [_, _, "messages"] => "messages".to_string(),
            [_, _, "messages", _] => "message".to_string(),
            _ => comp
                .map(|c| format!("comp={c}"))
                .unwrap_or_else(|| "queue".into()),
        };
        return format!("queue {method} {what}");
    }
    match comp {
        Some(c) => format!("{service} {method} comp={c}"),
        None => format!("{service} {method}"),
    }
}

// ------------------------------------------------------------------ permissions (issue 13 §1.9)

/// The Azure permissions that authorize a request of `kind` (as [`classify`] names it): any one
/// of them suffices. `None` for a kind no mapping covers, which a least-privilege check must
/// treat as a failure. A `blob PUT` is create-only (`add/action`) or an overwrite (`write`):
/// the proxy does not read headers other than the lease action, so either is accepted.
/// Source: https://learn.microsoft.com/en-us/azure/role-based-access-control/permissions/storage
/// and the operation table of infra/README.md.
pub fn permissions_for(kind: &str) -> Option<&'static [&'static str]> {
    const READ: &[&str] = &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"];
    const WRITE: &[&str] =
        &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"];
    Some(match kind {
        "blob GET" | "blob HEAD" | "blob GET comp=list" => READ,
        "blob PUT" => &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
        ],
        "blob DELETE" => {
            &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete"]
        }
        k if k.starts_with("blob lease:") => WRITE,
        "queue POST messages" => {
            &["Microsoft.Storage/storageAccounts/queueServices/queues/messages/add/action"]
        }
        "queue GET messages" => {
            &["Microsoft.Storage/storageAccounts/queueServices/queues/messages/process/action"]
        }
        "queue PUT message" => {
            &["Microsoft.Storage/storageAccounts/queueServices/queues/messages/write"]
        }
        "queue DELETE message" => &[
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/process/action",
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/delete",
        ],
        "queue GET comp=metadata" => {
            &["Microsoft.Storage/storageAccounts/queueServices/queues/read"]
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_and_skips_bodies() {
        let mut p = RequestParser::new("blob");
        let body = b"GET / HTTP/1.1\r\n\r\nPUT /x HTTP/1.1\r\n\r\n";
        let req = format!(
            "PUT /devstoreaccount1/c/pages/a HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut stream = req.into_bytes();
        stream.extend_from_slice(body);
        stream.extend_from_slice(
            b"PUT /devstoreaccount1/c/s?comp=lease HTTP/1.1\r\nx-ms-lease-action: renew\r\n\r\n",
        );
        // Fed one byte at a time, as a worst case of TCP segmentation.
        let mut seen = Vec::new();
        for b in &stream {
            seen.extend(p.feed(std::slice::from_ref(b)).into_iter().map(|h| h.kind));
        }
        assert_eq!(
            seen,
            vec!["blob PUT".to_string(), "blob lease:renew".to_string()]
        );
    }

    #[test]
    fn chunked_bodies_are_skipped() {
        let mut p = RequestParser::new("queue");
        let stream = b"POST /a/q/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nGET /\r\n0\r\n\r\nDELETE /a/q/messages/id?popreceipt=x HTTP/1.1\r\n\r\n";
        assert_eq!(
            p.feed(stream)
                .into_iter()
                .map(|h| h.kind)
                .collect::<Vec<_>>(),
            vec![
                "queue POST messages".to_string(),
                "queue DELETE message".to_string()
            ]
        );
    }
}
