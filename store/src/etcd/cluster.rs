//! etcd `Cluster` service.

use berth_proto::etcdserverpb::cluster_server::Cluster;
use berth_proto::etcdserverpb::*;
use tonic::Request;

use super::{reply, ResultOf};
use crate::node::Store;

pub struct ClusterService {
    pub node: Store,
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, req: Request<MemberAddRequest>) -> ResultOf<MemberAddResponse> {
        reply(self.node.member_add(req.into_inner()).await)
    }

    async fn member_remove(&self, req: Request<MemberRemoveRequest>) -> ResultOf<MemberRemoveResponse> {
        reply(self.node.member_remove(req.into_inner().id).await)
    }

    async fn member_update(&self, req: Request<MemberUpdateRequest>) -> ResultOf<MemberUpdateResponse> {
        reply(self.node.member_update(req.into_inner()).await)
    }

    async fn member_list(&self, req: Request<MemberListRequest>) -> ResultOf<MemberListResponse> {
        reply(self.node.member_list(req.into_inner().linearizable).await)
    }

    async fn member_promote(&self, req: Request<MemberPromoteRequest>) -> ResultOf<MemberPromoteResponse> {
        reply(self.node.member_promote(req.into_inner().id).await)
    }
}
