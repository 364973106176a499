//! Secrets are encrypted at rest with kube-apiserver's `EncryptionConfiguration`
//! (`k8s:enc:aesgcm:v1:<key>:`): ciphertext through etcdctl and in a snapshot, plaintext
//! through the API; keys rotate the Kubernetes way — new key second, then first, rewrite,
//! remove the old — with the file reloaded while the server serves (no restart).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth_jepsen::procs::Member;
use berth_testkit::blocking::eventually;
use berth_tests::berthctl::run_bounded;
use berth_tests::Etcdctl;

const KEY1: [u8; 32] = [1; 32];
const KEY2: [u8; 32] = [2; 32];
/// base64 of the secret's value, as the API and a plain store would hold it.
const PASSWORD_B64: &str = "aHVudGVyMi1wbGFpbnRleHQ=";

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    let out = run_bounded(cmd, stdin, Duration::from_secs(30));
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

fn secret(name: &str) -> String {
    format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData: {{password: hunter2-plaintext}}\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_ciphertext_in_the_store_and_snapshots_and_keys_rotate_live() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("encryption.yaml");
    std::fs::write(&config, berth_proto::pki::encryption_config(&[("key1", &KEY1)])).unwrap();
    let flag = vec!["--encryption-provider-config".to_string(), config.display().to_string()];
    let mut server = Member::berth("solo", dir.path(), &flag).unwrap();
    server.start().unwrap();
    server.wait_ready(std::time::Instant::now() + Duration::from_secs(30), Duration::from_secs(30)).await.unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    berth_jepsen::pki::write_admin_kubeconfig(&kubeconfig, std::slice::from_ref(&server.api_url)).unwrap();
    let etcdctl = Etcdctl::new(vec![server.client_url.clone()]);
    let raw = |name: &str| etcdctl.ok(&["get", &format!("/registry/secrets/default/{name}"), "--print-value-only"]);

    eventually(Duration::from_secs(30), "the API serves", || {
        kubectl(&kubeconfig, &["get", "ns", "default"], None).ok()
    });
    kubectl(&kubeconfig, &["apply", "-f", "-"], Some(&secret("db"))).unwrap();
    kubectl(&kubeconfig, &["apply", "-f", "-"], Some(&secret("old"))).unwrap();
    // Through the API: the value. In the store: ciphertext under key1, and no plaintext.
    let through_api = kubectl(&kubeconfig, &["get", "secret", "db", "-o", "jsonpath={.data.password}"], None).unwrap();
    assert_eq!(through_api, PASSWORD_B64);
    let stored = raw("db");
    assert!(stored.starts_with("k8s:enc:aesgcm:v1:key1:"), "{stored}");
    assert!(!stored.contains(PASSWORD_B64) && !stored.contains("hunter2"), "{stored}");
    // Other resources stay plain JSON.
    kubectl(&kubeconfig, &["create", "-f", "-"], Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"))
        .unwrap();
    assert!(etcdctl.ok(&["get", "/registry/configmaps/default/c", "--print-value-only"]).starts_with('{'));
    // A snapshot holds the same ciphertext.
    let backup = dir.path().join("backup.db");
    etcdctl.ok(&["snapshot", "save", &backup.display().to_string()]);
    let bytes = std::fs::read(&backup).unwrap();
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(has("k8s:enc:aesgcm:v1:key1:"), "the snapshot holds the encrypted Secrets");
    assert!(!has(PASSWORD_B64) && !has("hunter2-plaintext"), "no plaintext in the snapshot");

    // Rotation, live. 1: key2 added second (every server could now read it), 2: first.
    std::fs::write(&config, berth_proto::pki::encryption_config(&[("key1", &KEY1), ("key2", &KEY2)])).unwrap();
    std::fs::write(&config, berth_proto::pki::encryption_config(&[("key2", &KEY2), ("key1", &KEY1)])).unwrap();
    kubectl(&kubeconfig, &["apply", "-f", "-"], Some(&secret("probe"))).unwrap();
    let mut writes = 0;
    eventually(Duration::from_secs(30), "new writes under key2", || {
        writes += 1;
        let touched = format!("touched={writes}");
        kubectl(&kubeconfig, &["annotate", "secret", "probe", "--overwrite", &touched], None).ok()?;
        raw("probe").starts_with("k8s:enc:aesgcm:v1:key2:").then_some(())
    });
    assert!(raw("db").starts_with("k8s:enc:aesgcm:v1:key1:"), "untouched Secrets keep key1 until rewritten");
    assert_eq!(
        kubectl(&kubeconfig, &["get", "secret", "db", "-o", "jsonpath={.data.password}"], None).unwrap(),
        PASSWORD_B64
    );
    // 3: rewrite (Kubernetes' `kubectl get secrets -o json | kubectl replace -f -`), here db only.
    let json = kubectl(&kubeconfig, &["get", "secret", "db", "-o", "json"], None).unwrap();
    kubectl(&kubeconfig, &["replace", "-f", "-"], Some(&json)).unwrap();
    assert!(raw("db").starts_with("k8s:enc:aesgcm:v1:key2:"), "{}", raw("db"));
    // 4: key1 removed. The rewritten Secret reads; the one left under key1 fails, naming it.
    std::fs::write(&config, berth_proto::pki::encryption_config(&[("key2", &KEY2)])).unwrap();
    let error = eventually(Duration::from_secs(30), "key1 gone", || {
        kubectl(&kubeconfig, &["get", "secret", "old", "-o", "name"], None).err()
    });
    assert!(error.contains("key1") && error.contains("no longer has"), "{error}");
    assert_eq!(
        kubectl(&kubeconfig, &["get", "secret", "db", "-o", "jsonpath={.data.password}"], None).unwrap(),
        PASSWORD_B64
    );

    // A file that does not parse is refused and the configuration in use kept.
    std::fs::write(&config, "kind: Nonsense\n").unwrap();
    eventually(Duration::from_secs(30), "the bad file is logged", || {
        let log = std::fs::read_to_string(&server.log).ok()?;
        log.contains("keeping the encryption configuration in use").then_some(())
    });
    kubectl(&kubeconfig, &["apply", "-f", "-"], Some(&secret("after"))).unwrap();
    assert!(raw("after").starts_with("k8s:enc:aesgcm:v1:key2:"));
}
