//! `berthctl snapshot save FILE`: a consistent backup of the replicated store, streamed by
//! the etcd Maintenance API (`Snapshot`) from the Raft leader (or the one `--endpoints`
//! given), as `etcdctl snapshot save` does. The stream is the server's snapshot file padded
//! to a multiple of 512 bytes and followed by its SHA-256 (etcd's layout); the hash is
//! checked before the file is published under its name (written to `FILE.part`, synced,
//! renamed), so `FILE` is either absent or a complete, verified backup.
//!
//! Restoring is `berth-server --restore-snapshot FILE` on a fresh data dir (see the README).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use berth_proto::etcdserverpb::{SnapshotRequest, StatusRequest};
use sha2::{Digest, Sha256};

use super::{bounded, etcd_endpoints, member_list, rpc_timeout, status_text, EtcdTarget};
use crate::error::{CtlError, Result};
use crate::session::Session;
use crate::{emit, Out};

/// Longest wait for the next message of the stream (the first one comes after the server
/// has written its backup file, which takes a while for a large store).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Length of the SHA-256 trailer.
const HASH_LEN: usize = 32;

/// Flags of `snapshot`.
#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCommand {
    /// Save a consistent backup of the store to FILE (restore: berth-server --restore-snapshot FILE).
    Save(SaveArgs),
}

#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// Where to write the backup.
    pub file: PathBuf,
}

/// Checks etcd's trailer while the stream passes: hashes everything but the last 32 bytes
/// seen so far, which are held back as the candidate hash.
#[derive(Default)]
pub struct TrailerCheck {
    hasher: Sha256,
    tail: Vec<u8>,
    total: u64,
}

impl TrailerCheck {
    pub fn update(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        self.tail.extend_from_slice(chunk);
        if self.tail.len() > HASH_LEN {
            let cut = self.tail.len() - HASH_LEN;
            self.hasher.update(&self.tail[..cut]);
            self.tail.drain(..cut);
        }
    }

    /// Ok when the stream ended with the SHA-256 of the (512-byte aligned) data before it.
    pub fn finish(self) -> std::result::Result<u64, String> {
        let data = self.total.saturating_sub(HASH_LEN as u64);
        if self.total < (HASH_LEN as u64) || !data.is_multiple_of(512) {
            return Err(format!("the snapshot has no SHA-256 trailer ({} bytes)", self.total));
        }
        if self.hasher.finalize().as_slice() != self.tail.as_slice() {
            return Err("SHA-256 mismatch: the snapshot was damaged in transit".into());
        }
        Ok(self.total)
    }
}

/// The endpoint to download from: the only `--endpoints` given, else the leader's client
/// URL, else the endpoints in order.
async fn source_endpoints(session: &mut Session, timeout: Duration) -> Result<EtcdTarget> {
    let endpoints = etcd_endpoints(session).await?;
    if session.global.endpoints.len() == 1 {
        return Ok(endpoints);
    }
    let (list, answered) = member_list(&endpoints, timeout).await?;
    let mut client = MaintenanceClient::new(endpoints.channel(&answered, timeout)?);
    let leader = bounded(timeout, client.status(StatusRequest {})).await.map(|r| r.into_inner().leader).unwrap_or(0);
    let mut ordered: Vec<String> =
        list.members.iter().filter(|m| m.id == leader).flat_map(|m| m.client_ur_ls.iter().cloned()).collect();
    for url in &endpoints.urls {
        if !ordered.contains(url) {
            ordered.push(url.clone());
        }
    }
    Ok(EtcdTarget { urls: ordered, tls: endpoints.tls })
}

fn part_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".part");
    file.with_file_name(name)
}

/// Streams a backup from `url` into `part`; returns its size once verified.
async fn download(sources: &EtcdTarget, url: &str, part: &Path, timeout: Duration) -> Result<u64> {
    let io = |e| CtlError::io(format!("writing {}", part.display()), e);
    let mut client = MaintenanceClient::new(sources.channel(url, timeout)?);
    // The stream may take long as a whole; each message must come within IDLE_TIMEOUT.
    let idle = IDLE_TIMEOUT.max(timeout);
    let stream = tokio::time::timeout(idle, client.snapshot(SnapshotRequest {}))
        .await
        .map_err(|_| CtlError::usage(format!("{url}: no answer within {}s", idle.as_secs())))?
        .map_err(|s| CtlError::usage(format!("{url}: {}", status_text(&s))))?;
    let mut stream = stream.into_inner();
    let mut file = std::fs::File::create(part).map_err(io)?;
    let mut check = TrailerCheck::default();
    loop {
        let next = tokio::time::timeout(idle, stream.message())
            .await
            .map_err(|_| CtlError::usage(format!("{url}: the snapshot stream stalled")))?
            .map_err(|s| CtlError::usage(format!("{url}: {}", status_text(&s))))?;
        let Some(msg) = next else { break };
        check.update(&msg.blob);
        file.write_all(&msg.blob).map_err(io)?;
    }
    let size = check.finish().map_err(|e| CtlError::usage(format!("{url}: {e}")))?;
    file.sync_all().map_err(io)?;
    Ok(size)
}

/// Runs `snapshot save`.
pub async fn run(session: &mut Session, args: SnapshotArgs, out: &mut Out) -> Result<()> {
    let SnapshotCommand::Save(args) = args.command;
    let timeout = rpc_timeout(session)?;
    let sources = source_endpoints(session, timeout).await?;
    let part = part_path(&args.file);
    let mut last = CtlError::usage("no etcd endpoints");
    for url in &sources.urls {
        match download(&sources, url, &part, timeout).await {
            Ok(size) => {
                std::fs::rename(&part, &args.file)
                    .map_err(|e| CtlError::io(format!("renaming to {}", args.file.display()), e))?;
                // Make the rename itself durable (best effort: the data is already synced).
                let dir = args.file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
                tracing::info!(endpoint = %url, bytes = size, "snapshot downloaded");
                return emit(out, &format!("Snapshot saved at {}\n", args.file.display()));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                tracing::debug!(endpoint = %url, error = %e, "snapshot download failed");
                last = e;
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(data: &[u8]) -> Vec<u8> {
        let mut bytes = data.to_vec();
        bytes.resize(bytes.len().div_ceil(512) * 512, 0);
        let hash = Sha256::digest(&bytes);
        bytes.extend_from_slice(&hash);
        bytes
    }

    #[test]
    fn the_trailer_is_checked_whatever_the_chunking() {
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let stream = stream_of(&data);
        for chunk in [1, 7, 31, 32, 33, 512, 10_000] {
            let mut check = TrailerCheck::default();
            for c in stream.chunks(chunk) {
                check.update(c);
            }
            assert_eq!(check.finish(), Ok(stream.len() as u64), "chunk {chunk}");
        }
        let mut damaged = stream.clone();
        damaged[100] ^= 1;
        let mut check = TrailerCheck::default();
        check.update(&damaged);
        assert_eq!(check.finish(), Err("SHA-256 mismatch: the snapshot was damaged in transit".into()));
        let mut check = TrailerCheck::default();
        check.update(&data[..100]);
        assert_eq!(check.finish(), Err("the snapshot has no SHA-256 trailer (100 bytes)".into()));
    }

    #[test]
    fn the_part_file_sits_next_to_the_target() {
        assert_eq!(part_path(Path::new("/tmp/x/backup.db")), PathBuf::from("/tmp/x/backup.db.part"));
        assert_eq!(part_path(Path::new("b")), PathBuf::from("b.part"));
    }
}
