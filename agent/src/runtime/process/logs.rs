//! A container's output: the named pipes (FIFOs) it writes to, which outlive the agent, and
//! the copiers that turn them into its log file, one [`crate::runtime::logline`] per line, rotated
//! by size ([`RotatingLog`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;

pub(super) fn fifo_paths(log: &Path) -> (PathBuf, PathBuf) {
    (log.with_extension("stdout"), log.with_extension("stderr"))
}

pub(super) fn mkfifo(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let _ = std::fs::remove_file(path);
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: mkfifo on a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Starts copying the container's FIFOs into its log file.
pub(super) fn start_readers(log: &Path) -> Vec<JoinHandle<()>> {
    let mut readers = Vec::new();
    let Ok(file) = RotatingLog::open(log, MAX_LOG_BYTES) else { return readers };
    let file = Arc::new(Mutex::new(file));
    let (out, err) = fifo_paths(log);
    for (stream, path) in [("stdout", out), ("stderr", err)] {
        let rx = match tokio::net::unix::pipe::OpenOptions::new().open_receiver(&path) {
            Ok(rx) => rx,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "no output pipe");
                continue;
            }
        };
        readers.push(tokio::spawn(copy_lines(Box::new(rx), file.clone(), stream)));
    }
    readers
}

/// Size at which a container's log file is rotated (the kubelet's `containerLogMaxSize`).
pub const MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;

/// A container's log file, rotated by size: past [`MAX_LOG_BYTES`] it is renamed to
/// `{log}.1` (replacing the previous one) and a new file starts, so a chatty container uses
/// at most about twice the limit on disk. Shared by the stdout and stderr copiers.
pub struct RotatingLog {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    max: u64,
}

impl RotatingLog {
    pub fn open(path: &Path, max: u64) -> std::io::Result<RotatingLog> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog { path: path.to_path_buf(), file, size, max })
    }

    /// The rotated file next to `log`.
    pub fn rotated(log: &Path) -> PathBuf {
        let mut name = log.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    pub fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max {
            std::fs::rename(&self.path, Self::rotated(&self.path))?;
            self.file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }
}

/// Copies `out` line by line into `log` (one append per line).
async fn copy_lines(out: Box<dyn AsyncRead + Send + Unpin>, log: Arc<Mutex<RotatingLog>>, stream: &'static str) {
    let mut reader = BufReader::new(out);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                let line =
                    crate::runtime::logline::format(Timestamp::now(), stream, text.trim_end_matches(['\n', '\r']));
                if log.lock().unwrap().append(line.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_rotate_by_size_keeping_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = RotatingLog::open(&path, 100).unwrap();
        for i in 0..12 {
            log.append(format!("line {i:02} padding padding\n").as_bytes()).unwrap();
            // 24 bytes: four to a file
        }
        let current = std::fs::read_to_string(&path).unwrap();
        let rotated = std::fs::read_to_string(RotatingLog::rotated(&path)).unwrap();
        assert!(current.len() <= 100 && rotated.len() <= 100, "{current:?} {rotated:?}");
        assert!(current.ends_with("line 11 padding padding\n"));
        assert!(rotated.ends_with("line 07 padding padding\n"), "{rotated:?}");
        // Reopening (an adopted container's new readers) continues the size count.
        let mut again = RotatingLog::open(&path, 100).unwrap();
        again.append(b"next line of twenty-six b\n").unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().len() <= 100);
    }
}
