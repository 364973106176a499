//! cgroups for process-runtime containers (root only): each container runs in its own
//! cgroup `berth/{pod uid}/{container}` — under the agent's own cgroup on v1 (one per
//! controller: memory, cpu, cpuacct), under the root on v2 (the agent's cgroup holds
//! processes, so v2's no-internal-processes rule forbids enabling controllers below it).
//! `resources.limits` become `memory.max`/`cpu.max` (v2) or
//! `memory.limit_in_bytes`/`cpu.cfs_quota_us` (v1); the child joins the cgroup before exec;
//! killing the container kills every process in its cgroup (`cgroup.kill` on v2), not just
//! its process group; an exit with `oom_kill` counted in `memory.events` (v2) or
//! `memory.oom_control` (v1) is reported as `OOMKilled`; usage comes from
//! `cpu.stat`/`cpuacct.usage` and `memory.current`/`memory.usage_in_bytes` minus inactive
//! file pages (the kubelet's working set). Limits in kernel units ([`cpu_millis`],
//! [`memory_bytes`], through `berth_proto::Quantity`) and [`Limits::of`] are pure.

use std::io::Write;
use std::path::{Path, PathBuf};

use berth_proto::Quantity;
use k8s_openapi::api::core::v1::Container;

/// Which cgroup hierarchy the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// CPU as millicores (`500m`, `1`, `0.25`), rounded up as `MilliValue` does; None for a
/// malformed or negative quantity, which no kernel limit can express.
pub fn cpu_millis(q: &str) -> Option<u64> {
    non_negative(q).map(|q| q.milli_value().unsigned_abs())
}

/// Memory as bytes (`128Mi`, `1Gi`, `500M`, `1e9`, `1.5Ki`), rounded up as `Value` does.
pub fn memory_bytes(q: &str) -> Option<u64> {
    non_negative(q).map(|q| q.value().unsigned_abs())
}

fn non_negative(text: &str) -> Option<Quantity> {
    Quantity::parse(text).ok().filter(|q| !q.is_negative())
}

/// The limits the agent enforces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub cpu_millis: Option<u64>,
}

impl Limits {
    pub fn of(c: &Container) -> Limits {
        let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
        let get = |k: &str| limits.and_then(|l| l.get(k)).map(|q| q.0.clone());
        Limits {
            memory_bytes: get("memory").and_then(|q| memory_bytes(&q)),
            cpu_millis: get("cpu").and_then(|q| cpu_millis(&q)).filter(|m| *m > 0),
        }
    }
}

const CFS_PERIOD_US: u64 = 100_000;

/// The cgroup hierarchy the agent places containers in.
#[derive(Debug, Clone)]
pub struct Cgroups {
    pub version: Version,
    /// v2: the `berth` directory; v1: `(controller, berth directory)` per controller.
    bases: Vec<(&'static str, PathBuf)>,
}

/// One container's cgroup (directories, one per v1 controller or the single v2 one).
#[derive(Debug, Clone)]
pub struct ContainerCgroup {
    pub version: Version,
    dirs: Vec<(&'static str, PathBuf)>,
}

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new().write(true).open(path)?.write_all(value.as_bytes())
}

fn own_cgroup(controller: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctrls.split(',').any(|c| c == controller).then(|| path.to_string())
    })
}

