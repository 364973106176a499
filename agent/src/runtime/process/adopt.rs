//! Re-adopting the containers a previous agent left running: the decision ([`adoption`],
//! pure) and the supervision of an adopted process, which is not the agent's child, so it is
//! polled through `/proc` and its exit status is unknown.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::logs::start_readers;
use super::saved::{save, ts, Saved, STATE_FILE};
use super::spawn::RunEnd;
use super::{ProcContainer, ProcessRuntime};
use crate::runtime::stats::{self, ProcStat};
use crate::runtime::{now, ContainerRecord, RunState, Terminated};

/// How often an adopted (non-child) container's pid is checked.
const ADOPTED_POLL: Duration = Duration::from_millis(200);

/// What a restarted agent does with a saved container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adoption {
    /// The recorded process still runs: supervise it.
    Adopt { pid: i32 },
    /// It had exited before: keep the record as it is.
    Keep,
    /// It was running but is gone (or its pid now names another process): it exited while
    /// no agent watched, status unknown.
    Lost(Terminated),
}

/// The adoption decision for `saved`, given what `/proc/{pid}/stat` says now (None: no
/// such live process).
pub fn adoption(saved: &Saved, live: Option<ProcStat>, now: Timestamp) -> Adoption {
    let Some(pid) = saved.pid else { return Adoption::Keep };
    match (live, saved.start_ticks) {
        (Some(s), Some(t)) if s.start_ticks == t && s.state != 'Z' && s.state != 'X' => Adoption::Adopt { pid },
        _ => Adoption::Lost(unknown_exit(saved.started_at.map(ts), now, &saved.id, "while the agent was down")),
    }
}

pub(super) fn unknown_exit(started_at: Option<Timestamp>, now: Timestamp, id: &str, when: &str) -> Terminated {
    Terminated {
        exit_code: 255,
        signal: None,
        reason: "Unknown".into(),
        message: Some(format!("the container exited {when}; its exit status is unknown")),
        started_at,
        finished_at: now,
        container_id: id.into(),
    }
}

