//! Leader-only tasks on a 3-server in-process cluster: they run on the Raft leader only,
//! a new leader takes over when the old one dies, and a partitioned old leader's task
//! writes are rejected (they can neither commit nor overwrite the new holder's Lease).

use std::sync::atomic::Ordering;
use std::time::Duration;

use berth_control::testing::Cluster;
use berth_testkit::eventually;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

async fn holder(client: kube::Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client, "kube-system");
    leases.get_opt("berth-scheduler").await.ok().flatten()?.spec?.holder_identity
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_leader_takes_over_and_a_partitioned_old_leader_cannot_write() {
    let mut cluster = Cluster::start(3).await;
    let first = cluster.leader().await;
    let first_name = cluster.servers[first].name.clone();
    let other = (first + 1) % 3;
    eventually(Duration::from_secs(20), "the first leader holds the lease", || async {
        (holder(cluster.servers[other].client()).await.as_deref() == Some(first_name.as_str())).then_some(())
    })
    .await;
    // Only one server runs the tasks.
    let leading = cluster
        .servers
        .iter()
        .filter(|s| s.control.as_ref().unwrap().supervisor.leading.load(Ordering::SeqCst))
        .count();
    assert_eq!(leading, 1);

    // Partition the leader from both peers.
    let ids: Vec<u64> = cluster.servers.iter().map(|s| s.store.id).collect();
    for (i, id) in ids.iter().enumerate() {
        if i != first {
            cluster.faults().cut(ids[first], *id);
        }
    }
    let old = cluster.servers[first].control.as_ref().unwrap().supervisor.clone();
    let ok_at_partition = old.writes_ok.load(Ordering::SeqCst);
    let rejected_at_partition = old.writes_rejected.load(Ordering::SeqCst);
    let second = eventually(Duration::from_secs(20), "a leader on the majority side", || async {
        cluster
            .servers
            .iter()
            .enumerate()
            .position(|(i, s)| i != first && s.control.as_ref().unwrap().supervisor.leading.load(Ordering::SeqCst))
    })
    .await;
    let second_name = cluster.servers[second].name.clone();
    eventually(Duration::from_secs(20), "the new leader holds the lease", || async {
        (holder(cluster.servers[second].client()).await.as_deref() == Some(second_name.as_str())).then_some(())
    })
    .await;
    // The old leader keeps trying (it has not heard of the new term) and every write fails.
    eventually(Duration::from_secs(20), "the old leader's task writes to be rejected", || async {
        (old.writes_rejected.load(Ordering::SeqCst) > rejected_at_partition).then_some(())
    })
    .await;
    // A write already in flight at the cut may still commit; nothing after it does.
    assert!(
        old.writes_ok.load(Ordering::SeqCst) <= ok_at_partition + 2,
        "the partitioned leader committed task writes"
    );

    // Heal: the old leader steps down, its tasks stop, the lease keeps the new holder.
    cluster.faults().heal();
    eventually(Duration::from_secs(20), "the old leader stops its tasks", || async {
        (!old.leading.load(Ordering::SeqCst)).then_some(())
    })
    .await;
    for _ in 0..5 {
        assert_eq!(holder(cluster.servers[first].client()).await.as_deref(), Some(second_name.as_str()));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Kill the current leader: a new one's tasks run and take the lease.
    cluster.servers[second].stop().await;
    let third = eventually(Duration::from_secs(20), "a leader after the kill", || async {
        cluster.servers.iter().enumerate().position(|(i, s)| {
            i != second && s.control.as_ref().is_some_and(|c| c.supervisor.leading.load(Ordering::SeqCst))
        })
    })
    .await;
    let third_name = cluster.servers[third].name.clone();
    eventually(Duration::from_secs(20), "the lease moves to the new leader", || async {
        (holder(cluster.servers[third].client()).await.as_deref() == Some(third_name.as_str())).then_some(())
    })
    .await;
}

/// The fencing the Jepsen `bind` workload needed (a paused leader's scheduler bound pods
/// beside the new leader's and over-committed a node): once a leader has claimed the leader
/// epoch, a write of any other term's tasks is refused, whatever its object guards say.
#[tokio::test(flavor = "multi_thread")]
async fn writes_of_a_term_other_than_the_leader_epoch_are_refused() {
    use berth_control::registry::fence;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::PostParams;

    let cluster = Cluster::start(1).await;
    let server = &cluster.servers[0];
    let control = server.control.as_ref().unwrap();
    let term = eventually(Duration::from_secs(20), "the tasks to start", || async {
        control.supervisor.leading.load(Ordering::SeqCst).then(|| control.supervisor.term.load(Ordering::SeqCst))
    })
    .await;
    let router = berth_control::api::router(control.api.clone());
    let create = |client: kube::Client, name: &str| {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        async move { Api::<ConfigMap>::namespaced(client, "default").create(&PostParams::default(), &cm).await }
    };
    create(berth_control::api::term_client(router.clone(), term), "current").await.expect("the current term writes");
    for (other, name) in [(term - 1, "older"), (term + 1, "unclaimed")] {
        let err = create(berth_control::api::term_client(router.clone(), other), name).await.unwrap_err();
        let kube::Error::Api(status) = err else { panic!("{err}") };
        assert_eq!(status.code, 503, "{status:?}");
        assert!(
            status.message.contains(&format!("leader term {other} that issued this write has ended")),
            "{status:?}"
        );
    }
    // An older leader cannot claim the epoch back.
    assert!(!fence::claim(&server.store, term - 1).await.unwrap());
    assert!(fence::claim(&server.store, term).await.unwrap(), "claiming its own term again is a no-op");
    // Clients that declare no term (users, agents) are not fenced.
    create(server.client(), "user").await.expect("unfenced write");
}
