//! A small etcd-API client for workloads and the nemesis, with a deadline on every call.
//! It speaks the same gRPC API to Berth and to etcd, so both databases see identical
//! requests. Errors are classified once here (`definite`: the operation certainly did not
//! take effect; otherwise indeterminate) so that workloads record `fail` vs `info`
//! consistently.

use std::time::Duration;

use berth_proto::etcdserverpb::cluster_client::ClusterClient;
use berth_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use berth_proto::etcdserverpb::kv_client::KvClient;
use berth_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use berth_proto::etcdserverpb::request_op::Request;
use berth_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, Member, MemberAddRequest, MemberListRequest, MemberRemoveRequest, PutRequest,
    RangeRequest, RequestOp, StatusRequest, TxnRequest,
};
use berth_proto::keys::prefix_end;
use berth_proto::mvccpb::KeyValue;
use tonic::transport::Channel;

/// Why a call failed, and whether it certainly had no effect.
#[derive(Debug, Clone)]
pub struct CallError {
    pub message: String,
    /// True when the request certainly was not applied (rejected before execution).
    pub definite: bool,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Classifies a gRPC status: only codes that mean "rejected before it ran" are definite.
/// Unavailable is *not* definite: the connection may have broken after the server applied it.
fn classify(status: tonic::Status) -> CallError {
    use tonic::Code;
    // A refused TCP connect means the request never left this process.
    let refused = status.code() == Code::Unavailable && {
        let text = format!("{status:?}");
        text.contains("tcp connect error") || text.contains("Connection refused")
    };
    let definite = refused
        || matches!(
            status.code(),
            Code::InvalidArgument
                | Code::FailedPrecondition
                | Code::OutOfRange
                | Code::PermissionDenied
                | Code::Unauthenticated
        );
    CallError { message: format!("{:?}: {}", status.code(), status.message()), definite }
}

fn timeout_error(after: Duration) -> CallError {
    CallError { message: format!("timed out after {} ms", after.as_millis()), definite: false }
}

/// A client bound to one node.
#[derive(Clone)]
pub struct Client {
    pub node: String,
    channel: Channel,
    timeout: Duration,
}

impl Client {
    /// A lazily connecting client: connection failures surface as call errors, so a dead node
    /// never blocks construction.
    pub fn new(node: &str, url: &str, timeout: Duration) -> Result<Client, CallError> {
        let channel = crate::pki::etcd_endpoint(url)
            .map_err(|message| CallError { message, definite: true })?
            .connect_timeout(Duration::from_millis(500).min(timeout))
            .timeout(timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Client { node: node.into(), channel, timeout })
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    async fn deadline<T>(
        &self,
        fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, CallError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(classify(status)),
            Err(_) => Err(timeout_error(self.timeout)),
        }
    }

    /// Reads one key (linearizable unless `serializable`).
    pub async fn get(&self, key: &str, serializable: bool) -> Result<Option<KeyValue>, CallError> {
        let mut kv = KvClient::new(self.channel.clone());
        let req = RangeRequest { key: key.as_bytes().to_vec(), serializable, ..Default::default() };
        let resp = self.deadline(kv.range(req)).await?;
        Ok(resp.kvs.into_iter().next())
    }

    /// Every key under `prefix` at `revision` (0 = latest), and the header revision.
    pub async fn get_prefix(
        &self,
        prefix: &str,
        revision: i64,
        serializable: bool,
    ) -> Result<(Vec<KeyValue>, i64), CallError> {
        let mut kv = KvClient::new(self.channel.clone());
        let req = RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix.as_bytes()),
            revision,
            serializable,
            ..Default::default()
        };
        let resp = self.deadline(kv.range(req)).await?;
        Ok((resp.kvs, resp.header.map(|h| h.revision).unwrap_or(0)))
    }

    /// Put; returns the revision of the write.
    pub async fn put(&self, key: &str, value: &str) -> Result<i64, CallError> {
        let mut kv = KvClient::new(self.channel.clone());
        let req = PutRequest { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec(), ..Default::default() };
        let resp = self.deadline(kv.put(req)).await?;
        Ok(resp.header.map(|h| h.revision).unwrap_or(0))
    }

    /// Deletes one key; returns (revision, keys deleted).
    pub async fn delete(&self, key: &str) -> Result<(i64, i64), CallError> {
        let mut kv = KvClient::new(self.channel.clone());
        let req = DeleteRangeRequest { key: key.as_bytes().to_vec(), ..Default::default() };
        let resp = self.deadline(kv.delete_range(req)).await?;
        Ok((resp.header.map(|h| h.revision).unwrap_or(0), resp.deleted))
    }

    /// Compare-and-set in one txn: if `key`'s value is `from`, put `to`. Returns whether the
    /// compare held (false = nothing was written).
    pub async fn cas(&self, key: &str, from: &str, to: &str) -> Result<bool, CallError> {
        let mut kv = KvClient::new(self.channel.clone());
        let req = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Value as i32,
                key: key.as_bytes().to_vec(),
                target_union: Some(TargetUnion::Value(from.as_bytes().to_vec())),
                range_end: vec![],
            }],
            success: vec![RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: key.as_bytes().to_vec(),
                    value: to.as_bytes().to_vec(),
                    ..Default::default()
                })),
            }],
            failure: vec![],
        };
        Ok(self.deadline(kv.txn(req)).await?.succeeded)
    }

    /// (this member's id, the leader's id as this member sees it; 0 = none).
    pub async fn status(&self) -> Result<(u64, u64), CallError> {
        let mut m = MaintenanceClient::new(self.channel.clone());
        let resp = self.deadline(m.status(StatusRequest {})).await?;
        Ok((resp.header.map(|h| h.member_id).unwrap_or(0), resp.leader))
    }

    pub async fn member_list(&self) -> Result<Vec<Member>, CallError> {
        let mut c = ClusterClient::new(self.channel.clone());
        Ok(self.deadline(c.member_list(MemberListRequest { linearizable: true })).await?.members)
    }

    pub async fn member_add(&self, peer_url: &str) -> Result<Vec<Member>, CallError> {
        let mut c = ClusterClient::new(self.channel.clone());
        let req = MemberAddRequest { peer_ur_ls: vec![peer_url.into()], is_learner: false };
        Ok(self.deadline(c.member_add(req)).await?.members)
    }

    pub async fn member_remove(&self, id: u64) -> Result<(), CallError> {
        let mut c = ClusterClient::new(self.channel.clone());
        self.deadline(c.member_remove(MemberRemoveRequest { id })).await?;
        Ok(())
    }
}
