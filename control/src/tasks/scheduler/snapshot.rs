//! The scheduler's view of the cluster: every node with what is already placed on it
//! (bound pods seen through the watch *and* pods this scheduler assumed but whose bind
//! has not been observed yet), and the pending pods nominated to it (a preemption made
//! room for them). Maintained incrementally — one pod or node at a time — so a scheduling
//! decision never re-reads the cluster.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{Node, Pod};

use super::facts::{HostPort, NodeFacts, PodFacts, Resources};

/// What the fit filters count as taken on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub requested: Resources,
    pub pod_count: i64,
    /// Host ports in use, with how many pods use each.
    pub ports: Vec<(HostPort, u32)>,
}

impl Usage {
    pub fn add(&mut self, requests: Resources, ports: &[HostPort]) {
        self.requested = self.requested.plus(requests);
        self.pod_count += 1;
        for p in ports {
            match self.ports.iter_mut().find(|(q, _)| q == p) {
                Some((_, n)) => *n += 1,
                None => self.ports.push((p.clone(), 1)),
            }
        }
    }

    /// The inverse of [`add`](Self::add) (of something added before).
    pub fn remove(&mut self, requests: Resources, ports: &[HostPort]) {
        self.requested = self.requested.minus(requests);
        self.pod_count -= 1;
        for hp in ports {
            if let Some(pos) = self.ports.iter().position(|(q, _)| q == hp) {
                self.ports[pos].1 -= 1;
                if self.ports[pos].1 == 0 {
                    self.ports.swap_remove(pos);
                }
            }
        }
    }
}

/// A pending pod nominated to a node: what it will take there once it binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nominee {
    pub key: String,
    pub uid: Option<String>,
    pub priority: i32,
    pub requests: Resources,
    pub ports: Vec<HostPort>,
}

/// One node slot. Slots are never removed: a deleted node whose pods are still known
/// keeps its accounting (if the node comes back, its pods are still counted).
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    /// `None` while there is no Node object (deleted, or pods seen before their node).
    pub facts: Option<NodeFacts>,
    pub usage: Usage,
    pub nonzero_requested: Resources,
    /// Pods per owner id (see [`NodesSnapshot::owner_id`]).
    pub owners: HashMap<u32, u32>,
    /// Keys of the pods counted here: preemption looks for victims among them.
    pub pods: HashSet<String>,
    /// Pending pods nominated to this node (usually none).
    pub nominated: Vec<Nominee>,
}

impl NodeInfo {
    fn new(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            facts: None,
            usage: Usage::default(),
            nonzero_requested: Resources::default(),
            owners: HashMap::new(),
            pods: HashSet::new(),
            nominated: Vec::new(),
        }
    }

    pub fn owner_count(&self, owner: Option<u32>) -> u32 {
        owner.and_then(|o| self.owners.get(&o).copied()).unwrap_or(0)
    }

    /// What `pod` must fit next to: the node's usage plus the pods nominated here with at
    /// least its priority (kube-scheduler's `addGENominatedPods`), so a lower-priority pod
    /// cannot take the room a preemption freed for a higher-priority one.
    pub fn usage_for(&self, pod: &PodFacts) -> Cow<'_, Usage> {
        let mut ahead = self.nominated.iter().filter(|n| n.priority >= pod.priority && n.key != pod.key).peekable();
        if ahead.peek().is_none() {
            return Cow::Borrowed(&self.usage);
        }
        let mut usage = self.usage.clone();
        for n in ahead {
            usage.add(n.requests, &n.ports);
        }
        Cow::Owned(usage)
    }
}

/// A counted pod: what it contributes to its node (kept to subtract it exactly later,
/// and to weigh it as a preemption victim).
#[derive(Debug, Clone)]
struct Placed {
    node: usize,
    owner: Option<u32>,
    facts: PodFacts,
}

