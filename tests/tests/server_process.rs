//! `berth-server` as a process: flags, crash durability (kill -9 of every member), growing
//! a cluster with `--join`, and refusing corrupt local data.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_jepsen::procs::{berth_server_binary, connect, Member};
use berth_proto::etcdserverpb::kv_client::KvClient;
use berth_proto::etcdserverpb::{PutRequest, RangeRequest};
use berth_testkit::blocking::eventually;
use berth_tests::{berth_cluster, Etcdctl};

fn run_server(args: &[&str]) -> std::process::Output {
    Command::new(berth_server_binary().unwrap()).args(args).output().unwrap()
}

#[test]
fn bad_flags_exit_2_with_a_clear_message() {
    let cases: [(&[&str], &str); 5] = [
        (&["--no-such-flag"], "unexpected argument '--no-such-flag'"),
        (&["--initial-cluster", "garbage"], "--initial-cluster"),
        (&["--name", "x", "--initial-cluster", "y=http://127.0.0.1:1"], "couldn't find local name \"x\""),
        (&["--listen-client-urls", "ftp://127.0.0.1:1"], "--listen-client-urls"),
        (&["--heartbeat-interval", "500", "--election-timeout", "1000"], "--election-timeout"),
    ];
    for (args, message) in cases {
        let out = run_server(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_every_member_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = berth_cluster(3, dir.path()).await;
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    // Writers keep going (through every member) while all members are SIGKILLed.
    let mut writers = vec![];
    for (w, endpoint) in cluster.endpoints().into_iter().enumerate() {
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            let mut kv = KvClient::new(connect(&endpoint).await.unwrap());
            for i in 0.. {
                let (k, v) = (format!("d/{w}/{i}"), format!("v{i}"));
                let put = kv.put(PutRequest { key: k.clone().into(), value: v.clone().into(), ..Default::default() });
                match tokio::time::timeout(Duration::from_secs(2), put).await {
                    Ok(Ok(_)) => acked.lock().unwrap().push((k, v)),
                    _ => return,
                }
            }
        }));
    }
    eventually(Duration::from_secs(30), "some acknowledged writes", || {
        (acked.lock().unwrap().len() > 300).then_some(())
    });
    for m in &mut cluster.members {
        m.signal(libc::SIGKILL);
    }
    for w in writers {
        let _ = w.await;
    }
    for m in &mut cluster.members {
        m.kill();
        m.start().unwrap();
    }
    cluster.wait_ready(Duration::from_secs(30)).await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let mut kv = KvClient::new(connect(&cluster.endpoints()[1]).await.unwrap());
    for (k, v) in &acked {
        let got = kv.range(RangeRequest { key: k.clone().into(), ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(
            got.kvs.first().map(|kv| kv.value.clone()),
            Some(v.clone().into_bytes()),
            "acknowledged write {k} lost"
        );
    }
    eprintln!("{} acknowledged writes all present after kill -9 of every member", acked.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn join_grows_a_single_member_into_three_voters() {
    let dir = tempfile::tempdir().unwrap();
    // A single member is its own initial cluster (the default when no flags are given).
    let mut seed = Member::berth("seed", dir.path(), &[]).unwrap();
    seed.start().unwrap();
    let seed_url = seed.client_url.clone();
    let ctl = Etcdctl::new(vec![seed_url.clone()]);
    eventually(Duration::from_secs(20), "seed serves", || {
        ctl.output(&["put", "k", "v"]).status.success().then_some(())
    });
    let mut joiners = vec![];
    for name in ["j1", "j2"] {
        let mut m = Member::berth(name, dir.path(), &[format!("--join={seed_url}")]).unwrap();
        m.start().unwrap();
        joiners.push(m);
        // One join at a time, as with etcd: wait until this one is a voter.
        eventually(Duration::from_secs(40), "joined member promoted", || {
            let list = ctl.json(&["member", "list"]);
            let members = list["members"].as_array()?.clone();
            let me = members.iter().find(|m| m["name"] == name)?;
            (me.get("isLearner").and_then(|l| l.as_bool()) != Some(true)).then_some(())
        });
    }
    let list = ctl.json(&["member", "list"]);
    assert_eq!(list["members"].as_array().unwrap().len(), 3);
    let j2 = Etcdctl::new(vec![joiners[1].client_url.clone()]);
    assert_eq!(j2.ok(&["get", "k", "--print-value-only"]).trim(), "v", "the joiner has the data");
    seed.stop(Duration::from_secs(5));
    // Two of three voters remain: still a quorum.
    let j1 = Etcdctl::new(vec![joiners[0].client_url.clone()]);
    eventually(Duration::from_secs(20), "writes after losing the seed", || {
        j1.output(&["put", "k", "w"]).status.success().then_some(())
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_local_data_is_refused_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Member::berth("solo", dir.path(), &[]).unwrap();
    m.start().unwrap();
    let ctl = Etcdctl::new(vec![m.client_url.clone()]);
    eventually(Duration::from_secs(20), "serves", || ctl.output(&["put", "k0", "v"]).status.success().then_some(()));
    for i in 0..200 {
        ctl.ok(&["put", &format!("k{i}"), &"x".repeat(200)]);
    }
    m.stop(Duration::from_secs(10));
    // Flip bytes in the middle of the largest file of the database (its write-ahead log or
    // a table file): checksums must catch it at start-up.
    let db = m.data_dir.join("db");
    let victim = std::fs::read_dir(&db)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log" || x == "sst"))
        .max_by_key(|p| std::fs::metadata(p).map(|md| md.len()).unwrap_or(0))
        .expect("a WAL or table file");
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xa5;
    }
    std::fs::write(&victim, &bytes).unwrap();
    m.start().unwrap();
    let status = eventually(Duration::from_secs(20), "the server exits", || m.exit_status());
    assert_eq!(status.code(), Some(1), "log: {}", m.log_text());
    let log = m.log_text();
    assert!(log.contains("corrupt"), "the error says what is wrong: {log}");
}

/// Unmounts (lazily) a tmpfs the test mounted, also when it fails.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A full disk stops the member's store; the server then exits with status 1, as etcd does,
/// so that its supervisor restarts it — and once there is room again the restarted server
/// serves every acknowledged write. (The Jepsen `disk-full` nemesis found servers that kept
/// running and answering 503 after their disk had room again, until someone restarted them.)
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_makes_the_server_exit_and_a_restart_recovers() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=128m", "tmpfs"]).arg(&disk).status().unwrap();
    assert!(mounted.success(), "mounting a tmpfs");
    let _unmount = Mounted(disk.clone());
    let mut m = Member::berth("solo", dir.path(), &[]).unwrap();
    let data_dir = disk.join("solo");
    let at = m.args.iter().position(|a| a == "--data-dir").unwrap() + 1;
    m.args[at] = data_dir.display().to_string();
    m.data_dir = data_dir;
    m.start().unwrap();
    let ctl = Etcdctl::new(vec![m.client_url.clone()]);
    eventually(Duration::from_secs(20), "serves", || ctl.output(&["put", "k0", "v"]).status.success().then_some(()));
    for i in 0..50 {
        ctl.ok(&["put", &format!("k{i}"), &format!("v{i}")]);
    }
    // Fill the disk.
    let ballast = disk.join("ballast");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![0u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
    }
    // Writes now fail; the server must exit rather than linger.
    let status = eventually(Duration::from_secs(30), "the server exits on the full disk", || {
        let _ = ctl.output(&["put", "more", &"x".repeat(4096)]);
        m.exit_status()
    });
    assert_eq!(status.code(), Some(1), "log: {}", m.log_tail(4000));
    std::fs::remove_file(&ballast).unwrap();
    m.kill();
    m.start().unwrap();
    eventually(Duration::from_secs(30), "serves again", || ctl.output(&["get", "k0"]).status.success().then_some(()));
    for i in 0..50 {
        assert_eq!(ctl.ok(&["get", &format!("k{i}"), "--print-value-only"]).trim(), format!("v{i}"));
    }
    m.stop(Duration::from_secs(10));
}
