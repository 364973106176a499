//! The recorded history of a test run: every operation a client invoked and how it
//! completed, every watch response a watcher received, and every fault the nemesis
//! injected or healed — one JSON object per line in `history.jsonl`.
//!
//! The model follows Jepsen: a client *process* invokes an operation (`invoke`), which then
//! completes as `ok` (it happened), `fail` (it certainly did not happen) or `info` (we do not
//! know — a timeout or a broken connection). A process that got `info` never invokes again;
//! the worker continues under a fresh process number, so each process is sequential.
//! Watch responses have no invocation of their own: they are `ok` records of the watcher's
//! process between its `watch` invoke and the session's end. The nemesis is process
//! [`NEMESIS`].
//!
//! Everything a checker needs is in the history — including the final reads the harness
//! does after healing — so `berth-jepsen check DIR` re-decides a run from the file alone.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The process number of the nemesis.
pub const NEMESIS: i64 = -1;

/// How an operation record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// One record of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history (0, 1, 2, … in recording order).
    pub index: u64,
    /// Nanoseconds since the test started (monotonic clock of the harness).
    pub time_ns: u64,
    /// Client process, or [`NEMESIS`].
    pub process: i64,
    #[serde(rename = "type")]
    pub kind: OpType,
    /// The node (member name) the client talked to; empty for the nemesis.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// What was done, with its arguments and (on completion) its results.
    #[serde(flatten)]
    pub call: Call,
    /// Why it failed or is indeterminate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The operations of all workloads. On an `invoke` the result fields are `None`; the
