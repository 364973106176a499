//! etcd `KV` service.

use berth_proto::etcdserverpb::kv_server::Kv;
use berth_proto::etcdserverpb::*;
use tonic::Request;

use super::{reply, ResultOf};
use crate::node::Store;

pub struct KvService {
    pub node: Store,
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> ResultOf<RangeResponse> {
        reply(self.node.range(req.into_inner()).await)
    }

    async fn put(&self, req: Request<PutRequest>) -> ResultOf<PutResponse> {
        reply(self.node.put(req.into_inner()).await)
    }

    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> ResultOf<DeleteRangeResponse> {
        reply(self.node.delete_range(req.into_inner()).await)
    }

    async fn txn(&self, req: Request<TxnRequest>) -> ResultOf<TxnResponse> {
        reply(self.node.txn(req.into_inner()).await)
    }

    async fn compact(&self, req: Request<CompactionRequest>) -> ResultOf<CompactionResponse> {
        reply(self.node.compact(req.into_inner()).await)
    }
}
