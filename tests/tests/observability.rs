//! What operators watch: Prometheus metrics, the HTTP health endpoint, the gRPC health
//! service — on every member of a real 3-member cluster.

use std::time::Duration;

use berth_testkit::blocking::eventually;
use berth_tests::{berth_cluster, https_get, Etcdctl};

/// A GET on a member's client port with the harness's etcd client certificate: (status
/// code, body).
fn http_get(client_url: &str, path: &str) -> (u16, String) {
    let etcd = berth_jepsen::pki::etcd_client();
    https_get(client_url, path, &etcd.ca_pem, Some(etcd)).expect("a response")
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_health_and_grpc_health_on_every_member() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = berth_cluster(3, dir.path()).await;
    let ctl = Etcdctl::new(cluster.endpoints());
    for i in 0..20 {
        ctl.ok(&["put", &format!("m/{i}"), "v"]);
    }
    let mut leaders = 0;
    for endpoint in cluster.endpoints() {
        let metrics = eventually(Duration::from_secs(10), "metrics after the writes", || {
            let (status, body) = http_get(&endpoint, "/metrics");
            (status == 200 && body.contains("berth_proposals_committed_total")).then_some(body)
        });
        for name in [
            "berth_raft_term ",
            "berth_raft_leader{leader=",
            "berth_raft_commit_index ",
            "berth_raft_applied_index ",
            "berth_proposals_committed_total ",
            "berth_proposals_failed_total ",
            "berth_apply_duration_seconds_count ",
            "berth_db_size_bytes ",
            "berth_watchers ",
        ] {
            assert!(metrics.contains(name), "{endpoint} lacks {name}:\n{metrics}");
        }
        let value = |name: &str| -> f64 {
            metrics
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1.0)
        };
        assert!(value("berth_raft_applied_index ") >= 20.0, "{metrics}");
        assert!(value("berth_db_size_bytes ") > 0.0);
        leaders += value("berth_raft_is_leader ") as i32;
        let (status, health) = http_get(&endpoint, "/health");
        assert_eq!(status, 200, "{health}");
        assert!(health.contains("\"health\":\"true\""), "{health}");
        let (_, version) = http_get(&endpoint, "/version");
        assert!(version.contains("etcdserver"), "{version}");
        let channel = berth_jepsen::procs::connect(&endpoint).await.unwrap();
        let mut grpc_health = tonic_health::pb::health_client::HealthClient::new(channel);
        let served = grpc_health
            .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
            .await
            .expect("gRPC health answers")
            .into_inner();
        assert_eq!(served.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    }
    assert_eq!(leaders, 1, "exactly one member reports being leader");
}
