//! Who am I? Resolving this member's id and the cluster id at start-up, etcd-style.
//!
//! * restart: the ids saved by an earlier run win (flags describing the initial cluster are
//!   then ignored, as in etcd);
//! * `--initial-cluster-state new`: every initial member derives the same ids from the
//!   initial cluster and the cluster token, so no coordination is needed;
//! * `--initial-cluster-state existing`: the member was added with `member add`; it asks
//!   the other listed members who has its peer URL;
//! * `--join URL`: the member adds itself as a learner through an existing member.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_proto::berthraftpb::raft_peer_client::RaftPeerClient;
use berth_proto::berthraftpb::ClusterInfoRequest;
use berth_proto::etcdserverpb::cluster_client::ClusterClient;
use berth_proto::etcdserverpb::{Member, MemberAddRequest, MemberListRequest};
use sha2::{Digest, Sha256};

use crate::config::{ClusterState, StoreConfig};
use crate::engine::KvEngine;
use crate::error::{Result, StoreError};
use crate::raft::log_store::identity;
use crate::raft::peers::peer_endpoint;
use crate::raft::PeerNode;

/// How long a starting member keeps trying to reach the cluster it joins.
const JOIN_DEADLINE: Duration = Duration::from_secs(60);

pub struct Identity {
    pub member_id: u64,
    pub cluster_id: u64,
    /// The initial membership, when this member bootstraps a new cluster.
    pub initial_members: Option<BTreeMap<u64, PeerNode>>,
}

fn hash_u64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update(b"\n");
    }
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes")).max(1)
}

/// A member id derived from its peer URLs and the cluster token.
pub fn member_id_for(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    hash_u64(&[b"berth-member", urls.join(",").as_bytes(), token.as_bytes()])
}

/// A cluster id derived from the initial member ids and the cluster token.
pub fn cluster_id_for(member_ids: &[u64], token: &str) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_be_bytes()).collect();
    hash_u64(&[b"berth-cluster", &bytes, token.as_bytes()])
}

/// The initial membership of a new cluster, keyed by derived member id.
pub fn initial_members(config: &StoreConfig) -> BTreeMap<u64, PeerNode> {
    config
        .initial_cluster
        .iter()
        .map(|(_, urls)| (member_id_for(urls, &config.initial_cluster_token), PeerNode { peer_urls: urls.clone() }))
        .collect()
}

pub async fn resolve(config: &StoreConfig, engine: &dyn KvEngine) -> Result<Identity> {
    if let Some((member_id, cluster_id)) = identity::load(engine)? {
        let initial_members = (config.join.is_none() && config.initial_cluster_state == ClusterState::New)
            .then(|| initial_members(config));
        return Ok(Identity { member_id, cluster_id, initial_members });
    }
    let resolved = if let Some(join_url) = &config.join {
        join_through(join_url, config).await?
    } else {
        match config.initial_cluster_state {
            ClusterState::New => {
                let members = initial_members(config);
                let member_id = member_id_for(&config.advertise_peer_urls, &config.initial_cluster_token);
                let ids: Vec<u64> = members.keys().copied().collect();
                let cluster_id = cluster_id_for(&ids, &config.initial_cluster_token);
                identity::save(engine, member_id, cluster_id)?;
                return Ok(Identity { member_id, cluster_id, initial_members: Some(members) });
            }
            ClusterState::Existing => find_self_among_peers(config).await?,
        }
    };
    identity::save(engine, resolved.0, resolved.1)?;
    Ok(Identity { member_id: resolved.0, cluster_id: resolved.1, initial_members: None })
}

fn has_my_urls(member: &Member, mine: &[String]) -> bool {
    member.peer_ur_ls.iter().any(|u| mine.contains(u))
}

