//! The fake runtime behind hollow nodes: nothing runs. A started container turns Running
//! after the start delay and logs one line per start. Pod annotations steer it:
//!
//! - `fake.berth.dev/ready: "false"` — containers run but never become ready;
//! - `fake.berth.dev/exit-code: "N"` — containers exit with N after running
//!   `fake.berth.dev/run-ms` (default 100) milliseconds.
//!
//! One instance serves every hollow node of a process (state is keyed by pod uid).
//! Running containers report zero usage in `/stats/summary` (nothing runs), so
//! metrics.k8s.io, `top pods` and HPAs see hollow pods as idle rather than unmeasured.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use rand::Rng;

use super::{now, pod_keys, ContainerRecord, LogLine, LogSource, Mount, PodTable, RunState, Runtime, Terminated, Wake};

pub const READY_ANNOTATION: &str = "fake.berth.dev/ready";
pub const EXIT_CODE_ANNOTATION: &str = "fake.berth.dev/exit-code";
pub const RUN_MS_ANNOTATION: &str = "fake.berth.dev/run-ms";

#[derive(Debug, Clone, Copy)]
struct Behavior {
    ready: bool,
    exit: Option<(i32, Duration)>,
}

impl Behavior {
    fn of(pod: &Pod) -> Behavior {
        let a = pod.metadata.annotations.as_ref();
        let get = |k: &str| a.and_then(|a| a.get(k)).map(|v| v.trim().to_string());
        let ready = get(READY_ANNOTATION).is_none_or(|v| v != "false");
        let run = get(RUN_MS_ANNOTATION).and_then(|v| v.parse().ok()).unwrap_or(100);
        let exit = get(EXIT_CODE_ANNOTATION).and_then(|v| v.parse().ok()).map(|c| (c, Duration::from_millis(run)));
        Behavior { ready, exit }
    }
}

struct FakeContainer {
    record: ContainerRecord,
    logs: Vec<LogLine>,
    previous_logs: Vec<LogLine>,
    /// Bumped on every start and stop so a stale timer does nothing.
    generation: u64,
}

type State = PodTable<FakeContainer>;

/// See the module docs.
pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
    wake: Wake,
    start_delay: Option<Duration>,
}

impl FakeRuntime {
    /// `start_delay` None: each start takes a random 0–100 ms.
    pub fn new(start_delay: Option<Duration>, wake: Wake) -> FakeRuntime {
        FakeRuntime { state: Arc::default(), wake, start_delay }
    }

    fn delay(&self) -> Duration {
        self.start_delay.unwrap_or_else(|| Duration::from_millis(rand::rng().random_range(0..=100)))
    }
}

fn exited(record: &ContainerRecord, exit_code: i32) -> Terminated {
    let started_at = match record.state {
        RunState::Running { started_at } => Some(started_at),
        _ => None,
    };
    Terminated {
        exit_code,
        signal: None,
        reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
        message: None,
        started_at,
        finished_at: now(),
        container_id: record.id.clone(),
    }
}

/// Moves a container to Running (and schedules its exit); returns whether it changed.
fn run(state: &Arc<Mutex<State>>, uid: &str, name: &str, generation: u64, behavior: Behavior, wake: &Wake) -> bool {
    let mut st = state.lock().unwrap();
    let Some(pod) = st.pods.get_mut(uid) else { return false };
    let Some(c) = pod.containers.get_mut(name) else { return false };
    if c.generation != generation || c.record.state != RunState::Starting {
        return false;
    }
    let t = now();
    c.record.state = RunState::Running { started_at: t };
    c.logs
        .push(LogLine { time: t, text: format!("fake container {name} started (restart {})", c.record.restart_count) });
    if let Some((code, after)) = behavior.exit {
        let (state, wake, uid, name, node) =
            (state.clone(), wake.clone(), uid.to_string(), name.to_string(), pod.node.clone());
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let changed = {
                let mut st = state.lock().unwrap();
                match st.pods.get_mut(&uid).and_then(|p| p.containers.get_mut(&name)) {
                    Some(c) if c.generation == generation && c.record.is_active() => {
                        c.record.state = RunState::Exited(exited(&c.record, code));
                        true
                    }
                    _ => false,
                }
            };
            if changed {
                wake(&node, &uid);
            }
        });
    }
    true
}

