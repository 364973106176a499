//! The Lease API of the in-process store. Grants and revokes are replicated; keep-alives and
//! time-to-live are answered by the leader, whose lessor holds the deadlines.

use berth_proto::berthraftpb::apply_result::Result as ApplyKind;
use berth_proto::berthraftpb::internal_request::Request;
use berth_proto::berthraftpb::InternalRequest;
use berth_proto::etcdserverpb::*;

use super::propose::Attempt;
use super::StoreNode;
use crate::error::{Result, StoreError};
use crate::mvcc::write::attached_keys;

impl StoreNode {
    /// etcd `LeaseGrant`: TTL raised to the minimum; id chosen when 0.
    pub async fn lease_grant(&self, req: LeaseGrantRequest) -> Result<LeaseGrantResponse> {
        let ttl = self.shared.lessor.granted_ttl(req.ttl)?;
        let id = if req.id != 0 {
            req.id
        } else {
            loop {
                let candidate = (rand::random::<u64>() >> 1) as i64;
                if candidate != 0 && !self.shared.lessor.contains(candidate) {
                    break candidate;
                }
            }
        };
        let grant = LeaseGrantRequest { ttl, id };
        match self.propose(InternalRequest { request: Some(Request::LeaseGrant(grant)) }).await? {
            ApplyKind::LeaseGrant(mut r) => {
                r.header = self.header(self.revision());
                Ok(r)
            }
            other => Err(StoreError::Raft(format!("unexpected apply result {other:?}"))),
        }
    }

    /// etcd `LeaseRevoke`: deletes the lease and its keys.
    pub async fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse> {
        match self.propose(InternalRequest { request: Some(Request::LeaseRevoke(LeaseRevokeRequest { id })) }).await? {
            ApplyKind::LeaseRevoke(mut r) => {
                r.header = self.header(r.header.map_or(0, |h| h.revision));
                Ok(r)
            }
            other => Err(StoreError::Raft(format!("unexpected apply result {other:?}"))),
        }
    }

    /// etcd keep-alive: the new TTL, or 0 when the lease does not exist (as etcd answers).
    pub async fn lease_keep_alive(&self, id: i64) -> Result<LeaseKeepAliveResponse> {
        let ttl = self
            .on_leader(
                |_| async move { Attempt::Done(self.lease_keep_alive_here(id)) },
                |mut client| async move {
                    client.lease_keep_alive(LeaseKeepAliveRequest { id }).await.map(|r| r.into_inner().ttl)
                },
            )
            .await?;
        Ok(LeaseKeepAliveResponse { header: self.header(self.revision()), id, ttl })
    }

    /// Keep-alive on the leader.
    pub fn lease_keep_alive_here(&self, id: i64) -> i64 {
        self.shared.lessor.renew(id).unwrap_or(0)
    }

    /// etcd `LeaseTimeToLive`: TTL -1 for a lease that does not exist.
    pub async fn lease_time_to_live(&self, req: LeaseTimeToLiveRequest) -> Result<LeaseTimeToLiveResponse> {
        let mut resp = self
            .on_leader(
                |_| async move {
                    match self.lease_time_to_live_here(&req) {
                        Ok(r) => Attempt::Done(r),
                        Err(e) => Attempt::Failed(e),
                    }
                },
                |mut client| async move { client.lease_time_to_live(req).await.map(|r| r.into_inner()) },
            )
            .await?;
        resp.header = self.header(self.revision());
        Ok(resp)
    }

    /// Time-to-live on the leader.
    pub fn lease_time_to_live_here(&self, req: &LeaseTimeToLiveRequest) -> Result<LeaseTimeToLiveResponse> {
        let Some((remaining, granted)) = self.shared.lessor.remaining(req.id) else {
            return Ok(LeaseTimeToLiveResponse {
                header: self.header(self.revision()),
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: vec![],
            });
        };
        let keys = if req.keys { attached_keys(&*self.shared.engine.view(), req.id)? } else { vec![] };
        Ok(LeaseTimeToLiveResponse {
            header: self.header(self.revision()),
            id: req.id,
            ttl: remaining,
            granted_ttl: granted,
            keys,
        })
    }

    /// etcd `LeaseLeases`: the leases this member knows (replicated state).
    pub fn lease_leases(&self) -> LeaseLeasesResponse {
        LeaseLeasesResponse {
            header: self.header(self.revision()),
            leases: self.shared.lessor.ids().into_iter().map(|id| LeaseStatus { id }).collect(),
        }
    }
}
