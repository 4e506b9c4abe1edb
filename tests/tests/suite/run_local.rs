//! The README's run command: it brings the local world up, ships events, audits windows, and
//! Ctrl-C (SIGINT) stops everything cleanly — exit 0, a summary with the last audit result, and
//! no stray process (Azurite included). The SIGINT goes to the runner's whole process group, as
//! a terminal sends it.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

fn alive(pid: i32) -> bool {
    // Signal 0 probes existence; a zombie would still answer, so check /proc state too.
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn ctrl_c_stops_everything_and_prints_the_summary() -> anyhow::Result<()> {
    let bin = world::procs::binary("okta-sentinel-local")?;
    let mut child = Command::new(bin)
        .args(["--initial-events", "400", "--rate", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut reader = BufReader::new(stdout);
    let mut pids = Vec::new();
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        if let Some(rest) = line.trim().strip_prefix("processes:") {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            pids = parts
                .chunks(2)
                .filter_map(|c| c.get(1)?.parse::<i32>().ok())
                .collect();
            break;
        }
    }
    assert_eq!(pids.len(), 3, "no process line");
    assert!(pids.iter().all(|p| *p > 0 && alive(*p)), "{pids:?}");
    // Wait until the progress line shows the initial events shipped and a window audited
    // (the audit runs only once the collector is caught up), then Ctrl-C.
    let mut progress = Vec::new();
    let mut seen = String::new();
    loop {
        anyhow::ensure!(
            Instant::now() < deadline + Duration::from_secs(120),
            "no audited window in the progress line: {seen}"
        );
        progress.clear();
        if reader.read_until(b'\r', &mut progress)? == 0 {
            anyhow::bail!("the runner stopped early: {seen}");
        }
        seen = String::from_utf8_lossy(&progress).into_owned();
        let figure = |before: &str, after: &str| {
            seen.split_once(before)
                .and_then(|(_, r)| r.split_once(after))
                .and_then(|(n, _)| n.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        if figure("| shipped", "rows") >= 400.0 && figure("| audited", "windows") >= 1.0 {
            break;
        }
    }
    // Ctrl-C in a terminal: the foreground process group gets SIGINT.
    killpg(Pid::from_raw(child.id() as i32), Signal::SIGINT)?;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest)?;
    let status = child.wait()?;
    assert!(status.success(), "exit {status}: {rest}");
    assert!(rest.contains("=== summary ==="), "{rest}");
    assert!(
        rest.contains("summarize count() by client_ipAddress_s"),
        "{rest}"
    );
    let shipped = rest
        .lines()
        .find_map(|l| l.strip_prefix("rows in Okta_CL: "))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    assert!(shipped >= 400, "only {shipped} rows landed: {rest}");
    // The last audit, as `collector status` reads it from the evidence records: nothing of
    // its window is missing.
    let audit = rest
        .lines()
        .find_map(|l| l.strip_prefix("audit: last window "))
        .ok_or_else(|| anyhow::anyhow!("no audit result in the summary: {rest}"))?;
    assert!(audit.contains(" in Log Analytics, 0 missing,"), "{audit}");
    assert!(rest.contains("windows audited between"), "{rest}");
    for pid in pids {
        assert!(!alive(pid), "process {pid} is still running after Ctrl-C");
    }
    Ok(())
}

/// A real org without a credential is refused before anything starts (the test world's token
/// must never be sent to a real org).
#[test]
fn a_real_org_without_a_credential_is_refused() -> anyhow::Result<()> {
    let bin = world::procs::binary("okta-sentinel-local")?;
    let out = Command::new(bin)
        .args(["--duration", "5s"])
        .env("OKTA_DOMAIN", "acme.okta.com")
        .env_remove("OKTA_API_TOKEN")
        .env_remove("OKTA_CLIENT_ID")
        .output()?;
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("without a credential"), "{text}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("starting Azurite"),
        "it started the world first"
    );
    Ok(())
}
