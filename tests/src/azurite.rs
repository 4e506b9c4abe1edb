//! Launches Azurite (the official Azure Storage emulator) for one test or for the local run.
//!
//! Every instance gets its own ephemeral ports and its own scratch working directory, so test
//! binaries running in parallel never share state. Azurite is a Node program that may start
//! helper processes, so it is spawned as the leader of a new process group and the whole group
//! is signalled on stop; a test that panics still leaves nothing behind (see `Drop`).
//!
//! Two modes (docs/azure-sdk-notes.md §Q2):
//! * plain http, for the SAS path (`credential = None`);
//! * `--oauth basic` over https with a leaf signed by [`crate::tls::shared_ca`], for the
//!   production path (bearer tokens from the managed-identity fake).

use std::fs::{File, OpenOptions};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;

/// The emulator's well-known account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// The emulator's well-known account key (public, documented by Microsoft; not a secret).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How long Azurite may take to answer after spawning before the attempt is abandoned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop (SIGTERM, lets Azurite flush its on-disk database) may take before
/// the group is killed.
const GRACEFUL_STOP: Duration = Duration::from_secs(30);
/// Attempts with fresh ports when a start fails (a port grabbed by someone else in between).
const START_ATTEMPTS: usize = 4;

/// Where Azurite keeps its data.
#[derive(Clone, Debug, Default)]
pub enum Persistence {
    /// `--inMemoryPersistence`: nothing is written; a restart loses everything.
    #[default]
    InMemory,
    /// `--location DIR`: data survives [`Azurite::restart`] (chaos tests).
    OnDisk(PathBuf),
}

/// Options for [`Azurite::start`].
#[derive(Clone, Debug, Default)]
pub struct AzuriteOptions {
    pub persistence: Persistence,
    /// `--oauth basic` over https with a certificate from [`crate::tls::shared_ca`].
    pub https_oauth: bool,
    /// A process of its own even where the process-wide one would do ([`Azurite::for_world`]):
    /// for a long-lived world (the local run, the benchmarks) or one whose process is watched.
    pub own_process: bool,
}

impl AzuriteOptions {
    /// Whether a world with these options can use the process-wide Azurite: in memory, plain
    /// http, and nothing asks for a process of its own. (A world that stops, kills or restarts
    /// its Azurite keeps its data on disk, so it always has its own.)
    fn shareable(&self) -> bool {
        matches!(self.persistence, Persistence::InMemory) && !self.https_oauth && !self.own_process
    }
}

/// A running Azurite. Dropping it kills the whole process group — unless it is a view of the
/// process-wide instance ([`Azurite::for_world`]), which lives as long as the test binary.
#[derive(Debug)]
pub struct Azurite {
    opts: AzuriteOptions,
    child: Option<Child>,
    blob_port: u16,
    queue_port: u16,
    table_port: u16,
    /// Scratch cwd (Azurite writes debug/db files next to itself) and the cert files.
    workdir: tempfile::TempDir,
    /// A view of the process-wide instance: it cannot be stopped, killed or restarted.
    shared: bool,
    /// The process-wide instance itself: killed by the kernel when its thread ends.
    dies_with_thread: bool,
}

/// The process-wide Azurite's ports, or why it could not start.
type SharedPorts = Result<[u16; 3], String>;