/// completion repeats the arguments and fills in the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Call {
    // ---- register: independent keys holding integers ----
    /// Linearizable read of `key`; `value` None = key absent (on completion).
    Read { key: String, value: Option<i64> },
    /// Unconditional write.
    Write { key: String, value: i64 },
    /// Compare-and-set: if `key` holds `from`, set it to `to`. A CAS whose compare did not
    /// match completes as `fail`.
    Cas { key: String, from: i64, to: i64 },

    // ---- set (and durability): unique elements ----
    /// Add a unique element (stored as its own key).
    Add { element: u64 },
    /// Read every element present (final read). `elements` None on invoke.
    ReadAll {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        elements: Option<Vec<u64>>,
    },

    // ---- watch: writers and watchers on one prefix ----
    /// A writer's put; `revision` is the store revision of the put (on `ok`).
    Put { key: String, value: String, revision: Option<i64> },
    /// A writer's delete of one key; `revision` of the delete and how many keys went (on `ok`).
    Delete { key: String, revision: Option<i64>, deleted: Option<i64> },
    /// A watcher opens a watch on `prefix` from `start_revision` (0 = now). The `ok`
    /// completion carries the watch id; the session then yields `watch-response` records
    /// until one with `canceled` or an `info`/`fail` of `watch-end`.
    Watch { prefix: String, start_revision: i64, prev_kv: bool, filter: WatchFilter, watch_id: Option<i64> },
    /// One watch response as received (never split or merged by the harness).
    WatchResponse {
        /// Header revision of the response.
        header_revision: i64,
        /// Events in the order received.
        events: Vec<WatchEvent>,
        /// True for a progress notification (no events).
        #[serde(default)]
        progress: bool,
        #[serde(default)]
        compact_revision: i64,
        #[serde(default)]
        canceled: bool,
    },
    /// A watch session ended (stream broke or the harness cancelled it). Recorded as `info`
    /// for breaks and `ok` for a deliberate cancel; `last_revision` is the last event
    /// revision the watcher saw (the watcher resumes at last_revision + 1).
    WatchEnd { last_revision: i64 },
    /// The store's full event history under the watch prefix, read after healing from
    /// revision 1 (compaction is off during watch tests). Recorded by the harness as one
    /// `ok` record; the watch checker compares watchers and writers against it.
    FinalHistory { events: Vec<WatchEvent>, revision: i64 },

    // ---- durability ----
    /// After the final restart, one member's serializable read of every element.
    MemberRead {
        member: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        elements: Option<Vec<u64>>,
    },
    /// A member failed to boot (`fail`) or booted (`ok`) after a restart.
    Boot { member: String },

    // ---- control plane (bind, deploy, statefulset): the Kubernetes API ----
    /// Create a bare pod with resource requests (bind workload); `uid` on `ok`.
    CreatePod { name: String, cpu_milli: u64, memory_bytes: u64, uid: Option<String> },
    /// Delete a pod by name (bind workload).
    DeletePod { name: String },
    /// One pod as the harness's pod watch delivered it (an `ok` record of the pod recorder,
    /// with no invocation); `deleted` for a DELETED event.
    PodSeen { pod: PodView, deleted: bool },
    /// The pod recorder (re)listed every pod (at its start, and after `410 Gone`): the whole
    /// set as of `resource_version`.
    PodList { pods: Vec<PodView>, resource_version: u64 },
    /// After healing: every pod and every node's allocatable (None on invoke).
    FinalState {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pods: Option<Vec<PodView>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nodes: Option<Vec<NodeView>>,
    },
    /// A write of a Deployment's whole spec (deploy workload): `replicas` and `version`
    /// (the template's `version` label, env and image) and the unique `write_id` annotation,
    /// so every write changes the object. `resource_version` as returned (on `ok`; deletes
    /// return none).
    DeploymentWrite {
        name: String,
        action: DeployAction,
        replicas: i32,
        version: u32,
        write_id: u64,
        resource_version: Option<u64>,
    },
    /// After healing: waiting (bounded) until every Deployment runs exactly its `replicas`
    /// Ready pods of its current template. `ok` with the time since the final heal and what
    /// was read; `fail` with the last state read when the bound passed.
    Converge {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seconds: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deployments: Option<Vec<DeploymentView>>,
        /// Pods of the workload's Deployments that no Deployment owns any more.
        #[serde(default)]
        orphan_pods: u32,
    },

    // ---- api-watch: ConfigMaps through the Kubernetes API ----
    /// A writer's create, update (unconditional replace) or delete of ConfigMap `name`;
    /// `resource_version` of the write as returned (on `ok`; deletes return the object's
    /// last one, so none is recorded).
    ConfigMapWrite {
        name: String,
        action: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource_version: Option<u64>,
    },
    /// A watcher listed every ConfigMap (at its start and after `410 Gone`): (name,
    /// resourceVersion) of each, as of the list's `resource_version`.
    ConfigMapList { items: Vec<(String, u64)>, resource_version: u64 },
    /// A watcher opened a Kubernetes watch from `resource_version` (an `ok` record; the
    /// session's events follow with the same process until its `api-watch-end`).
    ApiWatch { resource_version: u64 },
    /// One watch event as received: `event` is ADDED, MODIFIED, DELETED or BOOKMARK
    /// (a bookmark has no name).
    ApiWatchEvent { event: String, name: String, resource_version: u64 },
    /// The session ended (`info` for a break or an ERROR event, `ok` for a deliberate end).
    ApiWatchEnd { resource_version: u64 },

    // ---- fencing (every control-plane workload) ----
    /// After healing: the leader epoch's history as the store keeps it (every claim: the
    /// term and the revision that wrote it, oldest first) and every fenced write the
    /// servers logged as committed (its term and revision). `complete` is false when the
    /// store had compacted part of the epoch's history away.
    FenceHistory { claims: Vec<TermAt>, writes: Vec<TermAt>, complete: bool },

    /// After teardown: every API-server failover the agents' load balancers logged (`first
    /// response through the new API server … outage_ms=N`): what the nodes felt of the
    /// server faults.
    AgentFailovers { gaps: Vec<AgentGap> },

    // ---- statefulset: at most one running container per identity ----
    /// Scale StatefulSet `name` to `replicas`.
    StatefulSetScale { name: String, replicas: i32 },
    /// After healing: waiting (bounded) until every StatefulSet runs exactly its `replicas`
    /// Ready pods. `ok` with the seconds since the final heal; `state` is what was read last.
    StatefulSetConverge {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seconds: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<String>,
    },
    /// After teardown: every container run the StatefulSets' pods wrote to the ledger (each
    /// container appends a heartbeat line every 100 ms while it runs).
    ContainerRuns { runs: Vec<ContainerRun> },

    // ---- nemesis ----
    /// A fault starts (invoke) and is in place (ok / fail if it could not be applied).
    Fault { name: String, detail: String },
    /// A fault is healed (invoke) and healing is done (ok).
    Heal { name: String, detail: String },
}