/// `--initial-cluster-state existing`: ask the other listed members for our id.
async fn find_self_among_peers(config: &StoreConfig) -> Result<(u64, u64)> {
    let deadline = Instant::now() + JOIN_DEADLINE;
    let others: Vec<String> = config
        .initial_cluster
        .iter()
        .flat_map(|(_, urls)| urls.iter().cloned())
        .filter(|u| !config.advertise_peer_urls.contains(u))
        .collect();
    if others.is_empty() {
        return Err(StoreError::Config(
            "--initial-cluster-state existing needs --initial-cluster to list the running members".into(),
        ));
    }
    let mut last_error = String::from("no member answered");
    while Instant::now() < deadline {
        for url in &others {
            let Ok(endpoint) = peer_endpoint(url, config.tls.as_ref().map(|t| &t.dial)) else {
                continue;
            };
            let attempt = async {
                let mut client = RaftPeerClient::new(endpoint.connect().await.map_err(|e| e.to_string())?);
                client.cluster_info(ClusterInfoRequest {}).await.map_err(|e| e.message().to_string())
            };
            match tokio::time::timeout(Duration::from_secs(3), attempt).await {
                Ok(Ok(info)) => {
                    let info = info.into_inner();
                    return match info.members.iter().find(|m| has_my_urls(m, &config.advertise_peer_urls)) {
                        Some(m) => Ok((m.id, info.cluster_id)),
                        None => Err(StoreError::Config(format!(
                            "the cluster at {url} has no member with peer URL {}; add it first (etcdctl member add)",
                            config.advertise_peer_urls.join(",")
                        ))),
                    };
                }
                Ok(Err(e)) => last_error = format!("{url}: {e}"),
                Err(_) => last_error = format!("{url}: no answer"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(StoreError::Config(format!("could not reach the existing cluster: {last_error}")))
}

/// `--join URL`: add ourselves as a learner through an existing member's client URL.
async fn join_through(join_url: &str, config: &StoreConfig) -> Result<(u64, u64)> {
    let deadline = Instant::now() + JOIN_DEADLINE;
    let mut last_error = String::new();
    while Instant::now() < deadline {
        let attempt = async {
            let channel = peer_endpoint(join_url, config.tls.as_ref().map(|t| &t.dial))?
                .connect()
                .await
                .map_err(|e| StoreError::Peer { peer: join_url.to_string(), message: e.to_string() })?;
            let mut client = ClusterClient::new(channel);
            let add = client
                .member_add(MemberAddRequest { peer_ur_ls: config.advertise_peer_urls.clone(), is_learner: true })
                .await;
            match add {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    let id = resp.member.map(|m| m.id).unwrap_or(0);
                    let cluster = resp.header.map(|h| h.cluster_id).unwrap_or(0);
                    Ok((id, cluster))
                }
                Err(status) if StoreError::from(status.clone()) == StoreError::PeerUrlExists => {
                    // An earlier attempt added us already: find our id.
                    let list = client
                        .member_list(MemberListRequest { linearizable: true })
                        .await
                        .map_err(StoreError::from)?
                        .into_inner();
                    let me = list
                        .members
                        .iter()
                        .find(|m| has_my_urls(m, &config.advertise_peer_urls))
                        .ok_or(StoreError::PeerUrlExists)?;
                    Ok((me.id, list.header.map(|h| h.cluster_id).unwrap_or(0)))
                }
                Err(status) => Err(StoreError::from(status)),
            }
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok(ids)) => {
                tracing::info!(member = format!("{:x}", ids.0), via = join_url, "added to the cluster as a learner");
                return Ok(ids);
            }
            Ok(Err(e)) if e.is_deterministic() && !matches!(e, StoreError::Peer { .. } | StoreError::Remote { .. }) => {
                return Err(StoreError::Config(format!("joining through {join_url}: {e}")));
            }
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = "no answer".into(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(StoreError::Config(format!("could not join through {join_url}: {last_error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_order_free() {
        let a = member_id_for(&["http://b:1".into(), "http://a:1".into()], "t");
        let b = member_id_for(&["http://a:1".into(), "http://b:1".into()], "t");
        assert_eq!(a, b);
        assert_ne!(a, member_id_for(&["http://a:1".into()], "t"));
        assert_ne!(a, member_id_for(&["http://a:1".into(), "http://b:1".into()], "other-token"));
        assert_eq!(cluster_id_for(&[3, 1, 2], "t"), cluster_id_for(&[1, 2, 3], "t"));
    }
}
