//! A container's state on disk, `{container}/state.json`: what a restarted agent needs to
//! re-adopt it (pid and start time, restart count, terminations, log paths, env). Saved
//! whenever the container's state changes.

use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{container_dir, ProcPod};
use crate::runtime::{RunState, Terminated};

pub(super) const STATE_FILE: &str = "state.json";

/// A termination as saved on disk (times in Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedTerm {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: i64,
    pub container_id: String,
}

pub(super) fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl From<&Terminated> for SavedTerm {
    fn from(t: &Terminated) -> SavedTerm {
        SavedTerm {
            exit_code: t.exit_code,
            signal: t.signal,
            reason: t.reason.clone(),
            message: t.message.clone(),
            started_at: t.started_at.map(|s| s.as_second()),
            finished_at: t.finished_at.as_second(),
            container_id: t.container_id.clone(),
        }
    }
}

impl From<&SavedTerm> for Terminated {
    fn from(t: &SavedTerm) -> Terminated {
        Terminated {
            exit_code: t.exit_code,
            signal: t.signal,
            reason: t.reason.clone(),
            message: t.message.clone(),
            started_at: t.started_at.map(ts),
            finished_at: ts(t.finished_at),
            container_id: t.container_id.clone(),
        }
    }
}

/// One container's state as saved in `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub namespace: String,
    pub pod: String,
    pub node: String,
    pub container: String,
    pub image: String,
    pub id: String,
    pub restart_count: i32,
    /// The running process (None once it exited).
    pub pid: Option<i32>,
    pub start_ticks: Option<u64>,
    pub started_at: Option<i64>,
    pub exited: Option<SavedTerm>,
    pub last_terminated: Option<SavedTerm>,
    pub log: PathBuf,
    pub previous_log: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub dir: PathBuf,
    pub mount_ns: bool,
    pub stopping: bool,
}

/// Writes a file only root can read (container state holds resolved Secret values).
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(data)
}

/// Writes `state.json` of container `name` of pod `uid` (write + rename).
pub(super) fn save(data_dir: &Path, uid: &str, p: &ProcPod, name: &str) {
    let Some(c) = p.containers.get(name) else { return };
    let (started_at, exited) = match &c.record.state {
        RunState::Running { started_at } => (Some(started_at.as_second()), None),
        RunState::Exited(t) => (t.started_at.map(|s| s.as_second()), Some(SavedTerm::from(t))),
        _ => return,
    };
    let saved = Saved {
        namespace: p.namespace.clone(),
        pod: p.name.clone(),
        node: p.node.clone(),
        container: name.to_string(),
        image: c.record.image.clone(),
        id: c.record.id.clone(),
        restart_count: c.record.restart_count,
        pid: c.pgid,
        start_ticks: c.start_ticks,
        started_at,
        exited,
        last_terminated: c.record.last_terminated.as_ref().map(SavedTerm::from),
        log: c.log.clone(),
        previous_log: c.previous_log.clone(),
        env: c.env.clone(),
        dir: c.dir.clone(),
        mount_ns: c.mount_ns,
        stopping: c.record.stopping,
    };
    let dir = container_dir(data_dir, uid, name);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let result = std::fs::create_dir_all(&dir)
        .and_then(|_| write_private(&tmp, &serde_json::to_vec(&saved).unwrap_or_default()))
        .and_then(|_| std::fs::rename(&tmp, dir.join(STATE_FILE)));
    if let Err(e) = result {
        tracing::warn!(dir = %dir.display(), error = %e, "saving container state failed");
    }
}