impl Call {
    /// The function name as written in the history (`read`, `cas`, `watch-response`…).
    pub fn name(&self) -> &'static str {
        match self {
            Call::Read { .. } => "read",
            Call::Write { .. } => "write",
            Call::Cas { .. } => "cas",
            Call::Add { .. } => "add",
            Call::ReadAll { .. } => "read-all",
            Call::Put { .. } => "put",
            Call::Delete { .. } => "delete",
            Call::Watch { .. } => "watch",
            Call::WatchResponse { .. } => "watch-response",
            Call::WatchEnd { .. } => "watch-end",
            Call::FinalHistory { .. } => "final-history",
            Call::MemberRead { .. } => "member-read",
            Call::Boot { .. } => "boot",
            Call::CreatePod { .. } => "create-pod",
            Call::DeletePod { .. } => "delete-pod",
            Call::PodSeen { .. } => "pod-seen",
            Call::PodList { .. } => "pod-list",
            Call::FinalState { .. } => "final-state",
            Call::DeploymentWrite { .. } => "deployment-write",
            Call::Converge { .. } => "converge",
            Call::ConfigMapWrite { .. } => "config-map-write",
            Call::ConfigMapList { .. } => "config-map-list",
            Call::ApiWatch { .. } => "api-watch",
            Call::ApiWatchEvent { .. } => "api-watch-event",
            Call::ApiWatchEnd { .. } => "api-watch-end",
            Call::FenceHistory { .. } => "fence-history",
            Call::AgentFailovers { .. } => "agent-failovers",
            Call::StatefulSetScale { .. } => "statefulset-scale",
            Call::StatefulSetConverge { .. } => "statefulset-converge",
            Call::ContainerRuns { .. } => "container-runs",
            Call::Fault { .. } => "fault",
            Call::Heal { .. } => "heal",
        }
    }
}

/// One failover of an agent's API connection: to which server, and how long the agent had
/// no working server (from its first failed dial or probe to the first response).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentGap {
    pub agent: String,
    pub server: String,
    pub outage_ms: u64,
}

/// A leader term and a store revision: a claim of the leader epoch or a fenced write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TermAt {
    pub term: u64,
    pub revision: i64,
}

/// One container run as its heartbeats show it: the pod (its StatefulSet identity), the pod
/// uid, the node and the process id, and the wall-clock times (ns since the epoch) of its
/// first and last heartbeat. The container certainly ran from `first_ns` to `last_ns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRun {
    pub pod: String,
    pub uid: String,
    pub node: String,
    pub pid: u32,
    pub first_ns: u64,
    pub last_ns: u64,
    pub beats: u64,
}

/// What the harness saw of one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `spec.nodeName` (None: not bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub resource_version: u64,
    /// Summed container requests (what the scheduler must fit on the node).
    pub cpu_milli: u64,
    pub memory_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Has a deletionTimestamp (still holds its resources until it is gone).
    #[serde(default)]
    pub terminating: bool,
}