impl Cgroups {
    /// The host's hierarchy when the agent can manage it (root, writable), else None.
    pub fn detect() -> Option<Cgroups> {
        if !super::mounts::supported() {
            return None;
        }
        let root = Path::new("/sys/fs/cgroup");
        let cg = if root.join("cgroup.controllers").exists() {
            let base = root.join("berth");
            std::fs::create_dir_all(&base).ok()?;
            // Controllers must be enabled on every level down to the containers' parents.
            let _ = write(&root.join("cgroup.subtree_control"), "+memory +cpu");
            let _ = write(&base.join("cgroup.subtree_control"), "+memory +cpu");
            Cgroups { version: Version::V2, bases: vec![("unified", base)] }
        } else {
            let mut bases = Vec::new();
            for ctrl in ["memory", "cpu", "cpuacct"] {
                let mount = root.join(ctrl);
                if !mount.join("cgroup.procs").exists() {
                    continue;
                }
                let own = own_cgroup(ctrl).map(|o| mount.join(o.trim_start_matches('/'))).filter(|d| d.is_dir());
                let base = own.unwrap_or(mount).join("berth");
                if std::fs::create_dir_all(&base).is_ok() {
                    bases.push((ctrl, base));
                }
            }
            if !bases.iter().any(|(c, _)| *c == "memory") {
                return None;
            }
            Cgroups { version: Version::V1, bases }
        };
        Some(cg)
    }

    /// The cgroup of container `name` of pod `uid` (not created).
    pub fn container(&self, uid: &str, name: &str) -> ContainerCgroup {
        ContainerCgroup {
            version: self.version,
            dirs: self.bases.iter().map(|(c, b)| (*c, b.join(uid).join(name))).collect(),
        }
    }

    /// Removes pod `uid`'s (empty) cgroup directories.
    pub fn remove_pod(&self, uid: &str) {
        for (_, b) in &self.bases {
            let _ = std::fs::remove_dir(b.join(uid));
        }
    }
}

impl ContainerCgroup {
    fn dir(&self, ctrl: &str) -> Option<&Path> {
        match self.version {
            Version::V2 => self.dirs.first().map(|(_, d)| d.as_path()),
            Version::V1 => self.dirs.iter().find(|(c, _)| *c == ctrl).map(|(_, d)| d.as_path()),
        }
    }

