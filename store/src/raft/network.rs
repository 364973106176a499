//! openraft's network, client side: Raft RPCs as bincode payloads over the peer gRPC
//! service, snapshots as a client stream of file chunks.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::berthraftpb::{RaftPayload, SnapshotChunk};
use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{OptionalSend, Snapshot};
use tokio::io::AsyncReadExt;

use super::codec::{decode, encode};
use super::snapshot::SnapshotFile;
use super::types::{NodeId, PeerNode, TypeConfig, Vote};
use crate::error::StoreError;
use crate::peers::PeerClients;

/// Deletes a temporary file when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Bytes per snapshot chunk on the wire.
const SNAPSHOT_CHUNK: usize = 1 << 20;

#[derive(Clone)]
pub struct Network {
    pub peers: Arc<PeerClients>,
}

pub struct PeerConnection {
    target: NodeId,
    node: PeerNode,
    peers: Arc<PeerClients>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> PeerConnection {
        PeerConnection { target, node: node.clone(), peers: self.peers.clone() }
    }
}

type RpcResult<T> = Result<T, RPCError<NodeId, PeerNode, RaftError<NodeId>>>;

fn unreachable(e: StoreError) -> Unreachable {
    Unreachable::new(&e)
}

impl PeerConnection {
    /// One unary Raft RPC: encode, send with a deadline, decode the remote `Result`.
    async fn call<Req, Resp, F, Fut>(&self, req: &Req, ttl: Duration, send: F) -> RpcResult<Resp>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        F: FnOnce(
            berth_proto::berthraftpb::raft_peer_client::RaftPeerClient<tonic::transport::Channel>,
            RaftPayload,
        ) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftPayload>, tonic::Status>>,
    {
        let client = self.peers.client(self.target, &self.node).map_err(|e| RPCError::Unreachable(unreachable(e)))?;
        let payload = RaftPayload { data: encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))? };
        let reply = match tokio::time::timeout(ttl, send(client, payload)).await {
            Err(_) => {
                let e =
                    StoreError::Peer { peer: format!("{:x}", self.target), message: format!("no answer in {ttl:?}") };
                return Err(RPCError::Network(NetworkError::new(&e)));
            }
            Ok(Err(status)) => {
                let e = StoreError::Peer { peer: format!("{:x}", self.target), message: status.message().to_string() };
                return Err(RPCError::Unreachable(unreachable(e)));
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let result: Result<Resp, RaftError<NodeId>> =
            decode("raft reply", &reply.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.call(&rpc, option.hard_ttl(), |mut c, p| async move { c.append_entries(p).await }).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        self.call(&rpc, option.hard_ttl(), |mut c, p| async move { c.vote(p).await }).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let target = self.target;
        let peer_err = |message: String| StoreError::Peer { peer: format!("{target:x}"), message };
        let mut client =
            self.peers.client(self.target, &self.node).map_err(|e| StreamingError::Unreachable(unreachable(e)))?;
        let header =
            encode(&(vote, snapshot.meta.clone())).map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        // A checkpoint is exported to a file for the transfer (and the export removed after).
        let (path, export) = match *snapshot.snapshot {
            SnapshotFile::File(path) => (path, None),
            SnapshotFile::Checkpoint(dir) => {
                let export = dir.parent().unwrap_or(&dir).join(format!("export-{}.snap", rand::random::<u64>()));
                let (d, m, e) = (dir.clone(), snapshot.meta.clone(), export.clone());
                tokio::task::spawn_blocking(move || super::snapshot::SnapshotDir::export(&d, &m, &e))
                    .await
                    .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?
                    .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
                (export.clone(), Some(export))
            }
        };
        let _cleanup = export.map(RemoveOnDrop);
        let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(4);
        // Reader task: the file in chunks, the header first.
        let reader = tokio::spawn(async move {
            let mut file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
            tx.send(SnapshotChunk { header, data: vec![] }).await.map_err(|_| StoreError::Stopped)?;
            loop {
                let mut buf = vec![0u8; SNAPSHOT_CHUNK];
                let n = file.read(&mut buf).await.map_err(|e| StoreError::io("reading snapshot", e))?;
                if n == 0 {
                    return Ok::<(), StoreError>(());
                }
                buf.truncate(n);
                tx.send(SnapshotChunk { header: vec![], data: buf }).await.map_err(|_| StoreError::Stopped)?;
            }
        });
        let send = client.install_snapshot(tokio_stream::wrappers::ReceiverStream::new(rx));
        let reply = tokio::select! {
            closed = cancel => {
                reader.abort();
                return Err(StreamingError::Closed(closed));
            }
            reply = send => reply,
        };
        if let Ok(Err(e)) = reader.await {
            return Err(StreamingError::Network(NetworkError::new(&e)));
        }
        let reply = reply.map_err(|s| StreamingError::Unreachable(unreachable(peer_err(s.message().to_string()))))?;
        let result: Result<SnapshotResponse<NodeId>, String> = decode("snapshot reply", &reply.into_inner().data)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        result.map_err(|m| StreamingError::Network(NetworkError::new(&peer_err(m))))
    }
}
