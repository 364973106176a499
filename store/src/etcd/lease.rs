//! etcd `Lease` service.

use std::pin::Pin;

use berth_proto::etcdserverpb::lease_server::Lease;
use berth_proto::etcdserverpb::*;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{reply, ResultOf};
use crate::node::Store;

pub struct LeaseService {
    pub node: Store,
}

#[tonic::async_trait]
impl Lease for LeaseService {
    type LeaseKeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

    async fn lease_grant(&self, req: Request<LeaseGrantRequest>) -> ResultOf<LeaseGrantResponse> {
        reply(self.node.lease_grant(req.into_inner()).await)
    }

    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> ResultOf<LeaseRevokeResponse> {
        reply(self.node.lease_revoke(req.into_inner().id).await)
    }

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> ResultOf<Self::LeaseKeepAliveStream> {
        let mut requests = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let node = self.node.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = requests.next().await {
                let resp = node.lease_keep_alive(msg.id).await.map_err(Status::from);
                let failed = resp.is_err();
                if tx.send(resp).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(&self, req: Request<LeaseTimeToLiveRequest>) -> ResultOf<LeaseTimeToLiveResponse> {
        reply(self.node.lease_time_to_live(req.into_inner()).await)
    }

    async fn lease_leases(&self, _req: Request<LeaseLeasesRequest>) -> ResultOf<LeaseLeasesResponse> {
        Ok(Response::new(self.node.lease_leases()))
    }
}
