//! etcd `Maintenance` service.

use std::pin::Pin;

use berth_proto::etcdserverpb::maintenance_server::Maintenance;
use berth_proto::etcdserverpb::*;
use futures::Stream;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tonic::{Request, Response, Status};

use super::{reply, ResultOf};
use crate::node::Store;

/// Bytes per message of a snapshot download.
const SNAPSHOT_CHUNK: usize = 32 * 1024;

pub struct MaintenanceService {
    pub node: Store,
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

    async fn alarm(&self, _req: Request<AlarmRequest>) -> ResultOf<AlarmResponse> {
        // Berth raises no alarms (no space quota, corruption stops the member instead).
        Ok(Response::new(AlarmResponse { header: self.node.header(self.node.revision()), alarms: vec![] }))
    }

    async fn status(&self, _req: Request<StatusRequest>) -> ResultOf<StatusResponse> {
        Ok(Response::new(self.node.status()))
    }

    async fn defragment(&self, _req: Request<DefragmentRequest>) -> ResultOf<DefragmentResponse> {
        // etcd rewrites its bolt file; RocksDB's equivalent is a full compaction of the MVCC
        // column families, which drops compacted history from the table files.
        self.node.defragment().await?;
        Ok(Response::new(DefragmentResponse { header: self.node.header(self.node.revision()) }))
    }

    async fn hash(&self, _req: Request<HashRequest>) -> ResultOf<HashResponse> {
        let r = self.node.hash_kv(0).await?;
        Ok(Response::new(HashResponse { header: r.header, hash: r.hash }))
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> ResultOf<HashKvResponse> {
        reply(self.node.hash_kv(req.into_inner().revision).await)
    }

    /// Streams a backup. Like etcd's, the stream is padded to a multiple of 512 bytes and
    /// ends with the SHA-256 of everything before it, which `etcdctl snapshot save` checks.
    async fn snapshot(&self, _req: Request<SnapshotRequest>) -> ResultOf<Self::SnapshotStream> {
        let backup = self.node.snapshot_backup().await?;
        let header = self.node.header(backup.revision);
        let padded = backup.size.div_ceil(512) * 512;
        let total = padded + 32;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let send = async {
                let mut file =
                    tokio::fs::File::open(&backup.path).await.map_err(|e| Status::internal(e.to_string()))?;
                let mut hasher = Sha256::new();
                let mut sent = 0u64;
                let mut first = true;
                while sent < total {
                    let mut blob = vec![0u8; SNAPSHOT_CHUNK];
                    let mut n = 0;
                    if sent < backup.size {
                        n = file.read(&mut blob).await.map_err(|e| Status::internal(e.to_string()))?;
                        if n == 0 {
                            return Err(Status::internal("backup file shorter than expected"));
                        }
                    } else if sent < padded {
                        n = ((padded - sent) as usize).min(SNAPSHOT_CHUNK); // zero padding
                    }
                    blob.truncate(n);
                    hasher.update(&blob);
                    if sent + n as u64 == padded {
                        blob.extend_from_slice(&hasher.clone().finalize());
                    }
                    sent += blob.len() as u64;
                    let msg = SnapshotResponse {
                        header: if first { header } else { None },
                        remaining_bytes: total - sent,
                        blob,
                        version: crate::node::ETCD_API_VERSION.into(),
                    };
                    first = false;
                    if tx.send(Ok(msg)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok::<(), Status>(())
            };
            if let Err(status) = send.await {
                let _ = tx.send(Err(status)).await;
            }
            drop(backup);
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn move_leader(&self, _req: Request<MoveLeaderRequest>) -> ResultOf<MoveLeaderResponse> {
        Err(Status::unimplemented("etcdserver: leadership transfer is not supported by Berth"))
    }
}
