//! etcd `Watch` service: one bidirectional stream, many watches.

use std::pin::Pin;

use berth_proto::etcdserverpb::watch_request::RequestUnion;
use berth_proto::etcdserverpb::watch_server::Watch;
use berth_proto::etcdserverpb::{WatchRequest, WatchResponse};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::ResultOf;
use crate::node::Store;

pub struct WatchService {
    pub node: Store,
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> ResultOf<Self::WatchStream> {
        let mut requests = req.into_inner();
        let (mut stream, responses) = self.node.watch();
        tokio::spawn(async move {
            // Ends when the client closes its side or the connection breaks; dropping the
            // stream then removes its watchers from the hub.
            while let Some(Ok(msg)) = requests.next().await {
                match msg.request_union {
                    Some(RequestUnion::CreateRequest(create)) => stream.create(create).await,
                    Some(RequestUnion::CancelRequest(cancel)) => stream.cancel(cancel.watch_id).await,
                    Some(RequestUnion::ProgressRequest(_)) => stream.request_progress(),
                    None => {}
                }
            }
        });
        let out = tokio_stream::wrappers::ReceiverStream::new(responses).map(Ok);
        Ok(Response::new(Box::pin(out)))
    }
}