impl Azurite {
    /// The Azurite a test world uses: the process-wide instance when `opts` allow it (each
    /// world then has its own queue and container in it, see `LocalWorld`), else a process of
    /// its own.
    ///
    /// Starting Node and Azurite costs about 1.5 CPU-seconds and as many seconds of wall time;
    /// paid once per test binary instead of once per test, that is most of what the suite's
    /// two cores spent before (issue 10, CI time).
    pub async fn for_world(opts: AzuriteOptions) -> anyhow::Result<Azurite> {
        if !opts.shareable() {
            return Azurite::start(opts).await;
        }
        let ports = tokio::task::spawn_blocking(shared_ports)
            .await
            .context("waiting for the shared Azurite")?;
        let [blob_port, queue_port, table_port] =
            ports.clone().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Azurite {
            opts,
            child: None,
            blob_port,
            queue_port,
            table_port,
            workdir: tempfile::Builder::new()
                .prefix("azurite-view-")
                .tempdir()
                .context("creating a scratch directory")?,
            shared: true,
            dies_with_thread: false,
        })
    }

    /// Installs Azurite if needed, starts it on fresh ports and waits until the blob and
    /// queue services answer HTTP.
    pub async fn start(opts: AzuriteOptions) -> anyhow::Result<Azurite> {
        Azurite::start_with(opts, false).await
    }

    async fn start_with(opts: AzuriteOptions, dies_with_thread: bool) -> anyhow::Result<Azurite> {
        let bin = ensure_installed().await?;
        let workdir = tempfile::Builder::new()
            .prefix("azurite-")
            .tempdir()
            .context("creating Azurite's scratch directory")?;
        if opts.https_oauth {
            let cert = crate::tls::shared_ca().issue_server_cert()?;
            cert.write_files(workdir.path())?;
        }
        if let Persistence::OnDisk(dir) = &opts.persistence {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating Azurite location {}", dir.display()))?;
        }
        let mut az = Azurite {
            opts,
            child: None,
            blob_port: 0,
            queue_port: 0,
            table_port: 0,
            workdir,
            shared: false,
            dies_with_thread,
        };
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            [az.blob_port, az.queue_port, az.table_port] = free_ports()?;
            match az.spawn_and_wait(&bin).await {
                Ok(()) => return Ok(az),
                Err(e) => {
                    az.kill_now();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("Azurite did not start")))
    }

    /// Stops Azurite (gracefully, so an on-disk database is flushed), then starts it again on
    /// the same ports and with the same location. In-memory data is lost, as in real life.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.assert_own("restart");
        self.stop();
        let bin = ensure_installed().await?;
        let mut last_err = None;
        // The ports were just released by our own process; retry briefly in case the kernel
        // has not let go of them yet.
        for _ in 0..START_ATTEMPTS {
            match self.spawn_and_wait(&bin).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.kill_now();
                    last_err = Some(e);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("Azurite did not restart")))
    }

    /// Stops the whole process group: SIGTERM, then SIGKILL if it does not exit in time.
    /// Idempotent.
    pub fn stop(&mut self) {
        self.assert_own("stop");
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = pid_of(&child);
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + GRACEFUL_STOP;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = killpg(pgid, Signal::SIGKILL);
                    let _ = child.wait();
                    break;
                }
            }
        }
        // Helpers Node may have started are in the same group; make sure none survives.
        let _ = killpg(pgid, Signal::SIGKILL);
    }

    /// Kills the whole process group at once (SIGKILL): a crash, nothing is flushed.
    pub fn kill(&mut self) {
        self.assert_own("kill");
        self.kill_now();
    }

    /// A test that stops, kills or restarts the process-wide Azurite would take every other
    /// test's storage down with it, and see no outage of its own world's only.
    fn assert_own(&self, what: &str) {
        assert!(
            !self.shared,
            "cannot {what} the process-wide Azurite: start the world with AzuriteOptions {{ own_process: true, .. }}"
        );
    }

    /// Whether this is a view of the process-wide instance ([`Azurite::for_world`]).
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The pid of the Azurite process (also its process-group id), if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn account(&self) -> &'static str {
        ACCOUNT
    }

    pub fn account_key(&self) -> &'static str {
        ACCOUNT_KEY
    }

    pub fn is_https(&self) -> bool {
        self.opts.https_oauth
    }

    /// The CA that signed Azurite's certificate, in https mode.
    pub fn ca_pem(&self) -> Option<String> {
        self.opts
            .https_oauth
            .then(|| crate::tls::shared_ca().ca_pem())
    }

    pub fn blob_port(&self) -> u16 {
        self.blob_port
    }

    pub fn queue_port(&self) -> u16 {
        self.queue_port
    }

    fn scheme(&self) -> &'static str {
        if self.opts.https_oauth {
            "https"
        } else {
            "http"
        }
    }

    /// `http(s)://127.0.0.1:PORT/devstoreaccount1` (path-style, no trailing slash).
    pub fn blob_endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}/{ACCOUNT}", self.scheme(), self.blob_port)
    }

    /// `http(s)://127.0.0.1:PORT/devstoreaccount1` (path-style, no trailing slash).
    pub fn queue_endpoint(&self) -> String {
        format!(
            "{}://127.0.0.1:{}/{ACCOUNT}",
            self.scheme(),
            self.queue_port
        )
    }

    /// `http(s)://127.0.0.1:PORT/devstoreaccount1` (path-style, no trailing slash).
    pub fn table_endpoint(&self) -> String {
        format!(
            "{}://127.0.0.1:{}/{ACCOUNT}",
            self.scheme(),
            self.table_port
        )
    }

    /// A full connection string with explicit endpoints and the well-known key.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol={};AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};\
             BlobEndpoint={};QueueEndpoint={};TableEndpoint={};",
            self.scheme(),
            self.blob_endpoint(),
            self.queue_endpoint(),
            self.table_endpoint()
        )
    }

    /// [`Azurite::connection_string`], with the blob and/or queue endpoint at a proxy in front
    /// of Azurite (`storage_proxy`): same scheme, account and key, another address.
    pub fn connection_string_via(
        &self,
        blob: Option<std::net::SocketAddr>,
        queue: Option<std::net::SocketAddr>,
    ) -> String {
        let at = |proxy: Option<std::net::SocketAddr>, direct: String| match proxy {
            Some(a) => format!("{}://{a}/{ACCOUNT}", self.scheme()),
            None => direct,
        };
        format!(
            "DefaultEndpointsProtocol={};AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};\
             BlobEndpoint={};QueueEndpoint={};TableEndpoint={};",
            self.scheme(),
            at(blob, self.blob_endpoint()),
            at(queue, self.queue_endpoint()),
            self.table_endpoint()
        )
    }

    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = killpg(pid_of(&child), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    async fn spawn_and_wait(&mut self, bin: &Path) -> anyhow::Result<()> {
        let dir = self.workdir.path();
        let log_path = dir.join("azurite.log");
        let log = File::create(&log_path).context("creating Azurite's log file")?;
        let mut cmd = Command::new(bin);
        cmd.current_dir(dir)
            .arg("--silent")
            .arg("--disableTelemetry")
            .args(["--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1"])
            .args(["--tableHost", "127.0.0.1"])
            .args(["--blobPort", &self.blob_port.to_string()])
            .args(["--queuePort", &self.queue_port.to_string()])
            .args(["--tablePort", &self.table_port.to_string()]);
        match &self.opts.persistence {
            Persistence::InMemory => {
                cmd.arg("--inMemoryPersistence");
            }
            Persistence::OnDisk(location) => {
                cmd.arg("--location").arg(location);
            }
        }
        if self.opts.https_oauth {
            cmd.args(["--oauth", "basic"])
                .arg("--cert")
                .arg(dir.join("server.pem"))
                .arg("--key")
                .arg(dir.join("server.key"));
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log handle")?)
            .stderr(log)
            .process_group(0);
        if self.dies_with_thread {
            // SAFETY: between fork and exec only prctl(2), which is async-signal-safe, runs.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
                });
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        self.child = Some(child);

        let client = self.probe_client()?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut ready = [false, false];
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("polling Azurite")? {
                    self.child = None;
                    bail!(
                        "Azurite exited during startup ({status}): {}",
                        log_tail(&log_path)
                    );
                }
            }
            for (i, url) in [self.blob_endpoint(), self.queue_endpoint()]
                .iter()
                .enumerate()
            {
                if !ready[i] {
                    // Any HTTP answer (403 without auth) proves the service is up.
                    ready[i] = client.get(format!("{url}?comp=list")).send().await.is_ok();
                }
            }
            if ready.iter().all(|r| *r) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "Azurite did not answer within {STARTUP_TIMEOUT:?}: {}",
                    log_tail(&log_path)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn probe_client(&self) -> anyhow::Result<reqwest::Client> {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2));
        if self.opts.https_oauth {
            let ca = crate::tls::shared_ca().ca_pem();
            b = b.add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes())?);
        }
        Ok(b.build()?)
    }
}

