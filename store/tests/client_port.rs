//! The etcd client port against careless and hostile clients: connections that stall
//! are closed, over-limit requests get etcd's status, and healthy quiet clients (a watch
//! with nothing to report) are never cut.

use std::time::{Duration, Instant};

use berth_proto::etcdserverpb::kv_client::KvClient;
use berth_proto::etcdserverpb::watch_client::WatchClient;
use berth_proto::etcdserverpb::watch_request::RequestUnion;
use berth_proto::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest};
use berth_store::testing::*;
use berth_testkit::{eventually, init_tracing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const IDLE: Duration = Duration::from_millis(900);

/// Reads until the server closes the connection (or resets it); returns how long it took.
async fn time_until_closed(mut conn: TcpStream, bound: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(bound, conn.read(&mut buf)).await {
            Err(_) => panic!("connection still open after {bound:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed_and_quiet_watches_are_not() {
    init_tracing();
    let c = Cluster::start(1, |_| {}).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let _guard = shutdown.clone().drop_guard();
    tokio::spawn(berth_store::server::serve_client_with(c.node(0).clone(), listener, IDLE, shutdown.clone()));
    let url = format!("http://{addr}");

    // A partial HTTP/2 preface, then silence.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let took = time_until_closed(conn, Duration::from_secs(10)).await;
    assert!(took >= IDLE / 2 && took < IDLE * 4, "closed after {took:?}");

    // A partial HTTP/1 request head, then silence.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    time_until_closed(conn, Duration::from_secs(10)).await;

    // A watch that sees nothing for several idle periods keeps working: the server's
    // keep-alive pings keep its connection talking.
    let mut watch = WatchClient::connect(url.clone()).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: b"quiet".to_vec(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut events = watch.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let created = events.message().await.unwrap().expect("created");
    assert!(created.created);
    tokio::time::sleep(IDLE * 4).await;
    let mut kv = KvClient::connect(url.clone()).await.unwrap();
    kv.put(PutRequest { key: b"quiet".to_vec(), value: b"now".to_vec(), ..Default::default() }).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), events.message()).await.expect("event in time");
    let event = event.expect("stream alive").expect("an event");
    assert_eq!(event.events[0].kv.as_ref().unwrap().value, b"now");
    drop(tx);

    // Over the message limit: etcd's ResourceExhausted, not tonic's OutOfRange.
    let huge = PutRequest { key: b"huge".to_vec(), value: vec![b'x'; 3 << 20], ..Default::default() };
    let mut kv = KvClient::connect(url).await.unwrap().max_encoding_message_size(8 << 20);
    let status = kv.put(huge).await.expect_err("over the limit");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("received message larger than max"), "{}", status.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_raft_core_is_reported_not_hidden() {
    init_tracing();
    let c = Cluster::start(1, |_| {}).await;
    let node = c.node(0).clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let _guard = shutdown.clone().drop_guard();
    tokio::spawn(berth_store::server::serve_client_with(node.clone(), listener, IDLE, shutdown.clone()));
    assert_eq!(node.health(), Ok(()));

    // The Raft core stops (as it does on local corruption); the member must say so.
    node.raft().shutdown().await.unwrap();
    let reason = eventually(Duration::from_secs(5), "the stop is visible", async || node.stopped_reason()).await;
    assert_eq!(node.leader(), None, "a stopped member reports no leader");
    let health = node.health().expect_err("unhealthy");
    assert!(health.starts_with("RAFT STOPPED"), "{health}");
    let status = node.status();
    assert_eq!(status.leader, 0);
    assert_eq!(status.errors, vec![format!("raft stopped: {reason}")]);

    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /health HTTP/1.0\r\n\r\n").await.unwrap();
    let mut page = String::new();
    conn.read_to_string(&mut page).await.unwrap();
    assert!(page.starts_with("HTTP/1.0 503"), "{page}");
    assert!(page.contains(r#""health":"false""#) && page.contains("RAFT STOPPED"), "{page}");
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut page = String::new();
    conn.read_to_string(&mut page).await.unwrap();
    assert!(page.contains("berth_raft_stopped 1"), "metrics say nothing of the stop");
    assert!(page.contains("berth_raft_has_leader 0"));
}