impl PodView {
    /// Succeeded and Failed pods hold no resources on their node (kube-scheduler's rule).
    pub fn is_terminal(&self) -> bool {
        matches!(self.phase.as_deref(), Some("Succeeded" | "Failed"))
    }
}

/// A node's allocatable resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    pub cpu_milli: u64,
    pub memory_bytes: u64,
    pub pods: u64,
}

/// The kind of a Deployment write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployAction {
    /// POST the Deployment.
    Create,
    /// Merge-patch with new replicas (and the same template).
    Scale,
    /// Merge-patch with a new template version (image or env) and the same replicas.
    Update,
    /// DELETE it.
    Delete,
}

/// What the convergence read saw of one Deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentView {
    pub name: String,
    pub replicas: i32,
    pub version: u32,
    /// The `write_id` annotation: which write the object's spec came from.
    pub write_id: u64,
    pub resource_version: u64,
    /// Ready, not terminating pods of the current template.
    pub ready_current: u32,
    /// Every other pod of the Deployment (old template, not ready, terminating).
    pub other_pods: u32,
}

/// Watch filters as in etcd's WatchCreateRequest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WatchFilter {
    #[default]
    None,
    NoPut,
    NoDelete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Put,
    Delete,
}

/// One watch event (values as UTF-8 strings; the workloads write text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    pub kind: EventKind,
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    /// The previous value when the watch asked for prev_kv and the key existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_value: Option<String>,
}

/// A whole history in recording order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub ops: Vec<Op>,
}

impl History {
    /// Appends a record, assigning its index.
    pub fn push(&mut self, time_ns: u64, process: i64, kind: OpType, node: &str, call: Call, error: Option<String>) {
        let index = self.ops.len() as u64;
        self.ops.push(Op { index, time_ns, process, kind, node: node.to_string(), call, error });
    }

    /// Reads `history.jsonl`. A malformed line is an error naming the line.
    pub fn load(path: &Path) -> std::io::Result<History> {
        let file = std::io::BufReader::new(std::fs::File::open(path)?);
        let mut ops = Vec::new();
        for (n, line) in file.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let op: Op = serde_json::from_str(&line).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}:{}: {e}", path.display(), n + 1))
            })?;
            ops.push(op);
        }
        Ok(History { ops })
    }

    /// Writes `history.jsonl`.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for op in &self.ops {
            serde_json::to_writer(&mut out, op)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    }

    /// Client operations only (no nemesis records).
    pub fn client_ops(&self) -> impl Iterator<Item = &Op> {
        self.ops.iter().filter(|o| o.process != NEMESIS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_jsonl() {
        let mut h = History::default();
        h.push(5, 0, OpType::Invoke, "n1", Call::Cas { key: "r0".into(), from: 1, to: 2 }, None);
        h.push(9, 0, OpType::Info, "n1", Call::Cas { key: "r0".into(), from: 1, to: 2 }, Some("timeout".into()));
        h.push(10, NEMESIS, OpType::Ok, "", Call::Fault { name: "kill".into(), detail: "n2".into() }, None);
        h.push(
            11,
            3,
            OpType::Ok,
            "n2",
            Call::WatchResponse {
                header_revision: 7,
                events: vec![WatchEvent {
                    kind: EventKind::Put,
                    key: "w/a".into(),
                    value: "x".into(),
                    create_revision: 7,
                    mod_revision: 7,
                    version: 1,
                    prev_value: None,
                }],
                progress: false,
                compact_revision: 0,
                canceled: false,
            },
            None,
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        h.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().next().unwrap().contains(r#""type":"invoke""#), "{text}");
        assert!(text.contains(r#""f":"cas""#), "{text}");
        assert_eq!(History::load(&path).unwrap(), h);
    }

    #[test]
    fn a_malformed_line_names_its_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        std::fs::write(&path, "{\"nonsense\":1}\n").unwrap();
        let err = History::load(&path).unwrap_err();
        assert!(err.to_string().contains("history.jsonl:1"), "{err}");
    }
}