/// Starts the process-wide Azurite once, on a thread that lives as long as the process, and
/// returns its ports. The process is started with `PR_SET_PDEATHSIG`, tied to that thread: it is
/// killed when the test binary exits, however it exits.
fn shared_ports() -> SharedPorts {
    static SHARED: std::sync::OnceLock<SharedPorts> = std::sync::OnceLock::new();
    SHARED
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("shared-azurite".into())
                .spawn(move || {
                    let started = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())
                        .and_then(|rt| {
                            rt.block_on(Azurite::start_with(
                                AzuriteOptions {
                                    own_process: true,
                                    ..AzuriteOptions::default()
                                },
                                true,
                            ))
                            .map_err(|e| format!("{e:#}"))
                        });
                    let _ = tx.send(
                        started
                            .as_ref()
                            .map(|az| [az.blob_port, az.queue_port, az.table_port])
                            .map_err(Clone::clone),
                    );
                    // Held, never dropped: the instance ends with the process.
                    let _keep = started;
                    loop {
                        std::thread::park();
                    }
                });
            match spawned {
                Ok(_) => rx
                    .recv()
                    .unwrap_or_else(|_| Err("the shared Azurite's thread ended".into())),
                Err(e) => Err(format!("spawning the shared Azurite's thread: {e}")),
            }
        })
        .clone()
}