    /// Creates the cgroup (a leftover of an earlier run is emptied and reused) and applies
    /// `limits`; returns the open `cgroup.procs` files the child writes itself into.
    pub fn create(&self, limits: Limits) -> std::io::Result<Vec<std::fs::File>> {
        for (_, d) in &self.dirs {
            if d.exists() {
                self.kill();
            }
            // A sibling's removal may race for the pod's directory: try twice.
            std::fs::create_dir_all(d).or_else(|_| std::fs::create_dir_all(d))?;
            if self.version == Version::V2 {
                // v2 controllers reach a cgroup only when its parent (the pod's) enables them.
                if let Some(pod) = d.parent() {
                    let _ = write(&pod.join("cgroup.subtree_control"), "+memory +cpu");
                }
            }
        }
        match self.version {
            Version::V2 => {
                let d = self.dir("").expect("v2 has one directory");
                if let Some(m) = limits.memory_bytes {
                    write(&d.join("memory.max"), &m.to_string())?;
                    let _ = write(&d.join("memory.swap.max"), "0");
                }
                if let Some(c) = limits.cpu_millis {
                    write(&d.join("cpu.max"), &format!("{} {CFS_PERIOD_US}", c * CFS_PERIOD_US / 1000))?;
                }
            }
            Version::V1 => {
                if let (Some(m), Some(d)) = (limits.memory_bytes, self.dir("memory")) {
                    write(&d.join("memory.limit_in_bytes"), &m.to_string())?;
                    let _ = write(&d.join("memory.memsw.limit_in_bytes"), &m.to_string());
                }
                if let (Some(c), Some(d)) = (limits.cpu_millis, self.dir("cpu")) {
                    write(&d.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
                    write(&d.join("cpu.cfs_quota_us"), &(c * CFS_PERIOD_US / 1000).to_string())?;
                }
            }
        }
        self.dirs.iter().map(|(_, d)| std::fs::OpenOptions::new().write(true).open(d.join("cgroup.procs"))).collect()
    }

    /// Makes `cmd`'s child join the cgroup (writes "0", i.e. itself, to each
    /// `cgroup.procs`) before exec.
    pub fn join_before_exec(cmd: &mut tokio::process::Command, procs: Vec<std::fs::File>) {
        use std::os::fd::AsRawFd;
        // SAFETY: runs in the forked child; write(2) on fds opened before the fork.
        unsafe {
            cmd.pre_exec(move || {
                for f in &procs {
                    if libc::write(f.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }

    /// The pids in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let Some(d) = self.dirs.first().map(|(_, d)| d) else { return Vec::new() };
        std::fs::read_to_string(d.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// SIGKILLs every process in the cgroup.
    pub fn kill(&self) {
        if self.version == Version::V2 {
            if let Some(d) = self.dir("") {
                if write(&d.join("cgroup.kill"), "1").is_ok() {
                    return;
                }
            }
        }
        for pid in self.pids() {
            // SAFETY: kill(2) on a process of this container's cgroup.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    /// Whether the kernel's OOM killer killed a process of this cgroup.
    pub fn oom_killed(&self) -> bool {
        let Some(d) = self.dir("memory") else { return false };
        let file = match self.version {
            Version::V2 => "memory.events",
            Version::V1 => "memory.oom_control",
        };
        std::fs::read_to_string(d.join(file)).is_ok_and(|s| {
            s.lines().any(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0) > 0)
        })
    }

    /// Cumulative CPU nanoseconds and working-set bytes.
    pub fn usage(&self) -> Option<(u64, u64)> {
        let read = |p: PathBuf| std::fs::read_to_string(p).ok();
        let stat_value = |text: &str, key: &str| {
            text.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse::<u64>().ok()))
        };
        match self.version {
            Version::V2 => {
                let d = self.dir("")?;
                let cpu = stat_value(&read(d.join("cpu.stat"))?, "usage_usec ")? * 1000;
                let current: u64 = read(d.join("memory.current"))?.trim().parse().ok()?;
                let inactive = read(d.join("memory.stat")).and_then(|s| stat_value(&s, "inactive_file ")).unwrap_or(0);
                Some((cpu, current.saturating_sub(inactive)))
            }
            Version::V1 => {
                let cpu = self
                    .dir("cpuacct")
                    .and_then(|d| read(d.join("cpuacct.usage")))
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                let m = self.dir("memory")?;
                let usage: u64 = read(m.join("memory.usage_in_bytes"))?.trim().parse().ok()?;
                let inactive =
                    read(m.join("memory.stat")).and_then(|s| stat_value(&s, "total_inactive_file ")).unwrap_or(0);
                Some((cpu, usage.saturating_sub(inactive)))
            }
        }
    }

    /// Removes the cgroup once its processes are gone (retries briefly while they exit).
    pub async fn remove(&self) {
        for _ in 0..50 {
            if self.pids().is_empty() {
                break;
            }
            self.kill();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        for (_, d) in &self.dirs {
            let _ = std::fs::remove_dir(d);
            // The pod's directory goes with its last container (fails while others exist).
            if let Some(pod) = d.parent() {
                let _ = std::fs::remove_dir(pod);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(cpu_millis("500m"), Some(500));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("0.25"), Some(250));
        assert_eq!(cpu_millis("lots"), None);
        assert_eq!(memory_bytes("64Mi"), Some(64 << 20));
        assert_eq!(memory_bytes("1Gi"), Some(1 << 30));
        assert_eq!(memory_bytes("500M"), Some(500_000_000));
        assert_eq!(memory_bytes("1e6"), Some(1_000_000));
        assert_eq!(memory_bytes("12345"), Some(12345));
        assert_eq!(memory_bytes("1.5Ki"), Some(1536));
        assert_eq!(memory_bytes("x"), None);
    }

    #[test]
    fn limits_from_the_container() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "resources": {"limits": {"cpu": "250m", "memory": "128Mi"}, "requests": {"cpu": "1"}}
        }))
        .unwrap();
        assert_eq!(Limits::of(&c), Limits { memory_bytes: Some(128 << 20), cpu_millis: Some(250) });
        assert_eq!(Limits::of(&Container::default()), Limits::default());
    }
}
