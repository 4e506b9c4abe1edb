//! CPU time and memory of another process, read from `/proc` (Linux only).
//!
//! CPU is `utime + stime` of `/proc/PID/stat` (all threads, in clock ticks); peak memory is
//! `VmHWM` of `/proc/PID/status`, the kernel's own high-water mark of the resident set, which
//! a sampler could miss between two samples. Both must be read before the process is reaped.
//!
//! Two fields of two files, read by hand rather than through the `procfs` crate (issue 10
//! asked): the bench needs nothing else of `/proc`, and this keeps the bench binary from
//! linking a crate for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// User + system CPU seconds since the process started.
    pub cpu_secs: f64,
    /// Of which system (kernel) CPU seconds: syscalls, scheduling, page faults.
    pub sys_secs: f64,
    /// Current resident set, KiB.
    pub rss_kib: u64,
    /// Peak resident set so far, KiB.
    pub hwm_kib: u64,
}

/// Clock ticks per second for `/proc/PID/stat`. The kernel reports these in `USER_HZ`, which is
/// 100 on every mainstream Linux ABI; `getconf CLK_TCK` confirms it where available (the
/// workspace's `nix` is built without the feature that exposes `sysconf`).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// Reads CPU and memory of `pid`.
pub fn sample(pid: u32, ticks: f64) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': [0]=state (field 3) … [11]=utime (field 14), [12]=stime (field 15).
    let utime: u64 = fields
        .get(11)
        .and_then(|v| v.parse().ok())
        .context("utime")?;
    let stime: u64 = fields
        .get(12)
        .and_then(|v| v.parse().ok())
        .context("stime")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(ProcSample {
        cpu_secs: (utime + stime) as f64 / ticks,
        sys_secs: stime as f64 / ticks,
        rss_kib: status_kib(&status, "VmRSS:"),
        hwm_kib: status_kib(&status, "VmHWM:"),
    })
}

/// CPU seconds of every live process in process group `pgid` (Azurite is a Node process group).
pub fn group_cpu_secs(pgid: u32, ticks: f64) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut total = 0.0;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        // [2] = pgrp (field 5).
        if fields.get(2).and_then(|v| v.parse::<u32>().ok()) == Some(pgid) {
            let t: u64 = [11, 12]
                .iter()
                .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<u64>().ok()))
                .sum();
            total += t as f64 / ticks;
        }
    }
    total
}

fn status_kib(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Samples `VmRSS` of a process every `every` in the background and keeps the largest value,
/// as a cross-check of `VmHWM`.
pub struct RssSampler {
    max_kib: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> Self {
        let max_kib = Arc::new(AtomicU64::new(0));
        let max = max_kib.clone();
        let task = tokio::spawn(async move {
            let ticks = 100.0;
            while let Ok(s) = sample(pid, ticks) {
                max.fetch_max(s.rss_kib, Ordering::Relaxed);
                tokio::time::sleep(every).await;
            }
        });
        RssSampler { max_kib, task }
    }

    /// Largest `VmRSS` seen, KiB.
    pub fn max_kib(&self) -> u64 {
        self.max_kib.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = sample(std::process::id(), clock_ticks());
        let s = s.ok();
        assert!(s.is_some_and(|s| s.rss_kib > 0 && s.hwm_kib >= s.rss_kib));
    }
}
