//! Joining nodes with bootstrap tokens (issue 20), with real processes: `berthctl token
//! create --print-join-command` prints kubeadm's kind of join command; an agent run with it
//! discovers the cluster, checks the CA against the pin, asks for its node certificate
//! (approved and signed by the leader) and becomes a Ready node under its own identity; a
//! wrong pin and a deleted token are refused and register nothing.

use std::process::Command;
use std::time::Duration;

use berth_testkit::blocking::eventually;
use berth_tests::berthctl::{run_bounded, Agent, CtlCluster};

fn agent(c: &CtlCluster, node: &str, flags: &[&str]) -> Command {
    let mut cmd = Command::new(berth_jepsen::procs::berth_agent_binary().expect("berth-agent built"));
    cmd.args(flags)
        .args(["--node-name", node, "--runtime", "process", "--listen-port", "0", "--node-ip", "127.0.0.1"])
        .arg("--data-dir")
        .arg(c.dir.join(format!("agent-{node}")));
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_joins_with_a_token_and_the_ca_pin_and_wrong_pins_and_deleted_tokens_are_refused() {
    let mut c = CtlCluster::start(1, Agent::None).await;
    let line = c.ok(&["token", "create", "--print-join-command", "--description", "test join"]);
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"berth-agent"), "{line}");
    let flag = |name: &str| words[words.iter().position(|w| *w == name).expect(name) + 1].to_string();
    let (server, token, pin) = (flag("--server"), flag("--token"), flag("--discovery-token-ca-cert-hash"));
    let ca_pem = berth_jepsen::pki::admin_credentials().api.ca_pem;
    assert_eq!(pin, berth_proto::pki::ca_cert_hash(&ca_pem).unwrap());
    let list = c.ok(&["token", "list"]);
    assert!(list.contains(&token) && list.contains("authentication,signing") && list.contains("test join"), "{list}");

    // A pin of another CA: refused before anything is asked for.
    let stranger = berth_proto::pki::Ca::generate("stranger").unwrap().cert_hash().unwrap();
    let refused = run_bounded(
        agent(&c, "intruder", &["--server", &server, "--token", &token, "--discovery-token-ca-cert-hash", &stranger]),
        None,
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("cluster CA found in cluster-info ConfigMap is invalid: none of the public keys"),
        "{stderr}"
    );

    // The printed command: a Ready node, under its own identity.
    let flags: Vec<String> = words[1..].iter().map(|w| w.to_string()).collect();
    c.start_process_agent("joiner", &flags);
    let csrs = c.ok(&["get", "csr"]);
    assert!(csrs.contains("Approved,Issued") && csrs.contains(&format!("system:bootstrap:{}", &token[..6])), "{csrs}");
    let kubeconfig =
        std::fs::read_to_string(c.dir.join("agent-joiner/kubelet.kubeconfig")).expect("the joined kubeconfig");
    assert!(kubeconfig.contains("client-certificate-data"), "{kubeconfig}");
    let cert = std::fs::read_to_string(c.dir.join("agent-joiner/pki/kubelet-client.crt")).unwrap();
    let subject = berth_proto::pki::cert_info(&cert).unwrap().subject;
    assert!(subject.contains("CN=system:node:joiner") && subject.contains("O=system:nodes"), "{subject}");
    assert!(c.ok(&["get", "nodes", "--no-headers"]).lines().all(|l| !l.starts_with("intruder")));

    // A deleted token joins nothing (its cluster-info signature goes with it).
    assert!(c.ok(&["token", "delete", &token]).contains("deleted"));
    eventually(Duration::from_secs(10), "the token's signature gone", || {
        let info = c.ok(&["get", "configmap", "cluster-info", "-n", "kube-public", "-o", "yaml"]);
        (!info.contains(&format!("jws-kubeconfig-{}", &token[..6]))).then_some(())
    });
    let refused = run_bounded(
        agent(
            &c,
            "latecomer",
            &[
                "--server",
                &server,
                "--token",
                &token,
                "--discovery-token-ca-cert-hash",
                &pin,
                "--discovery-timeout",
                "3s",
            ],
        ),
        None,
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("no JWS signed token"), "{stderr}");
}