impl ProcessRuntime {
    /// Loads every saved container and supervises those still running.
    pub(super) fn adopt_all(&self) {
        let Ok(pods) = std::fs::read_dir(self.data_dir.join("pods")) else { return };
        for pod_dir in pods.filter_map(|e| e.ok()) {
            let uid = pod_dir.file_name().to_string_lossy().into_owned();
            let Ok(containers) = std::fs::read_dir(pod_dir.path()) else { continue };
            for c in containers.filter_map(|e| e.ok()) {
                let path = c.path().join(STATE_FILE);
                let Ok(text) = std::fs::read_to_string(&path) else { continue };
                let saved: Saved = match serde_json::from_str(&text) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "unreadable container state");
                        continue;
                    }
                };
                self.adopt(&uid, saved);
            }
        }
    }

    fn adopt(&self, uid: &str, saved: Saved) {
        let live = saved.pid.and_then(stats::read_stat);
        let decision = adoption(&saved, live, now());
        tracing::info!(pod = %format!("{}/{}", saved.namespace, saved.pod), container = %saved.container,
            ?decision, "found a container of a previous agent");
        let mut record = ContainerRecord::new(&saved.container, &saved.image, RunState::Starting);
        record.id = saved.id.clone();
        record.restart_count = saved.restart_count;
        record.last_terminated = saved.last_terminated.as_ref().map(Terminated::from);
        record.stopping = saved.stopping;
        let mut c = ProcContainer::new(record);
        c.log = saved.log.clone();
        c.previous_log = saved.previous_log.clone();
        c.env = saved.env.clone();
        c.dir = saved.dir.clone();
        c.mount_ns = saved.mount_ns;
        c.generation = 1;
        match &decision {
            Adoption::Adopt { pid } => {
                c.pgid = Some(*pid);
                c.start_ticks = saved.start_ticks;
                c.finished = Arc::new(AtomicBool::new(false));
                c.record.state = RunState::Running { started_at: ts(saved.started_at.unwrap_or_default()) };
            }
            Adoption::Keep => {
                c.record.state = match &saved.exited {
                    Some(t) => RunState::Exited(t.into()),
                    None => RunState::Exited(unknown_exit(None, now(), &saved.id, "before the agent restarted")),
                }
            }
            Adoption::Lost(t) => c.record.state = RunState::Exited(t.clone()),
        }
        {
            let mut st = self.state.lock().unwrap();
            let p = st.entry(uid.to_string(), saved.namespace.clone(), saved.pod.clone(), saved.node.clone());
            p.containers.insert(saved.container.clone(), c);
            if let Some(p) = st.pods.get(uid) {
                save(&self.data_dir, uid, p, &saved.container);
            }
        }
        if let Adoption::Adopt { pid } = decision {
            let readers = start_readers(&saved.log);
            let (state, wake, data_dir) = (self.state.clone(), self.wake.clone(), self.data_dir.clone());
            let (uid, name, node, ticks) =
                (uid.to_string(), saved.container.clone(), saved.node.clone(), saved.start_ticks);
            let cgroup = self.cgroups.as_ref().map(|cg| cg.container(&uid, &name));
            tokio::spawn(async move {
                // Not our child: poll until the process is gone (or a zombie of someone else).
                while stats::read_stat(pid).is_some_and(|s| Some(s.start_ticks) == ticks) {
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
                let started_at = saved.started_at.map(ts);
                let exit = unknown_exit(started_at, now(), &saved.id, "after the agent re-adopted it");
                let run = RunEnd { state, data_dir, wake, uid, name, node, generation: 1, pid, cgroup };
                run.finish(readers, exit).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, Pod};

    use super::*;
    use crate::runtime::process::signal_group;
    use crate::runtime::{LogSource, Runtime, Wake};

    fn saved(pid: Option<i32>, ticks: Option<u64>) -> Saved {
        Saved {
            namespace: "ns".into(),
            pod: "p".into(),
            node: "n1".into(),
            container: "c".into(),
            image: "img".into(),
            id: "process://42".into(),
            restart_count: 2,
            pid,
            start_ticks: ticks,
            started_at: Some(1_700_000_000),
            exited: None,
            last_terminated: None,
            log: "/d/2.log".into(),
            previous_log: None,
            env: vec![],
            dir: "/d".into(),
            mount_ns: false,
            stopping: false,
        }
    }

    fn stat(state: char, start_ticks: u64) -> ProcStat {
        ProcStat { state, pgrp: 42, cpu_ticks: 0, start_ticks, rss_pages: 0 }
    }

    #[test]
    fn adoption_decision() {
        let now = ts(1_700_000_100);
        assert_eq!(adoption(&saved(Some(42), Some(7)), Some(stat('S', 7)), now), Adoption::Adopt { pid: 42 });
        // The pid now names another process (reused): lost, not adopted.
        let lost = adoption(&saved(Some(42), Some(7)), Some(stat('S', 8)), now);
        assert!(matches!(&lost, Adoption::Lost(t) if t.reason == "Unknown" && t.finished_at == now));
        assert!(matches!(adoption(&saved(Some(42), Some(7)), None, now), Adoption::Lost(_)));
        assert!(matches!(adoption(&saved(Some(42), Some(7)), Some(stat('Z', 7)), now), Adoption::Lost(_)));
        assert_eq!(adoption(&saved(None, None), None, now), Adoption::Keep);
    }

    fn pod() -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("p".into());
        p.metadata.namespace = Some("ns".into());
        p.metadata.uid = Some("uid-a".into());
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec { node_name: Some("n1".into()), ..Default::default() });
        p
    }

    #[tokio::test]
    async fn a_new_runtime_adopts_running_containers() {
        let dir = tempfile::tempdir().unwrap();
        let wake: Wake = Arc::new(|_: &str, _: &str| {});
        let first = ProcessRuntime::new(dir.path().to_path_buf(), wake.clone(), false).unwrap();
        let c = Container {
            name: "c".into(),
            command: Some(vec!["sh".into(), "-c".into(), "echo one; sleep 30".into()]),
            ..Default::default()
        };
        first.start(&pod(), &c, vec![], vec![]);
        let id = first.containers("uid-a")[0].id.clone();
        let has_output = |rt: &ProcessRuntime| match rt.logs("ns", "p", "c", false) {
            Some(LogSource::File { path, .. }) => {
                std::fs::read_to_string(path).unwrap_or_default().contains("stdout F one")
            }
            _ => false,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !has_output(&first) {
            assert!(std::time::Instant::now() < deadline, "no output");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid: i32 = id.strip_prefix("process://").unwrap().parse().unwrap();
        drop(first); // an agent going away does not stop its containers
        let _kill = scopeguard(pid);
        assert!(stats::read_stat(pid).is_some());

        let second = ProcessRuntime::new(dir.path().to_path_buf(), wake, true).unwrap();
        let r = second.containers("uid-a").pop().unwrap();
        assert_eq!((r.id.as_str(), r.restart_count), (id.as_str(), 0));
        assert!(matches!(r.state, RunState::Running { .. }));
        assert_eq!(second.pods("n1"), vec!["uid-a".to_string()]);
        second.stop("uid-a", "c", Duration::from_secs(5));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !matches!(second.containers("uid-a")[0].state, RunState::Exited(_)) {
            assert!(std::time::Instant::now() < deadline, "adopted container did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(has_output(&second), "the adopted container's log is found");
    }

    /// Kills process group `pid` when dropped (test cleanup, also on failure).
    fn scopeguard(pid: i32) -> impl Drop {
        struct Kill(i32);
        impl Drop for Kill {
            fn drop(&mut self) {
                signal_group(self.0, libc::SIGKILL);
            }
        }
        Kill(pid)
    }
}
