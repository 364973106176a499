//! The real `etcdctl` 3.5 against a 3-member cluster of real `berth-server` processes.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use berth_testkit::blocking::eventually;
use berth_tests::{b64, berth_cluster, Etcdctl};

fn rev_of(v: &serde_json::Value) -> i64 {
    v["header"]["revision"].as_i64().expect("header.revision")
}

#[tokio::test(flavor = "multi_thread")]
async fn put_get_delete_with_prefix_revisions_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = berth_cluster(3, dir.path()).await;
    // One etcdctl per member: followers forward writes to the leader.
    let ctls: Vec<Etcdctl> = cluster.endpoints().into_iter().map(|e| Etcdctl::new(vec![e])).collect();
    assert_eq!(ctls[0].ok(&["put", "foo/a", "1"]).trim(), "OK");
    assert_eq!(ctls[1].ok(&["put", "foo/b", "2"]).trim(), "OK");
    assert_eq!(ctls[2].ok(&["put", "bar", "3"]).trim(), "OK");
    assert_eq!(ctls[0].ok(&["get", "foo", "--prefix"]), "foo/a\n1\nfoo/b\n2\n");
    let first = ctls[1].json(&["get", "foo/a"]);
    assert_eq!(first["kvs"][0]["key"], b64("foo/a"));
    assert_eq!(first["kvs"][0]["value"], b64("1"));
    assert_eq!(first["kvs"][0]["version"], 1);
    let rev_a = first["kvs"][0]["mod_revision"].as_i64().unwrap();
    ctls[2].ok(&["put", "foo/a", "11"]);
    assert_eq!(ctls[0].ok(&["get", "foo/a", "--print-value-only"]).trim(), "11");
    assert_eq!(ctls[0].ok(&["get", "foo/a", "--print-value-only", &format!("--rev={rev_a}")]).trim(), "1");
    let now = ctls[0].json(&["get", "foo/a"]);
    assert_eq!(now["kvs"][0]["version"], 2);
    assert_eq!(now["kvs"][0]["create_revision"].as_i64(), Some(rev_a));
    assert_eq!(
        // From "a": the control plane's own keys live under "/registry/", which sorts before it.
        ctls[0].ok(&["get", "a", "--from-key", "--keys-only"]).split_whitespace().collect::<Vec<_>>(),
        ["bar", "foo/a", "foo/b"]
    );
    assert_eq!(ctls[0].ok(&["get", "foo", "--prefix", "--limit=1", "--print-value-only"]).trim(), "11");
    let counted = ctls[0].ok(&["get", "foo", "--prefix", "--count-only", "--write-out=fields"]);
    assert!(counted.contains("\"Count\" : 2"), "{counted}");
    assert_eq!(ctls[1].ok(&["del", "foo", "--prefix"]).trim(), "2");
    assert_eq!(ctls[0].ok(&["get", "foo", "--prefix"]), "");
    let future = ctls[0].output(&["get", "bar", "--rev=100000"]);
    assert!(!future.status.success());
    assert!(String::from_utf8_lossy(&future.stderr).contains("required revision is a future revision"));
    assert!(rev_of(&ctls[0].json(&["get", "bar"])) > rev_a);
}

