//! Running the real `collector` and `shipper` binaries from tests and from the local run.
//!
//! Cargo gives `CARGO_BIN_EXE_*` only to tests of the binary's own package, so the README's
//! test command builds the binaries first and this module finds them next to the test
//! executable (`target/debug/`), or in `OKTA_SENTINEL_BIN_DIR`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Directory holding the built binaries.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("OKTA_SENTINEL_BIN_DIR") {
        return Ok(PathBuf::from(d));
    }
    let exe = std::env::current_exe().context("current_exe")?;
    // target/debug/deps/test-xxxx → target/debug ; target/debug/okta-sentinel-local → target/debug
    let mut dir = exe
        .parent()
        .map(Path::to_path_buf)
        .context("no parent dir")?;
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

/// Path of a built binary, with a clear error when it was not built.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let p = bin_dir()?.join(name);
    if !p.exists() {
        bail!(
            "{} is not built: run `cargo build --workspace --bins` first (the README's test command does)",
            p.display()
        );
    }
    Ok(p)
}

/// A running service process; killed (SIGKILL) on drop if still running.
pub struct Service {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Service {
    /// Starts `binary` with exactly `env` (plus PATH/HOME), logging to `log_dir/{name}.log`.
    pub fn start(
        binary_name: &str,
        name: &str,
        args: &[&str],
        env: &BTreeMap<String, String>,
        log_dir: &Path,
    ) -> anyhow::Result<Service> {
        let bin = binary(binary_name)?;
        std::fs::create_dir_all(log_dir)?;
        let log = log_dir.join(format!("{name}.log"));
        let out = File::options().create(true).append(true).open(&log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        for key in ["PATH", "HOME", "RUST_BACKTRACE"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        cmd.env("LOG_FORMAT", "json");
        cmd.env(
            "RUST_LOG",
            std::env::var("OKTA_SENTINEL_TEST_LOG").unwrap_or_else(|_| "info".into()),
        );
        cmd.envs(env);
        // Its own process group: a terminal's Ctrl-C reaches only the harness, which then
        // stops the service with one SIGTERM (a second signal would make it exit at once).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Service {
            name: name.to_string(),
            child: Some(child),
            log,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `kill -9`: no cleanup, leases not released.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Ok(())
    }

    /// SIGTERM, then wait up to `grace` for a clean exit (SIGKILL after that).
    pub fn terminate(&mut self, grace: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let Some(mut c) = self.child.take() else {
            return Ok(None);
        };
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            if let Some(st) = c.try_wait()? {
                return Ok(Some(st));
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let st = c.wait()?;
                bail!(
                    "{} did not stop within {:?} after SIGTERM (killed: {st})",
                    self.name,
                    grace
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status if the process has ended.
    pub fn try_exit(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => {
                let st = c.try_wait()?;
                if st.is_some() {
                    self.child = None;
                }
                Ok(st)
            }
            None => Ok(None),
        }
    }

    /// Waits (polling) for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    self.child = None;
                    return Ok(st);
                }
            } else {
                bail!("{} is not running", self.name);
            }
            if Instant::now() > deadline {
                note_failure();
                bail!("{} did not exit within {:?}", self.name, timeout);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.try_exit(), Ok(None)) && self.child.is_some()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// Runs a binary to completion (operator commands) and returns (status, stdout, stderr).
pub fn run_command(
    binary_name: &str,
    args: &[&str],
    env: &BTreeMap<String, String>,
) -> anyhow::Result<(ExitStatus, String, String)> {
    let mut cmd = Command::new(binary(binary_name)?);
    cmd.args(args).env_clear().stdin(Stdio::null());
    for key in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.env("LOG_FORMAT", "text");
    cmd.envs(env);
    let out = cmd.output()?;
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Polls `f` every 100 ms until it returns `Some`, or fails after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            note_failure();
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Set when a wait of [`eventually`] timed out anywhere in this process.
static FAILURE_SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Records that a wait timed out (see [`failure_seen`]).
pub fn note_failure() {
    FAILURE_SEEN.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether a wait timed out in this process: worlds dropped from then on keep their logs
/// (`LocalWorld`'s `Drop`). Other tests' worlds may be kept too; only after a failure.
pub fn failure_seen() -> bool {
    FAILURE_SEEN.load(std::sync::atomic::Ordering::Relaxed)
}
