//! Network partitions as data: which node cannot talk to which. Pure functions only — the
//! nemesis picks a [`PartitionKind`], [`grudge`] turns it into a [`Grudge`], and
//! [`crate::net::Network::apply_grudge`] makes the kernel enforce it.
//!
//! The kinds follow Jepsen's `jepsen.nemesis` partitioners (`partition-random-node` aimed
//! at the leader, `partition-random-halves`, `partition-majorities-ring`, `bridge`), with
//! one difference: our grudges are always symmetric (if `a` cannot reach `b`, `b` cannot
//! reach `a`). Jepsen's 3-node majorities ring is one-directional; TCP cannot use a link
//! that works in one direction only, so a symmetric grudge says what actually happens.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::Rng;

/// Node → the nodes it cannot talk to. Every node of the cluster is a key (with an empty
/// set when it reaches everyone), and the relation is symmetric.
pub type Grudge = BTreeMap<String, BTreeSet<String>>;

/// The shapes of partition the nemesis can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionKind {
    /// The leader (or a random node when the leader is unknown) alone, the rest together.
    IsolateLeader,
    /// A random minority (⌊n/2⌋ nodes) and majority.
    RandomHalves,
    /// Every node sees a majority, and no two nodes see the same majority.
    MajoritiesRing,
    /// Two halves that cannot see each other, and one node that sees both.
    Bridge,
}

impl PartitionKind {
    /// Every kind, in the order the nemesis cycles through them.
    pub const ALL: [PartitionKind; 4] = [
        PartitionKind::IsolateLeader,
        PartitionKind::RandomHalves,
        PartitionKind::MajoritiesRing,
        PartitionKind::Bridge,
    ];

    fn name(self) -> &'static str {
        match self {
            PartitionKind::IsolateLeader => "isolate-leader",
            PartitionKind::RandomHalves => "halves",
            PartitionKind::MajoritiesRing => "ring",
            PartitionKind::Bridge => "bridge",
        }
    }
}

impl fmt::Display for PartitionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PartitionKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PartitionKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<&str> = PartitionKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown partition kind {s:?} (expected one of: {})", names.join(", "))
        })
    }
}

/// The grudge for `kind` over `nodes`. `leader` is only used by
/// [`PartitionKind::IsolateLeader`]; a leader that is unknown or not among `nodes` means a
/// random node is isolated instead. Clusters too small for a kind (fewer than 2 nodes, or
/// fewer than 3 for the ring and the bridge) get a grudge that cuts nothing.
pub fn grudge(kind: PartitionKind, nodes: &[String], leader: Option<&str>, rng: &mut impl Rng) -> Grudge {
    // Deduplicated and sorted first, so the result depends only on the set of nodes and the
    // random draws, not on the order the caller listed them in.
    let mut shuffled: Vec<String> = nodes.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    let mut grudge: Grudge = shuffled.iter().map(|n| (n.clone(), BTreeSet::new())).collect();
    if shuffled.len() < 2 {
        return grudge;
    }
    shuffled.shuffle(rng);
    match kind {
        PartitionKind::IsolateLeader => {
            let alone = match leader.filter(|l| grudge.contains_key(*l)) {
                Some(l) => l.to_string(),
                None => shuffled[rng.random_range(0..shuffled.len())].clone(),
            };
            let rest: Vec<String> = shuffled.iter().filter(|n| **n != alone).cloned().collect();
            cut_between(&mut grudge, &[alone], &rest);
        }
        PartitionKind::RandomHalves => {
            // Jepsen's `bisect`: the first ⌊n/2⌋ nodes are the minority.
            let (minority, majority) = shuffled.split_at(shuffled.len() / 2);
            cut_between(&mut grudge, minority, majority);
        }
        PartitionKind::Bridge => {
            // Jepsen's `bridge`: bisect, and the first node of the second half keeps its links
            // to everyone. With 2 nodes there is nothing left to cut.
            let (first, second) = shuffled.split_at(shuffled.len() / 2);
            cut_between(&mut grudge, first, &second[1..]);
        }
        PartitionKind::MajoritiesRing => majorities_ring(&mut grudge, &shuffled),
    }
    grudge
}

/// The grudge that cuts `node` off from each of `peers` (and nothing else): an agent from
/// every server, or from one.
pub fn isolate_from(node: &str, peers: &[String]) -> Grudge {
    let mut grudge: Grudge = peers.iter().map(|p| (p.clone(), BTreeSet::new())).collect();
    grudge.entry(node.to_string()).or_default();
    cut_between(&mut grudge, &[node.to_string()], peers);
    grudge
}

/// Cuts every link between a node of `a` and a node of `b`, both directions.
fn cut_between(grudge: &mut Grudge, a: &[String], b: &[String]) {
    for x in a {
        for y in b {
            cut(grudge, x, y);
        }
    }
}

fn cut(grudge: &mut Grudge, x: &str, y: &str) {
    if x == y {
        return;
    }
    grudge.entry(x.to_string()).or_default().insert(y.to_string());
    grudge.entry(y.to_string()).or_default().insert(x.to_string());
}

