//! One client's watch stream: watch-id bookkeeping and etcd's create/cancel/progress rules,
//! on top of the hub. Used by the gRPC Watch service and by in-process clients.

use std::collections::HashMap;
use std::sync::Arc;

use berth_proto::etcdserverpb::watch_create_request::FilterType;
use berth_proto::etcdserverpb::{WatchCreateRequest, WatchResponse};
use berth_proto::keys::KeyRange;
use tokio::sync::mpsc;

use super::hub::{WatchHub, WatchSpec};

pub struct WatchStream {
    hub: Arc<WatchHub>,
    stream: u64,
    sink: mpsc::Sender<WatchResponse>,
    /// watch id → hub key.
    watchers: HashMap<i64, u64>,
    next_auto_id: i64,
}

impl WatchStream {
    /// Opens a stream; responses arrive on the returned receiver in order.
    pub fn open(hub: Arc<WatchHub>) -> (WatchStream, mpsc::Receiver<WatchResponse>) {
        let (tx, rx) = mpsc::channel(hub.config().stream_buffer);
        let stream = hub.open_stream(tx.clone());
        (WatchStream { hub, stream, sink: tx, watchers: HashMap::new(), next_auto_id: 0 }, rx)
    }

    /// etcd's create: id 0 means "assign one" (ids count up from 0, skipping ids in use); a
    /// duplicate explicit id is refused with a created+canceled response.
    pub async fn create(&mut self, req: WatchCreateRequest) {
        let mut watch_id = req.watch_id;
        if watch_id == 0 {
            while self.watchers.contains_key(&self.next_auto_id) {
                self.next_auto_id += 1;
            }
            watch_id = self.next_auto_id;
            self.next_auto_id += 1;
        } else if self.watchers.contains_key(&watch_id) {
            return self.refuse(watch_id, "mvcc: duplicate watch ID provided on the WatchStream").await;
        }
        if req.key.is_empty() {
            return self.refuse(watch_id, "etcdserver: key is not provided").await;
        }
        let spec = WatchSpec {
            watch_id,
            range: KeyRange::from_etcd(&req.key, &req.range_end),
            start_revision: req.start_revision,
            prev_kv: req.prev_kv,
            no_put: req.filters.contains(&(FilterType::Noput as i32)),
            no_delete: req.filters.contains(&(FilterType::Nodelete as i32)),
            progress_notify: req.progress_notify,
        };
        if let Some(key) = self.hub.add_watcher(self.stream, spec) {
            self.watchers.insert(watch_id, key);
        }
    }

    /// Answers a create that cannot be served, as etcd does: created and canceled at once.
    async fn refuse(&self, watch_id: i64, reason: &str) {
        let resp = WatchResponse {
            header: self.hub.header(self.hub.notified_revision()),
            watch_id,
            created: true,
            canceled: true,
            cancel_reason: reason.into(),
            ..Default::default()
        };
        let _ = self.sink.send(resp).await;
    }

    /// etcd's cancel: unknown ids are ignored; a known one gets a canceled response after
    /// every event already queued for it.
    pub async fn cancel(&mut self, watch_id: i64) {
        let Some(key) = self.watchers.remove(&watch_id) else {
            return;
        };
        if let Some(c) = self.hub.remove_watcher(key) {
            let _guard = c.send_guard.lock().await;
            let resp = WatchResponse {
                header: self.hub.header(self.hub.notified_revision()),
                watch_id,
                canceled: true,
                ..Default::default()
            };
            let _ = c.sink.send(resp).await;
        }
    }

    pub fn request_progress(&self) {
        self.hub.request_progress(self.stream);
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.hub.close_stream(self.stream);
    }
}
