//! Loopback ports for servers a test starts on a fixed address.

/// A loopback port that was free a moment ago: for a server that must come back on the
/// same address after a restart, or a flag that needs a port number. Prefer binding port 0
/// and keeping the listener where the code under test accepts one.
///
/// Processes started by the black-box harness get their ports from
/// `berth_jepsen::procs::free_port` instead, which reserves them machine-wide.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("binding 127.0.0.1:0").port()
}