impl Drop for Azurite {
    fn drop(&mut self) {
        // In-memory data has nothing to flush; an on-disk location is stopped gracefully so a
        // test that reuses the directory sees consistent data.
        match self.opts.persistence {
            Persistence::InMemory => self.kill_now(),
            Persistence::OnDisk(_) => self.stop(),
        }
    }
}

fn pid_of(child: &Child) -> Pid {
    // Pids fit in i32 on every Unix (pid_t); `Child::id` only widens it.
    Pid::from_raw(child.id() as i32)
}

/// Three distinct ports the kernel considers free right now.
fn free_ports() -> anyhow::Result<[u16; 3]> {
    // All three listeners are held at once so the kernel hands out distinct ports.
    let listeners = (0..3)
        .map(|_| StdTcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("binding 127.0.0.1:0")?;
    let mut ports = [0u16; 3];
    for (p, l) in ports.iter_mut().zip(&listeners) {
        *p = l.local_addr().map(|a: SocketAddr| a.port())?;
    }
    Ok(ports)
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(2000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    format!("log tail: {}", &text[start..])
}

/// The repository's `tests/azurite` directory (holds `package.json` pinning Azurite).
pub fn azurite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("azurite")
}

/// Path of the Azurite executable, running `npm ci` first when it is missing.
///
/// Several test binaries may start at once, so the install is guarded by a lock file
/// (`create_new` is atomic); the losers wait for the winner to finish.
pub async fn ensure_installed() -> anyhow::Result<PathBuf> {
    let dir = azurite_dir();
    let bin = dir.join("node_modules/.bin/azurite");
    if bin.exists() {
        return Ok(bin);
    }
    if !dir.join("package.json").exists() {
        bail!("{} has no package.json pinning Azurite", dir.display());
    }
    let lock = dir.join(".install.lock");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if bin.exists() {
            return Ok(bin);
        }
        match OpenOptions::new().write(true).create_new(true).open(&lock) {
            Ok(_) => {
                let result = npm_ci(&dir).await;
                let _ = std::fs::remove_file(&lock);
                result?;
                if !bin.exists() {
                    bail!("npm ci succeeded but {} is missing", bin.display());
                }
                return Ok(bin);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // A lock older than the install deadline belongs to a crashed installer.
                let stale = std::fs::metadata(&lock)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(600));
                if stale {
                    let _ = std::fs::remove_file(&lock);
                }
                if Instant::now() > deadline {
                    bail!("timed out waiting for another npm ci ({})", lock.display());
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("creating {}", lock.display())),
        }
    }
}

async fn npm_ci(dir: &Path) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running npm ci (is Node installed?)")?;
    if !out.status.success() {
        bail!(
            "npm ci failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
