//! The Cluster API: membership lives in openraft's membership config (who votes, peer
//! URLs); names and client URLs are replicated state-machine records. Changes run on the
//! leader; followers forward them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use berth_proto::berthraftpb::internal_request::Request;
use berth_proto::berthraftpb::{ClusterInfoResponse, ForgetMember, InternalRequest, MemberAttributes};
use berth_proto::etcdserverpb::*;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;
use prost::Message;

use super::propose::Attempt;
use super::StoreNode;
use crate::config::validate_url;
use crate::engine::{scan, Cf};
use crate::error::{Result, StoreError};
use crate::mvcc::meta;
use crate::raft::PeerNode;

/// A learner may be promoted once it has matched this share of the leader's log (etcd).
const LEARNER_READY_RATIO: f64 = 0.9;

impl StoreNode {
    fn member_attributes(&self) -> Result<BTreeMap<u64, MemberAttributes>> {
        let view = self.shared.engine.view();
        let end = berth_proto::keys::prefix_end(meta::MEMBER_PREFIX);
        let mut out = BTreeMap::new();
        scan(&*view, Cf::Meta, meta::MEMBER_PREFIX, Some(&end), |k, v| {
            let id = meta::id_after(meta::MEMBER_PREFIX, k)?;
            let attrs = MemberAttributes::decode(v).map_err(|e| StoreError::corrupt("member record", e))?;
            out.insert(id, attrs);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The members as etcd lists them (unstarted members have no name yet).
    pub fn members(&self) -> Result<Vec<Member>> {
        let attributes = self.member_attributes()?;
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        Ok(membership
            .nodes()
            .map(|(id, node)| {
                let attrs = attributes.get(id);
                Member {
                    id: *id,
                    name: attrs.map(|a| a.name.clone()).unwrap_or_default(),
                    peer_ur_ls: node.peer_urls.clone(),
                    client_ur_ls: attrs.map(|a| a.client_urls.clone()).unwrap_or_default(),
                    is_learner: !voters.contains(id),
                }
            })
            .collect())
    }

    pub async fn member_list(&self, linearizable: bool) -> Result<MemberListResponse> {
        if linearizable {
            self.barrier().await?;
        }
        Ok(MemberListResponse { header: self.header(self.revision()), members: self.members()? })
    }

    /// Facts a starting member needs to find itself.
    pub fn cluster_info(&self) -> Result<ClusterInfoResponse> {
        Ok(ClusterInfoResponse {
            cluster_id: self.cluster_id,
            leader_id: self.leader().unwrap_or(0),
            members: self.members()?,
        })
    }

    /// Runs a membership change on this (leader) member, retrying while another change is
    /// still in flight.
    async fn change_membership(&self, change: ChangeMembers<u64, PeerNode>) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.config.request_timeout;
        loop {
            let result = tokio::time::timeout_at(deadline, self.raft.change_membership(change.clone(), false)).await;
            match result {
                Err(_) => return Err(StoreError::Timeout),
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                )))) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                    return Err(StoreError::NotLeader)
                }
                Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                    return Err(StoreError::InvalidArgument(e.to_string()))
                }
                Ok(Err(RaftError::Fatal(_))) => return Err(StoreError::Stopped),
            }
        }
    }

    fn leader_only(&self) -> Result<()> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(StoreError::NotLeader)
        }
    }

    /// Validates peer URLs for a member: well-formed, at least one, and not used by any other
    /// member (`owner` may keep its own).
    fn free_peer_urls(&self, urls: &[String], owner: Option<u64>) -> Result<Vec<String>> {
        if urls.is_empty() {
            return Err(StoreError::MemberBadUrls);
        }
        let urls: Vec<String> = urls
            .iter()
            .map(|u| validate_url("peer URL", u).map_err(|_| StoreError::MemberBadUrls))
            .collect::<Result<_>>()?;
        let taken =
            self.members()?.iter().any(|m| Some(m.id) != owner && m.peer_ur_ls.iter().any(|u| urls.contains(u)));
        if taken {
            return Err(StoreError::PeerUrlExists);
        }
        Ok(urls)
    }

    fn find_member(&self, id: u64) -> Result<Member> {
        self.members()?.into_iter().find(|m| m.id == id).ok_or(StoreError::MemberNotFound)
    }

    /// etcd `MemberAdd`, on the leader.
    pub async fn member_add_here(&self, req: MemberAddRequest) -> Result<MemberAddResponse> {
        self.leader_only()?;
        let urls = self.free_peer_urls(&req.peer_ur_ls, None)?;
        let existing = self.members()?;
        let id = loop {
            let candidate = rand::random::<u64>();
            if candidate != 0 && !existing.iter().any(|m| m.id == candidate) {
                break candidate;
            }
        };
        let node = PeerNode { peer_urls: urls.clone() };
        self.change_membership(ChangeMembers::AddNodes(BTreeMap::from([(id, node)]))).await?;
        if !req.is_learner {
            self.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id]))).await?;
        }
        tracing::info!(member = format!("{id:x}"), learner = req.is_learner, urls = ?urls, "member added");
        let member =
            Member { id, name: String::new(), peer_ur_ls: urls, client_ur_ls: vec![], is_learner: req.is_learner };
        Ok(MemberAddResponse { header: self.header(self.revision()), member: Some(member), members: self.members()? })
    }

    pub async fn member_add(&self, req: MemberAddRequest) -> Result<MemberAddResponse> {
        self.on_leader(
            |_| {
                let req = req.clone();
                async move { finish(self.member_add_here(req).await) }
            },
            |mut c| {
                let req = req.clone();
                async move { c.member_add(req).await.map(|r| r.into_inner()) }
            },
        )
        .await
    }

    /// etcd `MemberRemove`, on the leader.
    pub async fn member_remove_here(&self, id: u64) -> Result<MemberRemoveResponse> {
        self.leader_only()?;
        let member = self.find_member(id)?;
        let change = if member.is_learner {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        };
        self.change_membership(change).await?;
        // The member's published attributes go too (best effort: the change is done).
        if let Err(e) =
            self.propose(InternalRequest { request: Some(Request::ForgetMember(ForgetMember { id })) }).await
        {
            tracing::warn!(error = %e, "forgetting a removed member's attributes");
        }
        tracing::info!(member = format!("{id:x}"), "member removed");
        Ok(MemberRemoveResponse { header: self.header(self.revision()), members: self.members()? })
    }

    pub async fn member_remove(&self, id: u64) -> Result<MemberRemoveResponse> {
        self.on_leader(
            |_| async move { finish(self.member_remove_here(id).await) },
            |mut c| async move { c.member_remove(MemberRemoveRequest { id }).await.map(|r| r.into_inner()) },
        )
        .await
    }

    /// etcd `MemberUpdate` (peer URLs), on the leader.
    pub async fn member_update_here(&self, req: MemberUpdateRequest) -> Result<MemberUpdateResponse> {
        self.leader_only()?;
        self.find_member(req.id)?;
        let urls = self.free_peer_urls(&req.peer_ur_ls, Some(req.id))?;
        self.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(req.id, PeerNode { peer_urls: urls })])))
            .await?;
        Ok(MemberUpdateResponse { header: self.header(self.revision()), members: self.members()? })
    }

    pub async fn member_update(&self, req: MemberUpdateRequest) -> Result<MemberUpdateResponse> {
        self.on_leader(
            |_| {
                let req = req.clone();
                async move { finish(self.member_update_here(req).await) }
            },
            |mut c| {
                let req = req.clone();
                async move { c.member_update(req).await.map(|r| r.into_inner()) }
            },
        )
        .await
    }

    /// etcd `MemberPromote`, on the leader: only a learner that has caught up.
    pub async fn member_promote_here(&self, id: u64) -> Result<MemberPromoteResponse> {
        self.leader_only()?;
        let member = self.find_member(id)?;
        if !member.is_learner {
            return Err(StoreError::MemberNotLearner);
        }
        let (leader_last, matched) = {
            let m = self.raft.metrics().borrow().clone();
            let matched = m.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map_or(0, |l| l.index);
            (m.last_log_index.unwrap_or(0), matched)
        };
        if (matched as f64) < (leader_last as f64) * LEARNER_READY_RATIO {
            return Err(StoreError::LearnerNotReady);
        }
        self.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id]))).await?;
        tracing::info!(member = format!("{id:x}"), "learner promoted");
        Ok(MemberPromoteResponse { header: self.header(self.revision()), members: self.members()? })
    }

    pub async fn member_promote(&self, id: u64) -> Result<MemberPromoteResponse> {
        self.on_leader(
            |_| async move { finish(self.member_promote_here(id).await) },
            |mut c| async move { c.member_promote(MemberPromoteRequest { id }).await.map(|r| r.into_inner()) },
        )
        .await
    }
}

/// A leader-side result as an attempt: "not leader" (leadership moved) is retried.
fn finish<T>(result: Result<T>) -> Attempt<T> {
    match result {
        Ok(v) => Attempt::Done(v),
        Err(StoreError::NotLeader) => Attempt::Retry(StoreError::NotLeader),
        Err(e) => Attempt::Failed(e),
    }
}
