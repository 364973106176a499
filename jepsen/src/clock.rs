//! Clock skew for one node's process, with libfaketime (`LD_PRELOAD`): the process's
//! wall clock runs at an offset read from a per-node control file, which the nemesis
//! rewrites while the process runs. Like Jepsen's clock nemesis only the wall clock moves;
//! the monotonic clock (timeouts, Raft election timers) stays true.
//!
//! Limits: libfaketime intercepts libc calls, so it works for dynamically linked programs
//! that get the time through libc (Berth, being Rust, does). Go binaries such as etcd read
//! the clock through the vDSO without libc, so the offset does not reach them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::HarnessError;

/// Where Debian/Ubuntu (`apt-get install faketime`), Fedora and `make install` put the
/// library. The `MT` build comes first: it serialises libfaketime's cached state across
/// threads, which a multi-threaded server needs.
const SEARCH_DIRS: [&str; 6] = [
    "/usr/lib/x86_64-linux-gnu/faketime",
    "/usr/lib/aarch64-linux-gnu/faketime",
    "/usr/lib64/faketime",
    "/usr/lib/faketime",
    "/usr/local/lib/faketime",
    "/usr/local/lib",
];
const LIB_NAMES: [&str; 2] = ["libfaketimeMT.so.1", "libfaketime.so.1"];

/// A libfaketime found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Faketime {
    lib: PathBuf,
}

impl Faketime {
    /// `$FAKETIME_LIB` if it names a file, else the first library in the usual places.
    pub fn detect() -> Option<Faketime> {
        if let Some(lib) = std::env::var_os("FAKETIME_LIB").map(PathBuf::from).filter(|p| p.is_file()) {
            return Some(Faketime { lib });
        }
        SEARCH_DIRS
            .iter()
            .flat_map(|dir| LIB_NAMES.iter().map(move |name| Path::new(dir).join(name)))
            .find(|p| p.is_file())
            .map(|lib| Faketime { lib })
    }

    /// The library that gets preloaded.
    pub fn lib(&self) -> &Path {
        &self.lib
    }

