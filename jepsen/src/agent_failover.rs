//! Agent failover as a node feels it: `kill -9` of the server a real `berth-agent` is
//! talking to, then the time until the agent's first response from another server.
//!
//! The agent (one hollow node, `--runtime fake`) is given one server and learns the rest
//! from the identity Leases. Its load balancer logs `first response through the new API
//! server` when the first bytes come back through the server that replaced a dead one; the
//! benchmark takes that line's timestamp minus the wall-clock time of the kill (same
//! machine, same clock), so the figure includes noticing the death, the dial failover and
//! the request itself. The agent's own `outage_ms` (from its first failed dial or probe to
//! that response) is reported beside it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;

use crate::agents::recovered_line;
use crate::control_bench::{client, err, start_servers, until, wait_nodes_ready, BenchResult};
use crate::procs::berth_agent_binary;

#[derive(Debug, Clone)]
pub struct AgentFailoverConfig {
    pub servers: usize,
    pub trials: usize,
}

/// Latencies of one run, in ms: kill → first response elsewhere, and the agent's own view.
pub struct AgentFailoverReport {
    pub servers: usize,
    pub from_kill: Histogram<u64>,
    pub agent_outage: Histogram<u64>,
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn recoveries(log: &Path) -> Vec<(Timestamp, String, u64)> {
    std::fs::read_to_string(log).unwrap_or_default().lines().filter_map(recovered_line).collect()
}

/// Runs `cfg.trials` kills of the agent's current server (restarted after each).
pub async fn agent_failover(dir: &Path, cfg: &AgentFailoverConfig) -> BenchResult<AgentFailoverReport> {
    let mut cluster = start_servers(dir, cfg.servers, &[]).await?;
    let urls: Vec<String> = cluster.members.iter().map(|m| m.api_url.clone()).collect();
    let log = dir.join("agent.log");
    let file = std::fs::File::create(&log)?;
    let kubeconfig = crate::pki::write_hollow_kubeconfig(dir, "hollow", &urls)?;
    let child = Command::new(berth_agent_binary()?)
        .args(["--server", &urls[0], "--node-name", "hollow", "--runtime", "fake", "--fake-nodes", "1"])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--listen-port", "0", "--node-ip", "127.0.0.1", "--lease-seconds", "2"])
        .args(["--log-level", "warn,berth_agent::balancer=info"])
        .arg("--data-dir")
        .arg(dir.join("agent"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()?;
    let _agent = Agent(child);
    let observer = client(&urls[cfg.servers - 1])?;
    wait_nodes_ready(&observer, 1, Duration::from_secs(60)).await?;
    until(Duration::from_secs(30), "the agent learning every server", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("API servers discovered").then_some(())
    })
    .await?;
    let mut report = AgentFailoverReport {
        servers: cfg.servers,
        from_kill: Histogram::new(3).expect("histogram"),
        agent_outage: Histogram::new(3).expect("histogram"),
    };
    let mut current = urls[0].clone();
    for trial in 0..cfg.trials {
        let victim = urls.iter().position(|u| *u == current).ok_or_else(|| err(format!("unknown server {current}")))?;
        let seen = recoveries(&log).len();
        let killed_at = Timestamp::try_from(SystemTime::now()).map_err(err)?;
        cluster.members[victim].kill();
        let (when, server, outage_ms) =
            until(Duration::from_secs(30), "the agent's first response elsewhere", || async {
                recoveries(&log).into_iter().nth(seen)
            })
            .await?;
        let from_kill = (when.as_millisecond() - killed_at.as_millisecond()).max(0) as u64;
        report.from_kill.record(from_kill).ok();
        report.agent_outage.record(outage_ms).ok();
        println!(
            "trial {:>2}: killed {} (the agent's server); first response through {server} after {from_kill:>5} ms \
             (agent's outage {outage_ms} ms)",
            trial + 1,
            cluster.members[victim].name,
        );
        current = server;
        cluster.members[victim].start()?;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        cluster.members[victim].wait_ready(deadline, Duration::from_secs(60)).await?;
        // The restarted server publishes its identity again before the next kill (so the
        // agent keeps it in its list), as a renewal newer than its restart shows.
        let restarted = Timestamp::try_from(SystemTime::now()).map_err(err)?;
        let lease_name = format!("{}{}", berth_proto::identity::LEASE_PREFIX, cluster.members[victim].name);
        let leases: kube::Api<Lease> =
            kube::Api::namespaced(observer.clone(), berth_proto::identity::IDENTITY_NAMESPACE);
        until(Duration::from_secs(30), "the restarted server's identity renewed", || async {
            let lease = leases.get_opt(&lease_name).await.ok().flatten()?;
            let renewed = lease.spec?.renew_time?.0;
            (renewed >= restarted).then_some(())
        })
        .await?;
    }
    Ok(report)
}

fn percentile(h: &Histogram<u64>, q: f64) -> u64 {
    h.value_at_quantile(q)
}

impl AgentFailoverReport {
    pub fn print(&self) {
        println!();
        println!(
            "agent failover, {} servers, {} trials (ms)    p50      p99      max",
            self.servers,
            self.from_kill.len()
        );
        for (what, h) in
            [("kill -> first response elsewhere", &self.from_kill), ("agent's own outage", &self.agent_outage)]
        {
            println!("  {what:<34} {:>6} {:>8} {:>8}", percentile(h, 0.5), percentile(h, 0.99), h.max());
        }
        println!("  Kubernetes anchors: node lease 40 s, node-monitor-grace-period 40 s, leader-election lease 15 s");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recovery_line_is_parsed() {
        let line =
            "2026-12-05T04:42:48.123456Z  INFO berth_agent::balancer: first response through the new API server \
                    server=http://127.0.0.1:16443 outage_ms=231";
        let (when, server, outage) = recovered_line(line).unwrap();
        assert_eq!(when.as_millisecond() % 1000, 123);
        assert_eq!(server, "http://127.0.0.1:16443");
        assert_eq!(outage, 231);
        assert!(recovered_line("2026-12-05T04:42:48Z  WARN berth_agent::balancer: API server failover").is_none());
    }
}
