//! Facts about the machine the agent runs on: capacity, identity, and the pressure
//! signals behind node conditions. Every reader degrades to a neutral value when a file
//! is missing (a container without /proc/meminfo still registers).

use std::path::Path;

use crate::config::Capacity;

/// The host's capacity: available parallelism as CPUs, MemTotal as memory, 110 pods.
pub fn capacity(data_dir: Option<&Path>) -> Capacity {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem_kib = meminfo("MemTotal").unwrap_or(1024 * 1024);
    Capacity {
        cpu: cpus.to_string(),
        memory: format!("{mem_kib}Ki"),
        pods: 110,
        ephemeral_storage: data_dir.and_then(disk_space).map(|(total, _)| format!("{}Ki", total / 1024)),
    }
}

/// A `/proc/meminfo` field in KiB.
fn meminfo(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// (total, available) bytes of the filesystem holding `path`.
pub fn disk_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Identity reported in `status.nodeInfo`.
#[derive(Debug, Clone, Default)]
pub struct HostInfo {
    pub hostname: String,
    pub machine_id: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
}

impl HostInfo {
    pub fn read() -> HostInfo {
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
            })
            .unwrap_or_else(|| "Linux".into());
        HostInfo {
            hostname: read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "localhost".into()),
            machine_id: read_trimmed("/etc/machine-id").unwrap_or_default(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
            os_image,
        }
    }
}

/// The pressure signals behind MemoryPressure, DiskPressure and PIDPressure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

/// Kubelet's default hard eviction thresholds: memory.available < 100Mi,
/// nodefs.available < 10%; PIDs: more than 90% of pid_max in use.
pub fn pressure(data_dir: &Path) -> Pressure {
    let memory = meminfo("MemAvailable").is_some_and(|kib| kib < 100 * 1024);
    let disk = disk_space(data_dir).is_some_and(|(total, avail)| total > 0 && avail * 10 < total);
    let pid = (|| {
        let max: u64 = read_trimmed("/proc/sys/kernel/pid_max")?.parse().ok()?;
        let loadavg = read_trimmed("/proc/loadavg")?;
        let threads: u64 = loadavg.split_whitespace().nth(3)?.split('/').nth(1)?.parse().ok()?;
        Some(threads * 10 > max * 9)
    })()
    .unwrap_or(false);
    Pressure { memory, disk, pid }
}

/// `amd64`/`arm64`… as Kubernetes names architectures.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_capacity_is_plausible() {
        let c = capacity(Some(Path::new("/")));
        assert!(c.cpu.parse::<u32>().unwrap() >= 1);
        assert!(c.memory.ends_with("Ki"));
        assert_eq!(c.pods, 110);
        assert!(c.ephemeral_storage.is_some());
        assert!(!HostInfo::read().hostname.is_empty());
    }
}

/// The gateway of the IPv4 default route in `/proc/net/route` text (pure): the first
/// line with destination 0 and the gateway flag.
pub fn default_gateway(route_table: &str) -> Option<std::net::Ipv4Addr> {
    route_table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (destination, gateway, flags) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
        let flags = u32::from_str_radix(flags, 16).ok()?;
        // RTF_UP | RTF_GATEWAY
        if *destination != "00000000" || flags & 0x3 != 0x3 {
            return None;
        }
        // The kernel prints the address in host (little-endian) byte order.
        Some(std::net::Ipv4Addr::from(u32::from_str_radix(gateway, 16).ok()?.swap_bytes()))
    })
}

/// The node's address when `--node-ip` is not given, as the kubelet picks it: the source
/// address of the default route (asked of the kernel by connecting a UDP socket, which
/// sends nothing), else 127.0.0.1.
pub fn default_route_ip() -> std::net::IpAddr {
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    let Some(gateway) = std::fs::read_to_string("/proc/net/route").ok().as_deref().and_then(default_gateway) else {
        return loopback;
    };
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect((gateway, 53)).and_then(|_| s.local_addr()))
        .map(|a| a.ip())
        .unwrap_or(loopback)
}

#[cfg(test)]
mod route_tests {
    use super::*;

    #[test]
    fn the_default_gateway_is_read_from_the_route_table() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_gateway(table), Some(std::net::Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(default_gateway("Iface\tDestination\n"), None);
    }
}
