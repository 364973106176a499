//! Small disks for the `disk-full` nemesis: each server's data directory is its own tmpfs
//! mount of a fixed size, so filling one server's disk (a ballast file written until
//! ENOSPC) leaves the others, the logs and the machine alone. Mounts are owned by
//! [`Tmpfs`] values that unmount (lazily, so a process still inside cannot keep it) when
//! dropped, after the servers are killed. Each mount's source names the harness's PID
//! (`bjdisk<pid>`), so [`sweep_stale`] can unmount those of a harness that was killed.
//!
//! No device-mapper here (no dm-delay, dm-flakey): a slow disk is the store's
//! `raft-log-before-fsync` failpoint with a `sleep` instead (see [`crate::failpoint`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::HarnessError;

/// Size of each server's data disk: a 60–300 s run writes a few tens of MB (RocksDB's WAL
/// and memtables), so this leaves ample room until the ballast takes it.
pub const DISK_MB: u64 = 256;
const MOUNT_TIMEOUT: Duration = Duration::from_secs(10);
/// The ballast's name inside a data directory (the server never touches it).
const BALLAST: &str = "jepsen-ballast";
/// Mount sources are this plus the harness's PID.
const SOURCE_PREFIX: &str = "bjdisk";

/// A tmpfs mounted at `path` for the life of the value.
#[derive(Debug)]
pub struct Tmpfs {
    pub path: PathBuf,
    mounted: bool,
}

impl Tmpfs {
    /// Mounts a `size_mb` tmpfs at `path` (created if missing).
    pub fn mount(path: &Path, size_mb: u64) -> Result<Tmpfs, HarnessError> {
        std::fs::create_dir_all(path)?;
        let options = format!("size={size_mb}m,mode=0700");
        let target = path.display().to_string();
        let source = format!("{SOURCE_PREFIX}{}", std::process::id());
        crate::net::run("mount", &["-t", "tmpfs", "-o", &options, &source, &target], MOUNT_TIMEOUT)?;
        Ok(Tmpfs { path: path.to_path_buf(), mounted: true })
    }

    /// Unmounts; idempotent. `-l` detaches even if a dying process still has a file open.
    pub fn unmount(&mut self) {
        if std::mem::take(&mut self.mounted) {
            let target = self.path.display().to_string();
            if let Err(e) = crate::net::run("umount", &["-l", &target], MOUNT_TIMEOUT) {
                tracing::warn!(path = %target, error = %e, "unmounting a data disk");
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// Mount points of our tmpfs mounts in `/proc/mounts` text whose harness is not `alive`.
fn stale_mounts(mounts: &str, alive: impl Fn(u32) -> bool) -> Vec<String> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            let pid: u32 = source.strip_prefix(SOURCE_PREFIX)?.parse().ok()?;
            (fstype == "tmpfs" && !alive(pid)).then(|| target.to_string())
        })
        .collect()
}

/// Unmounts the data disks of harness processes that no longer run; returns what it did.
pub fn sweep_stale() -> Vec<String> {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else { return vec![] };
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    stale_mounts(&mounts, alive)
        .into_iter()
        .filter(|target| crate::net::run("umount", &["-l", target.as_str()], MOUNT_TIMEOUT).is_ok())
        .map(|target| format!("mount {target}"))
        .collect()
}

/// Fills the file system holding `dir` with a ballast file until it is full; returns the
/// bytes written. ENOSPC is the goal, not an error.
pub fn fill(dir: &Path) -> Result<u64, HarnessError> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(BALLAST))?;
    // Non-zero bytes: nothing below tmpfs dedups, but a compressing fs would.
    let chunk = vec![0xa5u8; 1 << 20];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => return Err(e.into()),
        }
    }
    // The last partial pages: a few small writes take what the big one could not.
    while let Ok(n) = file.write(&chunk[..4096]) {
        if n == 0 {
            break;
        }
        written += n as u64;
    }
    Ok(written)
}

/// Removes the ballast from `dir` (absent is fine).
pub fn drain(dir: &Path) -> Result<(), HarnessError> {
    match std::fs::remove_file(dir.join(BALLAST)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_mounts_of_dead_harnesses_are_stale() {
        let mounts = "tmpfs /tmp tmpfs rw 0 0\n\
                      bjdisk12 /o/run-a/data/n1 tmpfs rw,size=262144k 0 0\n\
                      bjdisk34 /o/run-b/data/n1 tmpfs rw,size=262144k 0 0\n\
                      bjdisk56 /o/x ext4 rw 0 0\n\
                      bjdiskzz /o/y tmpfs rw 0 0\n";
        assert_eq!(stale_mounts(mounts, |pid| pid == 34), vec!["/o/run-a/data/n1"]);
    }

    #[test]
    fn fill_stops_at_a_full_disk_and_drain_frees_it() {
        if crate::net::require_root().is_err() {
            return; // mounting needs root; the harness runs as root
        }
        let dir = tempfile::tempdir().unwrap();
        let mut disk = Tmpfs::mount(&dir.path().join("d"), 4).unwrap();
        let written = fill(&disk.path).unwrap();
        assert!(written > 3 << 20 && written <= 4 << 20, "{written}");
        let err = std::fs::write(disk.path.join("more"), [1u8; 8192]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        drain(&disk.path).unwrap();
        drain(&disk.path).unwrap();
        std::fs::write(disk.path.join("more"), [1u8; 8192]).unwrap();
        disk.unmount();
        assert!(!disk.path.join("more").exists());
    }
}