/// A server joins with a control-plane token (issue 20): `berthctl token create
/// --control-plane --print-join-command` prints the `berth-server --join … --token …` to
/// run; the new server, with an empty data dir, discovers the cluster, checks the CA pin,
/// fetches the CAs and keys over that TLS and becomes a member holding the same data and
/// the same CA. A wrong pin fetches nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_joins_with_a_control_plane_token_and_a_wrong_pin_fetches_nothing() {
    let c = CtlCluster::start(1, Agent::None).await;
    c.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: before-join, namespace: default}\n",
    );
    let line = c.ok(&["token", "create", "--control-plane", "--print-join-command"]);
    let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    assert_eq!(words.first().map(String::as_str), Some("berth-server"), "{line}");
    let flag = |name: &str| words[words.iter().position(|w| w == name).expect(name) + 1].clone();
    let dir = tempfile::tempdir().unwrap();
    // The wrong pin: refused before anything is fetched.
    let stranger = berth_proto::pki::Ca::generate("stranger").unwrap().cert_hash().unwrap();
    let mut wrong: Vec<String> = words[1..].to_vec();
    let at = wrong.iter().position(|w| w == "--discovery-token-ca-cert-hash").unwrap() + 1;
    wrong[at] = stranger;
    let refused = berth_jepsen::procs::Member::berth("intruder", dir.path(), &wrong).unwrap();
    let mut command = Command::new(&refused.program);
    command.args(&refused.args);
    let out = run_bounded(command, None, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("none of the public keys"), "{stderr}");
    assert!(!refused.data_dir.join("pki/ca.key").exists(), "nothing fetched");
    // A node's token (no --control-plane) may not read the cluster's keys.
    let node_token = c.ok(&["token", "create"]).trim().to_string();
    let mut as_node: Vec<String> = words[1..].to_vec();
    let at = as_node.iter().position(|w| w == "--token").unwrap() + 1;
    as_node[at] = node_token;
    let refused = berth_jepsen::procs::Member::berth("nodetoken", dir.path(), &as_node).unwrap();
    let mut command = Command::new(&refused.program);
    command.args(&refused.args);
    let out = run_bounded(command, None, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("a control-plane token is needed"), "{stderr}");
    assert!(stderr.contains("forbidden"), "{stderr}");
    assert!(!refused.data_dir.join("pki/ca.key").exists(), "nothing fetched");

    // The printed command: a member with the cluster's CA and data.
    let joiner = berth_jepsen::procs::Member::berth("joiner", dir.path(), &words[1..]).unwrap();
    let log = std::fs::File::create(&joiner.log).unwrap();
    let child =
        Command::new(&joiner.program).args(&joiner.args).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
    let _child = berth_testkit::KillOnDrop(child);
    let seed_dir = &c.servers.members[0].data_dir;
    eventually(Duration::from_secs(60), "the joiner is a voting member", || {
        let list = c.try_ok(&["member", "list"]).ok()?;
        let row = list.lines().find(|l| l.split_whitespace().nth(2) == Some("joiner"))?;
        row.trim_end().ends_with("false").then_some(())
    });
    for file in ["pki/ca.crt", "pki/etcd/ca.crt", "pki/sa.key"] {
        assert_eq!(
            std::fs::read(joiner.data_dir.join(file)).unwrap(),
            std::fs::read(seed_dir.join(file)).unwrap(),
            "{file}"
        );
    }
    let admin = Some(berth_jepsen::pki::admin());
    let (status, body) = eventually(Duration::from_secs(30), "the joiner's API serves the data", || {
        berth_tests::api_get(&joiner.api_url, "/api/v1/namespaces/default/configmaps/before-join", admin)
            .ok()
            .filter(|(s, _)| *s == 200)
    });
    assert_eq!(status, 200, "{body}");
    assert_eq!(flag("--discovery-server"), c.api_urls()[0]);
}

/// A joined node rotates its client certificate while it runs (kubelet's
/// `--rotate-certificates`): with `--cluster-signing-duration 30s` the agent asks for a new
/// one (as the node itself) before the first expires, presents it from then on, and keeps
/// heartbeating after the first has expired — the servers check a connection's
/// certificate on every request, so a connection left open with the old one would fail.
#[tokio::test(flavor = "multi_thread")]
async fn a_joined_node_rotates_its_certificate_before_it_expires_and_keeps_working() {
    let mut c = CtlCluster::start_with_server_args(1, Agent::None, &["--cluster-signing-duration", "30s"]).await;
    let line = c.ok(&["token", "create", "--print-join-command"]);
    let flags: Vec<String> = line.split_whitespace().skip(1).map(str::to_string).collect();
    c.start_process_agent("rotator", &flags);
    let cert_path = c.dir.join("agent-rotator/pki/kubelet-client.crt");
    let read_info = || berth_proto::pki::cert_info(&std::fs::read_to_string(&cert_path).unwrap()).unwrap();
    let first = read_info();
    let life = first.not_after.duration_since(std::time::SystemTime::now()).unwrap_or_default();
    assert!(life <= Duration::from_secs(30), "signed for --cluster-signing-duration, not a year: {life:?}");

    // A second certificate, signed before the first expires.
    let second = eventually(Duration::from_secs(60), "the certificate rotated", || {
        let now = read_info();
        (now.not_after > first.not_after).then_some(now)
    });
    assert!(second.subject.contains("CN=system:node:rotator") && second.subject.contains("O=system:nodes"));
    let csrs = c.ok(&["get", "csr", "--no-headers"]);
    assert!(
        csrs.lines().any(|l| l.contains("system:node:rotator") && l.contains("Approved,Issued")),
        "the renewal was asked for as the node itself: {csrs}"
    );

    // Past the first certificate's expiry the node still renews its Lease.
    let past_first = first.not_after + Duration::from_secs(2);
    if let Ok(wait) = past_first.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    let renew_time = || c.ok(&["get", "lease", "rotator", "-n", "kube-node-lease", "-o", "jsonpath={.spec.renewTime}"]);
    let before = renew_time();
    eventually(Duration::from_secs(30), "the node's Lease renewed after the first certificate expired", || {
        (renew_time() != before).then_some(())
    });
    let node = c.ok(&["get", "node", "rotator", "--no-headers"]);
    assert_eq!(node.split_whitespace().nth(1), Some("Ready"), "{node}");
}
