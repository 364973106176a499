//! A child process owned by a test: killed (SIGKILL) and reaped when the guard drops, so a
//! failing test leaves nothing running.

use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct KillOnDrop(pub Child);

/// Lines a spawned command printed so far (filled by a reader thread).
pub type SharedLines = Arc<Mutex<Vec<String>>>;

impl KillOnDrop {
    /// Starts a thread that collects the child's stdout lines as they arrive.
    pub fn stdout_lines(&mut self) -> SharedLines {
        use std::io::BufRead;
        let lines = SharedLines::default();
        let stdout = self.0.stdout.take().expect("stdout piped");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        lines
    }

    /// Sends SIGINT (Ctrl-C) and waits (bounded) for the exit status.
    pub fn interrupt(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on the PID of a child we own and have not reaped yet.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap now (like a machine failure); dropping the guard later is a no-op.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_guard_kills_the_child() {
        let guard = KillOnDrop(std::process::Command::new("sleep").arg("60").spawn().unwrap());
        let pid = guard.0.id();
        drop(guard);
        // Reaped, so the PID no longer names our child.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(!state.contains("(sleep)"), "sleep {pid} still exists: {state}");
    }
}