/// Places the (already shuffled) nodes on a ring; each node keeps its links to the nodes
/// within distance `r` and loses the others. A window of `2r + 1` nodes is a majority when
/// `2r + 1 >= ⌊n/2⌋ + 1`, and windows around different centres are different sets as long as
/// the window is not the whole ring. The smallest such `r` gives exact majorities for 4, 5, 8,
/// 9, … nodes; for 6 and 7 some nodes see more than a bare majority, as in Jepsen (an exact
/// symmetric solution does not exist there). Three nodes are too few for a ring: the only
/// symmetric grudge with three distinct majorities is a path `a - b - c` (the bridge shape).
fn majorities_ring(grudge: &mut Grudge, ring: &[String]) {
    let n = ring.len();
    if n < 3 {
        // Every node already sees a majority only when it sees everyone.
        return;
    }
    if n == 3 {
        cut(grudge, &ring[0], &ring[2]);
        return;
    }
    let majority = n / 2 + 1;
    let radius = (majority - 1).div_ceil(2);
    for i in 0..n {
        for j in (i + 1)..n {
            let d = j - i;
            if d.min(n - d) > radius {
                cut(grudge, &ring[i], &ring[j]);
            }
        }
    }
}

/// The nodes `node` can talk to, itself included.
pub fn visible(grudge: &Grudge, node: &str) -> BTreeSet<String> {
    let empty = BTreeSet::new();
    let cut = grudge.get(node).unwrap_or(&empty);
    grudge.keys().filter(|n| !cut.contains(*n)).cloned().collect()
}

/// A one-line description for the history. A grudge whose connectivity falls into separate
/// groups prints the groups (`"n1 | n2 n3"`); one where some node bridges groups (ring,
/// bridge) prints what each node still sees (`"n1 sees n1 n2 n5; n2 sees n1 n2 n3; …"`).
pub fn describe(grudge: &Grudge) -> String {
    let views: BTreeMap<&str, BTreeSet<String>> = grudge.keys().map(|n| (n.as_str(), visible(grudge, n))).collect();
    // Connectivity is a set of groups exactly when every node sees the same set as each node
    // it sees.
    let grouped = views.values().all(|seen| seen.iter().all(|peer| views.get(peer.as_str()) == Some(seen)));
    if grouped {
        let groups: BTreeSet<&BTreeSet<String>> = views.values().collect();
        groups.into_iter().map(join).collect::<Vec<_>>().join(" | ")
    } else {
        views.iter().map(|(node, seen)| format!("{node} sees {}", join(seen))).collect::<Vec<_>>().join("; ")
    }
}

