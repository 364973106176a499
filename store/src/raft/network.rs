//! openraft's network, client side: Raft RPCs as bincode payloads over the peer gRPC
//! service, snapshots as a client stream of file chunks.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::berthraftpb::{RaftPayload, SnapshotChunk};
use openraft::error::{
    Fatal, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{EntryPayload, OptionalSend, Snapshot};
use tokio::io::AsyncReadExt;

use super::codec::{decode, encode};
use super::snapshot::SnapshotFile;
use super::types::{Entry, NodeId, PeerNode, TypeConfig, Vote};
use crate::error::StoreError;
use crate::raft::peers::PeerClients;

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

/// Bytes of entries sent in one append, at most (a single larger entry still goes alone):
/// small enough to cross and be fsynced well within a 100 ms heartbeat interval.
const MAX_APPEND_BYTES: usize = 2 << 20;

/// `None` when `entries` fit in `limit` bytes; otherwise how many of the first ones do
/// (at least one).
fn entries_within(entries: &[Entry], limit: usize) -> Option<usize> {
    let mut total = 0;
    for (i, e) in entries.iter().enumerate() {
        total += match &e.payload {
            EntryPayload::Normal(r) => r.encoded_len(),
            _ => 64,
        };
        if total > limit {
            let fitting = i.max(1);
            return (fitting < entries.len()).then_some(fitting);
        }
    }
    None
}

fn unreachable(e: StoreError) -> Unreachable {
    Unreachable::new(&e)
}

impl PeerConnection {
    /// One unary Raft RPC: encode, send with a deadline, decode the remote `Result`.
    async fn call<Req, Resp, F, Fut>(&self, req: &Req, ttl: Duration, send: F) -> RpcResult<Resp>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        F: FnOnce(crate::raft::peers::PeerClient, RaftPayload) -> Fut,
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
        // openraft sends up to `max_payload_entries` entries at once whatever their size,
        // and gives each append one heartbeat interval to complete (openraft 0.9 hard-codes
        // that timeout). A follower catching up after a burst of large writes was sent
        // appends of many megabytes that could not finish in time, were re-sent, timed out
        // again, forever (the request fuzzer found it). Ask openraft for fewer entries.
        if let Some(fitting) = entries_within(&rpc.entries, MAX_APPEND_BYTES) {
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(fitting as u64)));
        }
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

#[cfg(test)]
mod tests {
    use berth_proto::berthraftpb::internal_request::Request;
    use berth_proto::berthraftpb::InternalRequest;
    use berth_proto::etcdserverpb::PutRequest;
    use openraft::{CommittedLeaderId, LogId};

    use super::*;
    use crate::raft::StoreRequest;

    fn entry(index: u64, value_bytes: usize) -> Entry {
        let put = PutRequest { key: b"k".to_vec(), value: vec![0; value_bytes], ..Default::default() };
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(StoreRequest::new(&InternalRequest { request: Some(Request::Put(put)) })),
        }
    }

    #[test]
    fn appends_are_cut_to_fit_the_peer_message_limit() {
        let small: Vec<Entry> = (1..=10).map(|i| entry(i, 100)).collect();
        assert_eq!(entries_within(&small, 10_000), None);
        let big: Vec<Entry> = (1..=10).map(|i| entry(i, 1000)).collect();
        assert_eq!(entries_within(&big, 3500), Some(3));
        // One entry larger than the limit still goes, alone.
        assert_eq!(entries_within(&big, 10), Some(1));
        assert_eq!(entries_within(&big[..1], 10), None);
    }
}
