//! The peer port: the gRPC service for openraft RPCs from other members, snapshots, and the
//! leader-only operations followers forward; and starting a whole member (node plus peer
//! server), which lives here, above the node, so the node never depends on its servers.

use berth_proto::berthraftpb::raft_peer_server::RaftPeer;
use berth_proto::berthraftpb::*;
use berth_proto::etcdserverpb::*;
use futures::StreamExt;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::Snapshot;
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use std::sync::Arc;

use berth_proto::berthraftpb::raft_peer_server::RaftPeerServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::incoming;
use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::node::{Attempt, Store, StoreNode};
use crate::raft::codec::{decode, encode};
use crate::raft::peers::{check_cluster_id, NetworkFaults, MAX_PEER_MESSAGE};
use crate::raft::snapshot::{verify_snapshot, SnapshotFile};
use crate::raft::types::{NodeId, SnapshotMeta, TypeConfig, Vote};

impl StoreNode {
    /// Opens storage, resolves identity, starts Raft and serves the peer port on
    /// `peer_listener`. Returns once the member runs (it may not have a leader yet).
    pub async fn start(
        config: StoreConfig,
        peer_listener: TcpListener,
        faults: Arc<NetworkFaults>,
    ) -> crate::Result<Store> {
        StoreNode::open(config, faults, |node| spawn_peer_server(node.clone(), peer_listener, node.shutdown_token()))
            .await
    }
}

/// Serves the peer port in the background until `shutdown`.
pub fn spawn_peer_server(node: Store, listener: TcpListener, shutdown: CancellationToken) {
    let node_tls = node.config.tls.clone();
    let service = RaftPeerServer::new(PeerService { node })
        .max_decoding_message_size(MAX_PEER_MESSAGE)
        .max_encoding_message_size(MAX_PEER_MESSAGE);
    let tls = node_tls.map(|t| t.peer_port);
    tokio::spawn(async move {
        let addr = listener.local_addr().ok();
        let server = || {
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .initial_stream_window_size(4 << 20)
                .initial_connection_window_size(16 << 20)
                .add_service(service)
        };
        // With TLS only members, holding a peer certificate from the etcd CA, get in.
        let served = match tls {
            Some(config) => {
                let connections = super::tls::incoming(listener, config, shutdown.clone());
                server().serve_with_incoming_shutdown(connections, shutdown.cancelled_owned()).await
            }
            None => server().serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled_owned()).await,
        };
        if let Err(e) = served {
            tracing::error!(?addr, error = %e, "peer server failed");
        }
    });
}

pub struct PeerService {
    pub node: Store,
}

fn bad_payload(e: StoreError) -> Status {
    Status::invalid_argument(e.to_string())
}

fn payload<T: serde::Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    Ok(Response::new(RaftPayload { data: encode(value).map_err(|e| Status::internal(e.to_string()))? }))
}

type ResultOf<T> = Result<Response<T>, Status>;