fn join(nodes: &BTreeSet<String>) -> String {
    nodes.iter().map(String::as_str).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn assert_symmetric(g: &Grudge) {
        for (a, cut) in g {
            assert!(!cut.contains(a), "{a} cut from itself in {g:?}");
            for b in cut {
                assert!(g.get(b).is_some_and(|c| c.contains(a)), "{a} cuts {b} but not back: {g:?}");
            }
        }
    }

    /// The groups of a grouped grudge, smallest first; `None` if it is not grouped.
    fn groups(g: &Grudge) -> Option<Vec<BTreeSet<String>>> {
        let views: Vec<BTreeSet<String>> = g.keys().map(|n| visible(g, n)).collect();
        for (node, seen) in g.keys().zip(&views) {
            for peer in seen {
                if visible(g, peer) != *seen {
                    return None;
                }
            }
            assert!(seen.contains(node));
        }
        let mut gs: Vec<BTreeSet<String>> = views.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
        gs.sort_by_key(|s| s.len());
        Some(gs)
    }

    #[test]
    fn kinds_parse_and_print() {
        for kind in PartitionKind::ALL {
            assert_eq!(kind.to_string().parse::<PartitionKind>(), Ok(kind));
        }
        assert_eq!("isolate-leader".parse(), Ok(PartitionKind::IsolateLeader));
        assert_eq!("halves".parse(), Ok(PartitionKind::RandomHalves));
        assert_eq!("ring".parse(), Ok(PartitionKind::MajoritiesRing));
        assert_eq!("bridge".parse(), Ok(PartitionKind::Bridge));
        assert!("majority".parse::<PartitionKind>().unwrap_err().contains("isolate-leader, halves, ring, bridge"));
    }

    #[test]
    fn every_kind_is_symmetric_and_covers_all_nodes() {
        let mut rng = StdRng::seed_from_u64(7);
        for n in 0..=9 {
            let nodes = names(n);
            for kind in PartitionKind::ALL {
                for _ in 0..20 {
                    let g = grudge(kind, &nodes, Some("n1"), &mut rng);
                    assert_symmetric(&g);
                    assert_eq!(g.keys().cloned().collect::<Vec<_>>(), {
                        let mut sorted = nodes.clone();
                        sorted.sort();
                        sorted
                    });
                }
            }
        }
    }

    #[test]
    fn isolate_leader_cuts_the_leader_off() {
        let mut rng = StdRng::seed_from_u64(1);
        for n in [3, 5] {
            let nodes = names(n);
            let g = grudge(PartitionKind::IsolateLeader, &nodes, Some("n2"), &mut rng);
            let gs = groups(&g).expect("grouped");
            assert_eq!(gs.len(), 2);
            assert_eq!(gs[0], BTreeSet::from(["n2".to_string()]));
            assert_eq!(gs[1].len(), n - 1);
            // Unknown leader: some single node is alone.
            for leader in [None, Some("not-a-member")] {
                let gs = groups(&grudge(PartitionKind::IsolateLeader, &nodes, leader, &mut rng)).expect("grouped");
                assert_eq!(gs.iter().map(BTreeSet::len).collect::<Vec<_>>(), vec![1, n - 1]);
            }
        }
    }

    #[test]
    fn halves_are_a_minority_and_a_majority() {
        let mut rng = StdRng::seed_from_u64(2);
        for (n, sizes) in [(3, vec![1, 2]), (4, vec![2, 2]), (5, vec![2, 3])] {
            let nodes = names(n);
            let mut minorities = BTreeSet::new();
            for _ in 0..50 {
                let gs = groups(&grudge(PartitionKind::RandomHalves, &nodes, None, &mut rng)).expect("grouped");
                assert_eq!(gs.iter().map(BTreeSet::len).collect::<Vec<_>>(), sizes);
                minorities.insert(gs[0].clone());
            }
            assert!(minorities.len() > 1, "the split is random");
        }
    }

    #[test]
    fn bridge_has_one_node_connected_to_two_halves() {
        let mut rng = StdRng::seed_from_u64(3);
        for n in [3, 5] {
            let nodes = names(n);
            let g = grudge(PartitionKind::Bridge, &nodes, None, &mut rng);
            assert!(groups(&g).is_none(), "a bridge is not a set of groups: {g:?}");
            let bridges: Vec<&String> = g.iter().filter(|(_, cut)| cut.is_empty()).map(|(n, _)| n).collect();
            assert_eq!(bridges.len(), 1, "{g:?}");
            // Without the bridge the rest falls into ⌊n/2⌋ and ⌈n/2⌉ - 1 nodes that are fully
            // cut from each other.
            let rest: Vec<&String> = g.keys().filter(|k| *k != bridges[0]).collect();
            let side_a: BTreeSet<String> = visible(&g, rest[0]).into_iter().filter(|x| x != bridges[0]).collect();
            let side_b: BTreeSet<String> = rest.iter().map(|s| s.to_string()).filter(|x| !side_a.contains(x)).collect();
            let mut sizes = vec![side_a.len(), side_b.len()];
            sizes.sort();
            let mut expected = vec![n / 2, n - n / 2 - 1];
            expected.sort();
            assert_eq!(sizes, expected, "{g:?}");
            for a in &side_a {
                assert_eq!(g[a], side_b, "{g:?}");
            }
        }
    }

    #[test]
    fn ring_gives_every_node_a_distinct_majority() {
        let mut rng = StdRng::seed_from_u64(4);
        for n in 3..=9 {
            let nodes = names(n);
            for _ in 0..20 {
                let g = grudge(PartitionKind::MajoritiesRing, &nodes, None, &mut rng);
                let views: Vec<BTreeSet<String>> = g.keys().map(|k| visible(&g, k)).collect();
                for v in &views {
                    assert!(v.len() > n / 2, "{v:?} is not a majority of {n}: {g:?}");
                }
                let distinct: BTreeSet<&BTreeSet<String>> = views.iter().collect();
                assert_eq!(distinct.len(), n, "majorities repeat: {g:?}");
                if matches!(n, 4 | 5 | 8 | 9) {
                    assert!(views.iter().all(|v| v.len() == n / 2 + 1), "exact majorities for {n}: {g:?}");
                }
            }
        }
    }

    #[test]
    fn isolate_from_cuts_one_node_from_the_given_peers_only() {
        let g = isolate_from("a1", &names(2));
        assert_symmetric(&g);
        assert_eq!(describe(&g), "a1 | n1 n2");
        let g = isolate_from("a1", &["n2".to_string()]);
        assert_eq!(g["a1"], BTreeSet::from(["n2".to_string()]));
        assert!(!g.contains_key("n1"));
    }

    #[test]
    fn describe_prints_groups_or_views() {
        let nodes = names(3);
        let mut g: Grudge = nodes.iter().map(|n| (n.clone(), BTreeSet::new())).collect();
        assert_eq!(describe(&g), "n1 n2 n3");
        cut(&mut g, "n1", "n2");
        cut(&mut g, "n1", "n3");
        assert_eq!(describe(&g), "n1 | n2 n3");
        let mut path: Grudge = nodes.iter().map(|n| (n.clone(), BTreeSet::new())).collect();
        cut(&mut path, "n1", "n3");
        assert_eq!(describe(&path), "n1 sees n1 n2; n2 sees n1 n2 n3; n3 sees n2 n3");
    }
}