impl Runtime for FakeRuntime {
    fn start(&self, pod: &Pod, container: &Container, _env: Vec<(String, String)>, _mounts: Vec<Mount>) {
        let (uid, namespace, name, node) = pod_keys(pod);
        let behavior = Behavior::of(pod);
        let generation = {
            let mut st = self.state.lock().unwrap();
            let p = st.entry(uid.clone(), namespace, name, node.clone());
            let image = container.image.clone().unwrap_or_default();
            let c = p.containers.entry(container.name.clone()).or_insert_with(|| FakeContainer {
                record: ContainerRecord {
                    restart_count: -1,
                    ready: behavior.ready,
                    ..ContainerRecord::new(&container.name, &image, RunState::Starting)
                },
                logs: Vec::new(),
                previous_logs: Vec::new(),
                generation: 0,
            });
            if let RunState::Exited(t) = &c.record.state {
                c.record.last_terminated = Some(t.clone());
                c.previous_logs = std::mem::take(&mut c.logs);
            }
            c.record.restart_count += 1;
            c.record.id = format!("fake://{}-{}-{}", &uid[..uid.len().min(8)], container.name, c.record.restart_count);
            c.record.state = RunState::Starting;
            c.record.stopping = false;
            c.generation += 1;
            c.generation
        };
        let delay = self.delay();
        if delay.is_zero() {
            run(&self.state, &uid, &container.name, generation, behavior, &self.wake);
            return;
        }
        let (state, wake, cname) = (self.state.clone(), self.wake.clone(), container.name.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if run(&state, &uid, &cname, generation, behavior, &wake) {
                wake(&node, &uid);
            }
        });
    }

    fn stop(&self, pod_uid: &str, container: &str, _grace: Duration) {
        let mut st = self.state.lock().unwrap();
        if let Some(c) = st.pods.get_mut(pod_uid).and_then(|p| p.containers.get_mut(container)) {
            c.record.stopping = true;
            if c.record.is_active() {
                c.generation += 1;
                c.record.state = RunState::Exited(exited(&c.record, 0));
            }
        }
    }

    fn containers(&self, pod_uid: &str) -> Vec<ContainerRecord> {
        let st = self.state.lock().unwrap();
        st.pods.get(pod_uid).map(|p| p.containers.values().map(|c| c.record.clone()).collect()).unwrap_or_default()
    }

    fn pods(&self, node: &str) -> Vec<String> {
        self.state.lock().unwrap().pods.iter().filter(|(_, p)| p.node == node).map(|(u, _)| u.clone()).collect()
    }

    fn stats(&self) -> Vec<super::stats::PodUsage> {
        let st = self.state.lock().unwrap();
        st.pods
            .iter()
            .map(|(uid, p)| super::stats::PodUsage {
                uid: uid.clone(),
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                node: p.node.clone(),
                containers: p
                    .containers
                    .values()
                    .filter(|c| matches!(c.record.state, RunState::Running { .. }))
                    .map(|c| super::stats::ContainerUsage {
                        name: c.record.name.clone(),
                        id: c.record.id.clone(),
                        usage_core_nano_seconds: 0,
                        working_set_bytes: 0,
                    })
                    .collect(),
            })
            .filter(|p| !p.containers.is_empty())
            .collect()
    }

    fn forget(&self, pod_uid: &str) {
        self.state.lock().unwrap().remove(pod_uid);
    }

    fn record_failure(&self, pod: &Pod, container: &Container, reason: &str, message: &str) {
        let (uid, namespace, name, node) = pod_keys(pod);
        let mut st = self.state.lock().unwrap();
        let p = st.entry(uid, namespace, name, node);
        p.containers.insert(
            container.name.clone(),
            FakeContainer {
                record: ContainerRecord {
                    ready: false,
                    ..ContainerRecord::new(
                        &container.name,
                        container.image.as_deref().unwrap_or_default(),
                        RunState::CreateFailed { reason: reason.into(), message: message.into() },
                    )
                },
                logs: Vec::new(),
                previous_logs: Vec::new(),
                generation: 0,
            },
        );
    }

    fn version(&self) -> String {
        format!("fake://{}", env!("CARGO_PKG_VERSION"))
    }

    fn logs(&self, namespace: &str, pod: &str, container: &str, previous: bool) -> Option<LogSource> {
        let st = self.state.lock().unwrap();
        let c = st.named_container(namespace, pod, container)?;
        Some(LogSource::Memory(if previous { c.previous_logs.clone() } else { c.logs.clone() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(annotations: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                uid: Some("uid-1".into()),
                annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn container() -> Container {
        Container { name: "c".into(), image: Some("img".into()), ..Default::default() }
    }

    #[tokio::test]
    async fn zero_delay_runs_at_once_and_restarts_count() {
        let rt = FakeRuntime::new(Some(Duration::ZERO), Arc::new(|_: &str, _: &str| {}));
        rt.start(&pod(&[(READY_ANNOTATION, "false")]), &container(), vec![], vec![]);
        let c = &rt.containers("uid-1")[0];
        assert!(matches!(c.state, RunState::Running { .. }));
        assert!(!c.ready);
        assert_eq!(c.restart_count, 0);
        let usage = rt.stats();
        assert_eq!((usage.len(), usage[0].name.as_str(), usage[0].containers.len()), (1, "p", 1));
        assert_eq!(usage[0].containers[0].usage_core_nano_seconds, 0, "nothing runs: zero usage, not none");
        rt.stop("uid-1", "c", Duration::ZERO);
        assert!(matches!(rt.containers("uid-1")[0].state, RunState::Exited(_)));
        rt.start(&pod(&[]), &container(), vec![], vec![]);
        let c = &rt.containers("uid-1")[0];
        assert_eq!(c.restart_count, 1);
        assert!(c.last_terminated.is_some());
        let Some(LogSource::Memory(lines)) = rt.logs("ns", "p", "c", true) else { panic!("logs") };
        assert_eq!(lines.len(), 1);
        rt.forget("uid-1");
        assert!(rt.pods("").is_empty());
        assert!(rt.logs("ns", "p", "c", false).is_none());
    }

    #[tokio::test]
    async fn exit_code_annotation_exits_and_wakes() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let wake: Wake = Arc::new(move |node: &str, uid: &str| {
            let _ = tx.send((node.to_string(), uid.to_string()));
        });
        let rt = FakeRuntime::new(Some(Duration::from_millis(5)), wake);
        rt.start(&pod(&[(EXIT_CODE_ANNOTATION, "3"), (RUN_MS_ANNOTATION, "5")]), &container(), vec![], vec![]);
        assert_eq!(rt.containers("uid-1")[0].state, RunState::Starting);
        rx.recv().await.unwrap();
        assert!(matches!(rt.containers("uid-1")[0].state, RunState::Running { .. }));
        rx.recv().await.unwrap();
        match &rt.containers("uid-1")[0].state {
            RunState::Exited(t) => assert_eq!((t.exit_code, t.reason.as_str()), (3, "Error")),
            s => panic!("{s:?}"),
        }
    }
}
