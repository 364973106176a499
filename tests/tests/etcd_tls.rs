//! The store's ports are TLS with client-certificate authentication, as etcd's
//! `--client-cert-auth` and `--peer-client-cert-auth`: etcdctl works with an etcd client
//! certificate and is refused without one; a certificate from the API's CA (a kubectl
//! administrator's) opens neither etcd port; plain HTTP and garbage get nowhere and leave
//! the ports serving.

use std::io::{Read, Write};
use std::time::Duration;

use berth_tests::{berth_cluster, https_get, Etcdctl};

#[tokio::test(flavor = "multi_thread")]
async fn etcd_ports_admit_only_certificates_from_the_etcd_ca() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = berth_cluster(3, dir.path()).await;
    let endpoints = cluster.endpoints();
    assert!(endpoints.iter().all(|e| e.starts_with("https://")), "{endpoints:?}");
    let etcd = berth_jepsen::pki::etcd_client();
    let api_admin = berth_jepsen::pki::admin();

    // etcdctl with the etcd client certificate: reads and writes through any member.
    let ctl = Etcdctl::new(endpoints.clone());
    assert_eq!(ctl.ok(&["put", "k", "v"]).trim(), "OK");
    assert_eq!(ctl.ok(&["get", "k", "--print-value-only"]).trim(), "v");
    // Without one: refused, and nothing is written.
    let bare = Etcdctl::new(vec![endpoints[0].clone()]).without_certificate();
    let refused = bare.output(&["put", "k", "stolen", "--dial-timeout=3s", "--command-timeout=5s"]);
    assert!(!refused.status.success(), "{}", String::from_utf8_lossy(&refused.stdout));
    assert_eq!(ctl.ok(&["get", "k", "--print-value-only"]).trim(), "v");

    // The HTTP endpoints of the client port follow the same rule.
    let client_url = &endpoints[1];
    let (status, body) = https_get(client_url, "/health", &etcd.ca_pem, Some(etcd)).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"health\":\"true\""), "{body}");
    let anonymous = https_get(client_url, "/health", &etcd.ca_pem, None);
    assert!(anonymous.is_err(), "no certificate: {anonymous:?}");
    let from_api_ca = https_get(client_url, "/health", &etcd.ca_pem, Some(api_admin));
    assert!(from_api_ca.is_err(), "the API CA's admin certificate: {from_api_ca:?}");

    // The peer port: only members get in.
    let peer_url = &cluster.members[2].peer_url;
    assert!(peer_url.starts_with("https://"), "{peer_url}");
    assert!(https_get(peer_url, "/", &etcd.ca_pem, None).is_err(), "peer port without a certificate");
    assert!(https_get(peer_url, "/", &etcd.ca_pem, Some(api_admin)).is_err(), "peer port, API CA");

    // Plain HTTP and garbage get no answer and stop nothing.
    for url in [client_url, peer_url] {
        let host = url.trim_start_matches("https://");
        let mut tcp = std::net::TcpStream::connect(host).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let _ = tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n\x16\x03\x01\x00\x05garbage");
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer);
        assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"), "{url} answered plain HTTP");
    }
    let (status, _) = https_get(client_url, "/health", &etcd.ca_pem, Some(etcd)).unwrap();
    assert_eq!(status, 200, "the port still serves");
    assert_eq!(ctl.ok(&["put", "k2", "v2"]).trim(), "OK", "the members still replicate");
}