#[derive(Debug, Clone, Default)]
pub struct NodesSnapshot {
    nodes: Vec<NodeInfo>,
    by_name: HashMap<String, usize>,
    placed: HashMap<String, Placed>,
    /// Owner uids interned to small integers: the spread score looks them up per node.
    owner_ids: HashMap<String, u32>,
    /// Nominated pending pods: key → slot.
    nominations: HashMap<String, usize>,
    live: usize,
}

impl NodesSnapshot {
    pub fn new() -> NodesSnapshot {
        NodesSnapshot::default()
    }

    /// Every slot, including ones without a Node object (skip those).
    pub fn slots(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// Nodes that exist.
    pub fn num_nodes(&self) -> usize {
        self.live
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.by_name.get(name).map(|i| &self.nodes[*i])
    }

    /// The slot index of a node name.
    pub fn slot_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The facts of the pods counted in slot `slot`.
    pub fn pods_on(&self, slot: usize) -> impl Iterator<Item = &PodFacts> {
        self.nodes
            .get(slot)
            .into_iter()
            .flat_map(|n| n.pods.iter())
            .filter_map(|k| self.placed.get(k))
            .map(|p| &p.facts)
    }

    pub fn owner_id(&self, owner_uid: &str) -> Option<u32> {
        self.owner_ids.get(owner_uid).copied()
    }

    /// Where `key` is counted, and the uid it was counted with.
    pub fn placement(&self, key: &str) -> Option<(&str, Option<&str>)> {
        self.placed.get(key).map(|p| (self.nodes[p.node].name.as_str(), p.facts.uid.as_deref()))
    }

    pub fn num_placed(&self) -> usize {
        self.placed.len()
    }

    fn slot(&mut self, name: &str) -> usize {
        if let Some(i) = self.by_name.get(name) {
            return *i;
        }
        self.nodes.push(NodeInfo::new(name));
        self.by_name.insert(name.into(), self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    /// Adds or updates a node; true when something a filter or score reads changed (so
    /// pods that did not fit before deserve another try). Heartbeat-only updates are false.
    pub fn upsert_node(&mut self, node: &Node) -> bool {
        let facts = NodeFacts::of(node);
        let i = self.slot(&facts.name);
        let slot = &mut self.nodes[i];
        if slot.facts.as_ref() == Some(&facts) {
            return false;
        }
        if slot.facts.is_none() {
            self.live += 1;
        }
        slot.facts = Some(facts);
        true
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(i) = self.by_name.get(name) {
            if self.nodes[*i].facts.take().is_some() {
                self.live -= 1;
            }
        }
    }

    /// Counts `pod` on `node`, replacing wherever it was counted before.
    pub fn place(&mut self, pod: &PodFacts, node: &str) {
        self.forget(&pod.key);
        let i = self.slot(node);
        let owner = pod.owner.as_ref().map(|uid| {
            let next = self.owner_ids.len() as u32;
            *self.owner_ids.entry(uid.clone()).or_insert(next)
        });
        let slot = &mut self.nodes[i];
        slot.usage.add(pod.requests, &pod.host_ports);
        slot.nonzero_requested = slot.nonzero_requested.plus(pod.nonzero);
        if let Some(o) = owner {
            *slot.owners.entry(o).or_default() += 1;
        }
        slot.pods.insert(pod.key.clone());
        self.placed.insert(pod.key.clone(), Placed { node: i, owner, facts: pod.clone() });
    }

    /// Counts `pod` on `node` before the API confirms it, so the next decisions in the
    /// same batch see the node's capacity already taken.
    pub fn assume(&mut self, pod: &Pod, node: &str) {
        self.place(&PodFacts::of(pod), node);
    }

    /// Stops counting `key`; returns the node it was on.
    pub fn forget(&mut self, key: &str) -> Option<String> {
        let p = self.placed.remove(key)?;
        let slot = &mut self.nodes[p.node];
        slot.usage.remove(p.facts.requests, &p.facts.host_ports);
        slot.nonzero_requested = slot.nonzero_requested.minus(p.facts.nonzero);
        slot.pods.remove(key);
        if let Some(o) = p.owner {
            if let Some(n) = slot.owners.get_mut(&o) {
                *n -= 1;
                if *n == 0 {
                    slot.owners.remove(&o);
                }
            }
        }
        Some(slot.name.clone())
    }

    /// Reserves room on `node` for the pending `pod` (a preemption's preemptor), replacing
    /// an earlier nomination of it.
    pub fn nominate(&mut self, pod: &PodFacts, node: &str) {
        self.unnominate(&pod.key);
        let i = self.slot(node);
        self.nodes[i].nominated.push(Nominee {
            key: pod.key.clone(),
            uid: pod.uid.clone(),
            priority: pod.priority,
            requests: pod.requests,
            ports: pod.host_ports.clone(),
        });
        self.nominations.insert(pod.key.clone(), i);
    }

    /// Drops the nomination of `key`; returns the node it was nominated to.
    pub fn unnominate(&mut self, key: &str) -> Option<String> {
        let i = self.nominations.remove(key)?;
        let slot = &mut self.nodes[i];
        slot.nominated.retain(|n| n.key != key);
        Some(slot.name.clone())
    }

    /// The node `key` is nominated to.
    pub fn nomination(&self, key: &str) -> Option<&str> {
        self.nominations.get(key).map(|i| self.nodes[*i].name.as_str())
    }

    /// Keys of every pod counted (re-list reconciliation).
    pub fn placed_keys(&self) -> impl Iterator<Item = &String> {
        self.placed.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn place_and_forget_are_inverse_and_replace_moves() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "d", "uid": "u",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "o", "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "1"}},
                "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}))
        .unwrap();
        let mut s = NodesSnapshot::new();
        s.assume(&pod, "a");
        let a = s.node("a").unwrap();
        assert_eq!((a.usage.requested.milli_cpu, a.usage.pod_count, a.usage.ports.len()), (1000, 1, 1));
        assert_eq!(a.owner_count(s.owner_id("o")), 1);
        s.assume(&pod, "b");
        let a = s.node("a").unwrap();
        assert_eq!((a.usage.requested.milli_cpu, a.usage.pod_count, a.usage.ports.len(), a.owners.len()), (0, 0, 0, 0));
        assert!(a.pods.is_empty());
        assert_eq!(s.pods_on(s.slot_of("b").unwrap()).map(|p| p.key.as_str()).collect::<Vec<_>>(), ["d/p"]);
        assert_eq!(s.placement("d/p"), Some(("b", Some("u"))));
        assert_eq!(s.forget("d/p").as_deref(), Some("b"));
        assert_eq!(s.node("b").unwrap().usage.pod_count, 0);
        assert_eq!(s.num_placed(), 0);
    }

    #[test]
    fn nominated_pods_count_only_for_pods_of_at_most_their_priority() {
        let facts = |name: &str, priority: i32| {
            let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d"},
                "spec": {"priority": priority, "containers": [{"name": "c", "image": "i",
                    "resources": {"requests": {"cpu": "1"}}}]}}))
            .unwrap();
            PodFacts::of(&pod)
        };
        let mut s = NodesSnapshot::new();
        s.nominate(&facts("high", 100), "a");
        let a = s.node("a").unwrap();
        assert_eq!(a.usage_for(&facts("low", 1)).requested.milli_cpu, 1000);
        assert_eq!(a.usage_for(&facts("peer", 100)).requested.milli_cpu, 1000, "equal priority counts too");
        assert_eq!(a.usage_for(&facts("higher", 101)).requested.milli_cpu, 0);
        assert_eq!(a.usage_for(&facts("high", 100)).requested.milli_cpu, 0, "not against itself");
        s.nominate(&facts("high", 100), "b");
        assert_eq!((s.node("a").unwrap().nominated.len(), s.nomination("d/high")), (0, Some("b")));
        assert_eq!(s.unnominate("d/high").as_deref(), Some("b"));
        assert!(s.node("b").unwrap().nominated.is_empty());
    }
}
