//! The `berth-agent` binary: bad flags exit 2 naming the flag; `--fake-nodes` registers
//! hollow nodes against a control plane and stops on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use berth_control::testing::Server;
use berth_testkit::eventually;
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::Api;

const BIN: &str = env!("CARGO_BIN_EXE_berth-agent");

fn run(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let base = ["--server", "http://127.0.0.1:1", "--node-name", "n1"];
    for (extra, flag) in [
        (vec!["--labels", "novalue"], "--labels"),
        (vec!["--register-with-taints", "k=v:Sometimes"], "--register-with-taints"),
        (vec!["--node-ip", "not-an-ip"], "--node-ip"),
        (vec!["--runtime", "docker"], "--runtime"),
        (vec!["--lease-seconds", "0"], "--lease-seconds"),
        (vec!["--fake-nodes", "3"], "--fake-nodes"),
        (vec!["--capacity", "cpu=lots"], "--capacity"),
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let (code, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
    let (code, stderr) = run(&["--node-name", "n1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--server"), "{stderr}");
    let (code, stderr) = run(&["--server", "http://127.0.0.1:1", "--node-name", "Not_A_Name"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--node-name"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_binary_registers_nodes_and_stops_on_sigterm() {
    let mut cp = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    berth_control::testing::write_kubeconfig(
        &kubeconfig,
        &[&cp.api_url],
        // One process acting for three nodes: no single node identity covers it (see
        // `berth_jepsen::pki::write_hollow_kubeconfig`).
        &berth_control::testing::credentials("berth-hollow-nodes", &["system:masters"]),
    );
    let mut child = tokio::process::Command::new(BIN)
        .args(["--server", &cp.api_url, "--node-name", "bin", "--runtime", "fake", "--fake-nodes", "3"])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--listen-port", "0", "--node-ip", "127.0.0.1", "--lease-seconds", "1", "--log-level", "warn"])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let nodes: Api<Node> = Api::all(cp.client());
    eventually(Duration::from_secs(30), "3 nodes from the binary", || async {
        let l = nodes.list(&ListParams::default()).await.ok()?;
        let names: Vec<String> = l.items.into_iter().filter_map(|n| n.metadata.name).collect();
        (["bin-0", "bin-1", "bin-2"].iter().all(|n| names.iter().any(|m| m == n))).then_some(())
    })
    .await;
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("exits on SIGTERM").unwrap();
    assert!(status.success(), "{status}");
    cp.stop().await;
}