impl PeerService {
    /// Refuses a request stamped by another cluster (or not stamped at all). Every RPC but
    /// `ClusterInfo` checks: a joining member asks that one to learn the cluster ID.
    fn same_cluster<T>(&self, req: &Request<T>) -> Result<(), Status> {
        check_cluster_id(req.metadata(), self.node.cluster_id).inspect_err(|refused| {
            tracing::warn!(remote = ?req.remote_addr(), reason = %refused.message(), "refused a peer request");
        })
    }
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(&self, req: Request<RaftPayload>) -> ResultOf<RaftPayload> {
        self.same_cluster(&req)?;
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode("append entries", &req.into_inner().data).map_err(bad_payload)?;
        payload(&self.node.raft().append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> ResultOf<RaftPayload> {
        self.same_cluster(&req)?;
        let rpc: VoteRequest<NodeId> = decode("vote", &req.into_inner().data).map_err(bad_payload)?;
        payload(&self.node.raft().vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<Streaming<SnapshotChunk>>) -> ResultOf<RaftPayload> {
        self.same_cluster(&req)?;
        let mut stream = req.into_inner();
        let first = stream.next().await.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        let (vote, meta): (Vote, SnapshotMeta) = decode("snapshot header", &first.header).map_err(bad_payload)?;
        let path = self.node.snapshot_dir().incoming_path();
        let io = |e: std::io::Error| Status::internal(format!("writing {}: {e}", path.display()));
        let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
        let received = async {
            while let Some(chunk) = stream.next().await {
                file.write_all(&chunk?.data).await.map_err(io)?;
            }
            file.sync_all().await.map_err(io)?;
            Ok::<(), Status>(())
        }
        .await;
        if let Err(e) = received {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e);
        }
        let check = path.clone();
        let verified = tokio::task::spawn_blocking(move || verify_snapshot(&check))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        if let Err(e) = verified {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(Status::data_loss(e.to_string()));
        }
        let snapshot = Snapshot { meta, snapshot: Box::new(SnapshotFile::File(path)) };
        let result = self.node.raft().install_full_snapshot(vote, snapshot).await.map_err(|e| e.to_string());
        payload(&result)
    }

    async fn propose(&self, req: Request<InternalRequest>) -> ResultOf<ApplyResult> {
        self.same_cluster(&req)?;
        if !self.node.is_leader() {
            return Err(StoreError::NotLeader.into());
        }
        let req = req.into_inner();
        crate::request::admit(&req)?;
        let deadline = tokio::time::Instant::now() + self.node.config.request_timeout;
        match self.node.propose_here(req, deadline).await {
            Attempt::Done(r) => Ok(Response::new(r)),
            Attempt::Retry(_) => Err(StoreError::NotLeader.into()),
            Attempt::Failed(e) => Err(e.into()),
        }
    }

    async fn propose_batch(&self, req: Request<ProposeBatchRequest>) -> ResultOf<ProposeBatchResponse> {
        self.same_cluster(&req)?;
        let outcomes = self.node.leader_propose_batch(req.into_inner().requests).await?;
        Ok(Response::new(ProposeBatchResponse { outcomes }))
    }

    async fn read_index(&self, _req: Request<ReadIndexRequest>) -> ResultOf<ReadIndexResponse> {
        self.same_cluster(&_req)?;
        let read_index = self.node.leader_read_index().await?;
        Ok(Response::new(ReadIndexResponse { read_index }))
    }

    async fn lease_keep_alive(&self, req: Request<LeaseKeepAliveRequest>) -> ResultOf<LeaseKeepAliveResponse> {
        self.same_cluster(&req)?;
        if !self.node.is_leader() {
            return Err(StoreError::NotLeader.into());
        }
        let id = req.into_inner().id;
        Ok(Response::new(LeaseKeepAliveResponse { header: None, id, ttl: self.node.lease_keep_alive_here(id) }))
    }

    async fn lease_time_to_live(&self, req: Request<LeaseTimeToLiveRequest>) -> ResultOf<LeaseTimeToLiveResponse> {
        self.same_cluster(&req)?;
        if !self.node.is_leader() {
            return Err(StoreError::NotLeader.into());
        }
        Ok(Response::new(self.node.lease_time_to_live_here(&req.into_inner())?))
    }

    async fn member_add(&self, req: Request<MemberAddRequest>) -> ResultOf<MemberAddResponse> {
        self.same_cluster(&req)?;
        Ok(Response::new(self.node.member_add_here(req.into_inner()).await?))
    }

    async fn member_remove(&self, req: Request<MemberRemoveRequest>) -> ResultOf<MemberRemoveResponse> {
        self.same_cluster(&req)?;
        Ok(Response::new(self.node.member_remove_here(req.into_inner().id).await?))
    }

    async fn member_update(&self, req: Request<MemberUpdateRequest>) -> ResultOf<MemberUpdateResponse> {
        self.same_cluster(&req)?;
        Ok(Response::new(self.node.member_update_here(req.into_inner()).await?))
    }

    async fn member_promote(&self, req: Request<MemberPromoteRequest>) -> ResultOf<MemberPromoteResponse> {
        self.same_cluster(&req)?;
        Ok(Response::new(self.node.member_promote_here(req.into_inner().id).await?))
    }

    async fn cluster_info(&self, _req: Request<ClusterInfoRequest>) -> ResultOf<ClusterInfoResponse> {
        Ok(Response::new(self.node.cluster_info()?))
    }
}
