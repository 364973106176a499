//! The scheduler's view of the cluster: every node with what is already placed on it
//! (bound pods seen through the watch *and* pods this scheduler assumed but whose bind
//! has not been observed yet). Maintained incrementally — one pod or node at a time —
//! so a scheduling decision never re-reads the cluster.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Node, Pod};

use super::facts::{HostPort, NodeFacts, PodFacts, Resources};

/// One node slot. Slots are never removed: a deleted node whose pods are still known
/// keeps its accounting (if the node comes back, its pods are still counted).
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    /// `None` while there is no Node object (deleted, or pods seen before their node).
    pub facts: Option<NodeFacts>,
    pub requested: Resources,
    pub nonzero_requested: Resources,
    pub pod_count: i64,
    /// Host ports in use, with how many pods use each.
    pub ports: Vec<(HostPort, u32)>,
    /// Pods per owner id (see [`NodesSnapshot::owner_id`]).
    pub owners: HashMap<u32, u32>,
}

impl NodeInfo {
    fn new(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            facts: None,
            requested: Resources::default(),
            nonzero_requested: Resources::default(),
            pod_count: 0,
            ports: Vec::new(),
            owners: HashMap::new(),
        }
    }

    pub fn owner_count(&self, owner: Option<u32>) -> u32 {
        owner.and_then(|o| self.owners.get(&o).copied()).unwrap_or(0)
    }
}

/// What a placed pod contributes to its node (kept to subtract it exactly later).
#[derive(Debug, Clone)]
struct Placed {
    node: usize,
    uid: Option<String>,
    requests: Resources,
    nonzero: Resources,
    ports: Vec<HostPort>,
    owner: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct NodesSnapshot {
    nodes: Vec<NodeInfo>,
    by_name: HashMap<String, usize>,
    placed: HashMap<String, Placed>,
    /// Owner uids interned to small integers: the spread score looks them up per node.
    owner_ids: HashMap<String, u32>,
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

    pub fn owner_id(&self, owner_uid: &str) -> Option<u32> {
        self.owner_ids.get(owner_uid).copied()
    }

    /// Where `key` is counted, and the uid it was counted with.
    pub fn placement(&self, key: &str) -> Option<(&str, Option<&str>)> {
        self.placed.get(key).map(|p| (self.nodes[p.node].name.as_str(), p.uid.as_deref()))
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
        slot.requested = slot.requested.plus(pod.requests);
        slot.nonzero_requested = slot.nonzero_requested.plus(pod.nonzero);
        slot.pod_count += 1;
        for p in &pod.host_ports {
            match slot.ports.iter_mut().find(|(q, _)| q == p) {
                Some((_, n)) => *n += 1,
                None => slot.ports.push((p.clone(), 1)),
            }
        }
        if let Some(o) = owner {
            *slot.owners.entry(o).or_default() += 1;
        }
        self.placed.insert(
            pod.key.clone(),
            Placed {
                node: i,
                uid: pod.uid.clone(),
                requests: pod.requests,
                nonzero: pod.nonzero,
                ports: pod.host_ports.clone(),
                owner,
            },
        );
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
        slot.requested = slot.requested.minus(p.requests);
        slot.nonzero_requested = slot.nonzero_requested.minus(p.nonzero);
        slot.pod_count -= 1;
        for hp in &p.ports {
            if let Some(pos) = slot.ports.iter().position(|(q, _)| q == hp) {
                slot.ports[pos].1 -= 1;
                if slot.ports[pos].1 == 0 {
                    slot.ports.swap_remove(pos);
                }
            }
        }
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
        assert_eq!((a.requested.milli_cpu, a.pod_count, a.ports.len()), (1000, 1, 1));
        assert_eq!(a.owner_count(s.owner_id("o")), 1);
        s.assume(&pod, "b");
        let a = s.node("a").unwrap();
        assert_eq!((a.requested.milli_cpu, a.pod_count, a.ports.len(), a.owners.len()), (0, 0, 0, 0));
        assert_eq!(s.placement("d/p"), Some(("b", Some("u"))));
        assert_eq!(s.forget("d/p").as_deref(), Some("b"));
        assert_eq!(s.node("b").unwrap().pod_count, 0);
        assert_eq!(s.num_placed(), 0);
    }
}