    /// The environment for a process whose clock follows `control_file`. `FAKETIME` itself
    /// must not be set in that process — it would take precedence over the file — nor
    /// `FAKETIME_SHARED` (a `faketime` wrapper's shared start time); [`Faketime::apply`]
    /// removes both.
    pub fn env_for(&self, control_file: &Path) -> Vec<(String, String)> {
        [
            ("LD_PRELOAD", self.lib.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE", control_file.display().to_string()),
            // Without this libfaketime re-reads the file only every 10 s
            // (FAKETIME_CACHE_DURATION); with it, every clock read sees the current offset.
            // Measured cost: about 1.4 µs per wall-clock read instead of 0.07 µs.
            ("FAKETIME_NO_CACHE", "1".to_string()),
            // Only the wall clock is skewed: monotonic time keeps measuring real intervals.
            // (Without this, libfaketime shifts CLOCK_MONOTONIC by the offset as well.)
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Prepares `cmd` to run with its clock following `control_file`: creates the file at
    /// offset 0 if it does not exist yet (libfaketime would otherwise fall back to
    /// `~/.faketimerc`), sets [`Faketime::env_for`] and removes the variables that would
    /// override it.
    pub fn apply(&self, cmd: &mut Command, control_file: &Path) -> Result<(), HarnessError> {
        if !control_file.exists() {
            set_offset(control_file, 0.0)?;
        }
        cmd.env_remove("FAKETIME").env_remove("FAKETIME_SHARED").envs(self.env_for(control_file));
        Ok(())
    }
}

/// Sets the clock offset of every process following `control_file` to `seconds`
/// (negative: behind; `0`: true time). The file is replaced atomically, because
/// libfaketime aborts the process if it ever reads a spec it cannot parse.
pub fn set_offset(control_file: &Path, seconds: f64) -> Result<(), HarnessError> {
    let spec = offset_spec(seconds).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("clock offset {seconds} s is not finite"))
    })?;
    let dir = control_file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(format!("{spec}\n").as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(control_file).map_err(|e| e.error)?;
    Ok(())
}

/// The libfaketime spec for an offset: `+30`, `-12.5`, `+0` — seconds with a sign, fixed
/// notation (no exponent), at most microsecond precision.
fn offset_spec(seconds: f64) -> Option<String> {
    if !seconds.is_finite() {
        return None;
    }
    let fixed = format!("{:.6}", seconds.abs());
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    let sign = if seconds < 0.0 && trimmed != "0" { '-' } else { '+' };
    Some(format!("{sign}{trimmed}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Stdio};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// Set in the environment of the child this test binary starts to measure its own clock.
    const CHILD_ENV: &str = "BERTH_FAKETIME_PROBE_CHILD";

    fn now() -> f64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
    }

    fn monotonic_ns() -> i128 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    }

    #[test]
    fn offset_specs() {
        assert_eq!(offset_spec(30.0).as_deref(), Some("+30"));
        assert_eq!(offset_spec(-12.5).as_deref(), Some("-12.5"));
        assert_eq!(offset_spec(0.0).as_deref(), Some("+0"));
        assert_eq!(offset_spec(-0.0).as_deref(), Some("+0"));
        assert_eq!(offset_spec(1e-9).as_deref(), Some("+0"));
        assert_eq!(offset_spec(0.25).as_deref(), Some("+0.25"));
        assert_eq!(offset_spec(86400.0 * 365.0).as_deref(), Some("+31536000"));
        assert_eq!(offset_spec(f64::NAN), None);
        assert_eq!(offset_spec(f64::INFINITY), None);
    }

    #[test]
    fn set_offset_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n1.faketime");
        set_offset(&file, 30.0).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "+30\n");
        set_offset(&file, -12.5).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "-12.5\n");
        set_offset(&file, 0.0).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "+0\n");
        assert!(set_offset(&file, f64::NAN).is_err());
        // Nothing but the control file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    fn detect_or_skip() -> Option<Faketime> {
        let ft = Faketime::detect();
        if ft.is_none() {
            eprintln!("skipping: libfaketime not found (apt-get install faketime, or set FAKETIME_LIB)");
        }
        ft
    }

    #[test]
    fn date_runs_an_hour_ahead() {
        let Some(ft) = detect_or_skip() else { return };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clock");
        set_offset(&file, 3600.0).unwrap();
        let mut cmd = Command::new("date");
        cmd.arg("+%s.%N").env("FAKETIME", "+999999");
        ft.apply(&mut cmd, &file).unwrap();
        let before = now();
        let out = cmd.output().unwrap();
        let after = now();
        assert!(out.status.success(), "{out:?}");
        let shown: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert!(shown > before + 3599.0 && shown < after + 3601.0, "date said {shown}, real time {before}..{after}");

        set_offset(&file, -12.5).unwrap();
        let before = now();
        let out = cmd.output().unwrap();
        let shown: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert!((shown - (before - 12.5)).abs() < 1.0, "date said {shown}, real time {before}");
    }

    /// Not a test on its own: the body of the child process that
    /// `running_rust_process_follows_the_file` starts (this test binary, run again).
    /// It prints its wall and monotonic clocks whenever a line arrives on stdin, so the
    /// parent knows the real time before and after each reading.
    #[test]
    fn faketime_probe_child() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        let stdin = std::io::stdin();
        let mut line = String::new();
        // Bounded by the parent, which closes stdin (EOF) when done.
        for _ in 0..10 {
            line.clear();
            if stdin.lock().read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            println!("PROBE {} {}", now(), monotonic_ns());
        }
    }

    struct KillOnDrop(Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn running_rust_process_follows_the_file() {
        let Some(ft) = detect_or_skip() else { return };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clock");
        set_offset(&file, 3600.0).unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "clock::tests::faketime_probe_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        ft.apply(&mut cmd, &file).unwrap();
        let mut child = KillOnDrop(cmd.spawn().unwrap());
        let mut stdin = child.0.stdin.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.0.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest's "test … ... " may precede the first reading on its line.
                if let Some(rest) = line.split_once("PROBE ").map(|(_, rest)| rest) {
                    let mut parts = rest.split(' ');
                    let wall: f64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
                    let mono: i128 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(-1);
                    if tx.send((wall, mono)).is_err() {
                        break;
                    }
                }
            }
        });
        let mut probe = |expected_offset: f64| {
            let (real, mono_before) = (now(), monotonic_ns());
            stdin.write_all(b"now?\n").unwrap();
            let (wall, mono) = rx.recv_timeout(Duration::from_secs(30)).expect("probe child answers");
            let (real_after, mono_after) = (now(), monotonic_ns());
            assert!(
                wall > real + expected_offset - 0.5 && wall < real_after + expected_offset + 0.5,
                "child wall clock {wall}, expected real time {real}..{real_after} {expected_offset:+}"
            );
            assert!(
                mono >= mono_before && mono <= mono_after,
                "monotonic clock moved: {mono} not in {mono_before}..{mono_after}"
            );
        };
        probe(3600.0);
        // The same process, after the file changed under it: the new offset applies at once.
        set_offset(&file, -7200.0).unwrap();
        probe(-7200.0);
        set_offset(&file, 0.0).unwrap();
        probe(0.0);
    }
}