#[tokio::test(flavor = "multi_thread")]
async fn txn_takes_success_and_failure_branches() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = berth_cluster(3, dir.path()).await;
    let ctl = Etcdctl::new(cluster.endpoints());
    ctl.ok(&["put", "user1", "bad"]);
    let out =
        ctl.with_stdin(&["txn"], "value(\"user1\") = \"bad\"\n\ndel user1\nput audit fixed\n\nput user1 good\n\n");
    assert!(out.starts_with("SUCCESS"), "{out}");
    assert_eq!(ctl.ok(&["get", "audit", "--print-value-only"]).trim(), "fixed");
    assert_eq!(ctl.ok(&["get", "user1"]), "");
    let out = ctl.with_stdin(&["txn"], "version(\"user1\") > \"0\"\n\nput never x\n\nput user1 created\n\n");
    assert!(out.starts_with("FAILURE"), "{out}");
    assert_eq!(ctl.ok(&["get", "user1", "--print-value-only"]).trim(), "created");
    assert_eq!(ctl.ok(&["get", "never"]), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_from_a_revision_with_prev_kv_and_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = berth_cluster(3, dir.path()).await;
    let eps = cluster.endpoints();
    let writer = Etcdctl::new(vec![eps[0].clone()]);
    let start = rev_of(&writer.json(&["put", "w/1", "a"]));
    writer.ok(&["put", "w/1", "b"]);
    writer.ok(&["put", "other", "x"]);
    // Watch on a different member (every member serves watches), from the first revision.
    let watcher = Etcdctl::new(vec![eps[2].clone()]);
    let mut child = watcher
        .command(&["watch", "w/", "--prefix", &format!("--rev={start}"), "--prev-kv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    writer.ok(&["del", "w/1"]);
    writer.ok(&["put", "w/2", "c"]);
    let mut lines = vec![];
    let expected = [
        "PUT", "w/1", "a", // first put, no previous value
        "PUT", "w/1", "a", "w/1", "b", // prev kv then the new one
        "DELETE", "w/1", "b", "w/1", "", // prev kv, then the deleted key (no value)
        "PUT", "w/2", "c",
    ];
    while lines.len() < expected.len() {
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(l) => lines.push(l),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(lines, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_grant_keep_alive_time_to_live_revoke_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = berth_cluster(3, dir.path()).await;
    let ctl = Etcdctl::new(cluster.endpoints());
    let granted = ctl.ok(&["lease", "grant", "60"]);
    // "lease 694d7d8a2e0bf013 granted with TTL(60s)"
    let id = granted.split_whitespace().nth(1).expect("lease id").to_string();
    assert!(granted.contains("granted with TTL(60s)"), "{granted}");
    ctl.ok(&["put", "leased", "v", &format!("--lease={id}")]);
    let ttl = ctl.ok(&["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.contains("attached keys([leased])"), "{ttl}");
    let kept = ctl.ok(&["lease", "keep-alive", "--once", &id]);
    assert!(kept.contains("keepalived with TTL(60)"), "{kept}");
    assert!(ctl.ok(&["lease", "list"]).contains(&id));
    assert!(ctl.ok(&["lease", "revoke", &id]).contains("revoked"));
    assert_eq!(ctl.ok(&["get", "leased"]), "", "attached keys go with the lease");
    assert!(ctl.ok(&["lease", "timetolive", &id]).contains("already expired"));
    // A lease nobody keeps alive expires on its own, taking its keys.
    let short = ctl.ok(&["lease", "grant", "2"]);
    let short_id = short.split_whitespace().nth(1).unwrap().to_string();
    ctl.ok(&["put", "ephemeral", "v", &format!("--lease={short_id}")]);
    eventually(Duration::from_secs(15), "the short lease expires", || {
        (ctl.ok(&["get", "ephemeral"]).is_empty()).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn members_list_add_learner_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = berth_cluster(3, dir.path()).await;
    let ctl = Etcdctl::new(cluster.endpoints());
    // A member publishes its name and client URLs just after it starts (as etcd's do), so
    // right after the cluster is ready one of them may still be nameless: wait for all.
    eventually(Duration::from_secs(15), "every member named with client URLs", || {
        let list = ctl.json(&["member", "list"]);
        let members = list["members"].as_array()?.clone();
        (members.len() == 3
            && members.iter().all(|m| {
                m["name"].as_str().is_some_and(|n| n.starts_with('n')) && m["clientURLs"].as_array().is_some()
            }))
        .then_some(())
    });
    let port = berth_jepsen::procs::free_port();
    let added = ctl.ok(&["member", "add", "extra", &format!("--peer-urls=http://127.0.0.1:{port}"), "--learner"]);
    assert!(added.contains("added to cluster"), "{added}");
    let id = added.split_whitespace().nth(1).unwrap().to_string(); // "Member <id> added to cluster <cid>"
    let table = ctl.ok(&["member", "list"]);
    assert!(table.contains(&format!("{id}, unstarted")), "{table}");
    assert!(table.lines().any(|l| l.starts_with(&id) && l.ends_with("true")), "learner flag: {table}");
    let dup = ctl.output(&["member", "add", "again", &format!("--peer-urls=http://127.0.0.1:{port}")]);
    assert!(String::from_utf8_lossy(&dup.stderr).contains("Peer URLs already exists"));
    assert!(ctl.ok(&["member", "remove", &id]).contains("removed from cluster"));
    assert_eq!(ctl.json(&["member", "list"])["members"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoint_status_health_hashkv_compaction_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = berth_cluster(3, dir.path()).await;
    let ctl = Etcdctl::new(cluster.endpoints());
    // The servers write too (identity Leases), so the puts' revisions need not be consecutive.
    let revs: Vec<i64> = (0..10).map(|i| rev_of(&ctl.json(&["put", "c", &i.to_string()]))).collect();
    let status = ctl.json(&["endpoint", "status"]);
    let statuses = status.as_array().unwrap();
    assert_eq!(statuses.len(), 3);
    let leaders: Vec<u64> = statuses.iter().map(|s| s["Status"]["leader"].as_u64().unwrap()).collect();
    assert!(leaders.iter().all(|l| *l == leaders[0] && *l != 0), "one leader: {leaders:?}");
    let health = ctl.ok(&["endpoint", "health"]);
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
    let rev = rev_of(&ctl.json(&["get", "c"]));
    eventually(Duration::from_secs(10), "equal hashes", || {
        let h = ctl.json(&["endpoint", "hashkv", &format!("--rev={rev}")]);
        let hashes: Vec<u64> = h.as_array()?.iter().map(|e| e["HashKV"]["hash"].as_u64().unwrap()).collect();
        (hashes.len() == 3 && hashes.iter().all(|x| *x == hashes[0])).then_some(())
    });
    assert!(ctl.ok(&["compaction", &revs[6].to_string()]).contains(&format!("compacted revision {}", revs[6])));
    let old = ctl.output(&["get", "c", &format!("--rev={}", revs[4])]);
    assert!(String::from_utf8_lossy(&old.stderr).contains("required revision has been compacted"));
    assert_eq!(ctl.ok(&["get", "c", "--print-value-only", &format!("--rev={}", revs[6])]).trim(), "6");
    let snap = dir.path().join("backup.db");
    let single = Etcdctl::new(vec![cluster.endpoints()[0].clone()]);
    let out = single.output(&["snapshot", "save", snap.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::metadata(&snap).unwrap().len() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn check_perf_small_load_passes() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = berth_cluster(3, dir.path()).await;
    let ctl = Etcdctl::new(cluster.endpoints());
    let terms_before = raft_terms(&ctl);
    let out = ctl.output(&["check", "perf", "--load=s"]);
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let verdict: Vec<&str> = text.lines().filter(|l| l.contains("PASS") || l.contains("FAIL")).collect();
    // On failure, say whether an election happened meanwhile (a leader change costs one
    // election timeout, more than check perf's 0.5 s limit on the slowest request).
    assert!(
        out.status.success() && verdict.last() == Some(&"PASS"),
        "check perf: {verdict:?}\nraft terms before {terms_before:?}, after {:?}\nstdout: {text}\nstderr: {}",
        raft_terms(&ctl),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every member's Raft term, from `endpoint status`.
fn raft_terms(ctl: &Etcdctl) -> Vec<u64> {
    let status = ctl.json(&["endpoint", "status"]);
    status.as_array().map(|a| a.iter().filter_map(|e| e["Status"]["raftTerm"].as_u64()).collect()).unwrap_or_default()
}
