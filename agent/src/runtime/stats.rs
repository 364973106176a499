//! Resource usage of containers from `/proc`: a process runtime container is a process
//! group, so its CPU time is the sum of `utime + stime` and its memory the sum of resident
//! sets over the group's live processes. [`parse_stat`] (pure) reads one
//! `/proc/{pid}/stat` line; rates (`usageNanoCores`) are derived by the endpoint from two
//! samples.

use std::collections::HashMap;

/// One container's cumulative usage at a point in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUsage {
    pub name: String,
    /// Run identity (rates are only computed across samples of the same run).
    pub id: String,
    pub usage_core_nano_seconds: u64,
    pub working_set_bytes: u64,
}

/// A pod's containers' usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsage {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub containers: Vec<ContainerUsage>,
}

/// Node-wide cumulative CPU time (all CPUs, nanoseconds) and memory in use (bytes), from
/// `/proc/stat` and `/proc/meminfo`.
pub fn node_usage() -> (u64, u64) {
    let tps = ticks_per_second();
    let cpu = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("cpu "))?.to_string();
            // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
            let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            let busy: u64 = v.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, x)| x).sum();
            Some(busy * 1_000_000_000 / tps)
        })
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .map(|s| {
            let kb = |k: &str| {
                s.lines()
                    .find(|l| l.starts_with(k))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            kb("MemTotal:").saturating_sub(kb("MemAvailable:")) * 1024
        })
        .unwrap_or(0);
    (cpu, mem)
}

/// The fields of `/proc/{pid}/stat` the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub pgrp: i32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Start time after boot, in clock ticks (identifies a process across pid reuse).
    pub start_ticks: u64,
    /// Resident set, in pages.
    pub rss_pages: u64,
}

/// Parses a `/proc/{pid}/stat` line (the command may contain spaces and parentheses).
pub fn parse_stat(line: &str) -> Option<ProcStat> {
    let rest = &line[line.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): field N is f[N - 3].
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(ProcStat {
        state: f.first()?.chars().next()?,
        pgrp: f.get(2)?.parse().ok()?,
        cpu_ticks: num(14)? + num(15)?,
        start_ticks: num(22)?,
        rss_pages: num(24)?,
    })
}

/// `/proc/{pid}/stat` of a live (not zombie) process.
pub fn read_stat(pid: i32) -> Option<ProcStat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&s).filter(|s| s.state != 'Z' && s.state != 'X')
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// Cumulative (cpu nanoseconds, resident bytes) per process group among `pgids`.
pub fn group_usage(pgids: &[i32]) -> HashMap<i32, (u64, u64)> {
    let mut out: HashMap<i32, (u64, u64)> = HashMap::new();
    if pgids.is_empty() {
        return out;
    }
    let (tps, page) = (ticks_per_second(), page_size());
    let Ok(rd) = std::fs::read_dir("/proc") else { return out };
    for e in rd.filter_map(|e| e.ok()) {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Some(s) = read_stat(pid) else { continue };
        if pgids.contains(&s.pgrp) {
            let u = out.entry(s.pgrp).or_default();
            u.0 += s.cpu_ticks * 1_000_000_000 / tps;
            u.1 += s.rss_pages * page;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_lines() {
        let line = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 987654 12345678 321 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(s, ProcStat { state: 'S', pgrp: 4242, cpu_ticks: 300, start_ticks: 987654, rss_pages: 321 });
        assert!(parse_stat("garbage").is_none());
        let me = read_stat(std::process::id() as i32).unwrap();
        assert!(me.start_ticks > 0 && me.rss_pages > 0);
    }
}
