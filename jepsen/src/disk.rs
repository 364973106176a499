//! Small disks for the `disk-full` nemesis: each server's data directory is its own tmpfs
//! mount of a fixed size, so filling one server's disk (a ballast file written until
//! ENOSPC) leaves the others, the logs and the machine alone. Mounts are owned by
//! [`Tmpfs`] values that unmount (lazily, so a process still inside cannot keep it) when
//! dropped, after the servers are killed.
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
        crate::net::run("mount", &["-t", "tmpfs", "-o", &options, "tmpfs", &target], MOUNT_TIMEOUT)?;
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
