//! The `berthctl` command line: kubectl's verbs and global flags, plus Berth's own
//! cluster-operation commands. Each verb's flags live next to its implementation in
//! [`crate::cmd`] or [`crate::ops`]; this module only assembles them.

use clap::{Parser, Subcommand};

use crate::cmd;
use crate::config::GlobalArgs;
use crate::ops;

/// berthctl controls a Berth cluster: kubectl's verbs, plus the replicated control plane itself.
#[derive(Debug, Parser)]
#[command(name = "berthctl", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Display one or many resources.
    Get(cmd::get::GetArgs),
    /// Show details of a specific resource or group of resources.
    Describe(cmd::describe::DescribeArgs),
    /// Apply a configuration to a resource by file name or stdin.
    Apply(cmd::apply::ApplyArgs),
    /// Create a resource from a file or from stdin, or a deployment by name.
    Create(cmd::apply::CreateArgs),
    /// Run a particular image on the cluster (a pod).
    Run(cmd::run::RunArgs),
    /// Take a deployment, replica set, pod or service and expose it as a new Service.
    Expose(cmd::run::ExposeArgs),
    /// Delete resources by file names, stdin, resources and names, or by resources and label selector.
    Delete(cmd::delete::DeleteArgs),
    /// Edit a resource on the server with $EDITOR.
    Edit(cmd::edit::EditArgs),
    /// Set a new size for a deployment, replica set or stateful set.
    Scale(cmd::scale::ScaleArgs),
    /// Auto-scale a deployment, replica set or stateful set (creates a HorizontalPodAutoscaler).
    Autoscale(cmd::autoscale::AutoscaleArgs),
    /// Set specific features on objects.
    Set(cmd::set::SetArgs),
    /// Update the labels on a resource.
    Label(cmd::label::LabelArgs),
    /// Update the annotations on a resource.
    Annotate(cmd::label::AnnotateArgs),
    /// Update the taints on one or more nodes.
    Taint(cmd::node::TaintArgs),
    /// Mark node as unschedulable.
    Cordon(cmd::node::CordonArgs),
    /// Mark node as schedulable.
    Uncordon(cmd::node::CordonArgs),
    /// Drain node in preparation for maintenance.
    Drain(cmd::node::DrainArgs),
    /// Manage the rollout of a resource.
    Rollout(cmd::rollout::RolloutArgs),
    /// Print the logs for a container in a pod.
    Logs(cmd::logs::LogsArgs),
    /// Execute a command in a container.
    Exec(cmd::exec::ExecArgs),
    /// Forward one or more local ports to a pod.
    PortForward(cmd::port_forward::PortForwardArgs),
    /// Display resource (CPU/memory) usage.
    Top(cmd::top::TopArgs),
    /// Print the supported API resources on the server.
    ApiResources(cmd::info::ApiResourcesArgs),
    /// Print the client and server version information.
    Version(cmd::info::VersionArgs),
    /// Display cluster information.
    ClusterInfo(cmd::info::ClusterInfoArgs),
    /// Output shell completion code for the specified shell (bash or zsh).
    Completion(CompletionArgs),
    /// Berth's replicated control plane: servers, Raft leader, indexes, leader tasks.
    Cluster(ops::cluster::ClusterArgs),
    /// List, add, remove and promote members of the replicated store.
    Member(ops::member::MemberArgs),
    /// Consistent backups of the replicated store.
    Snapshot(ops::snapshot::SnapshotArgs),
    /// Manage bootstrap tokens (join nodes with `--print-join-command`).
    Token(cmd::token::TokenArgs),
    /// The cluster's certificates (one CA for the servers of a new cluster).
    Certs(ops::certs::CertsArgs),
    /// Start a local cluster (servers + agents on loopback) in the background.
    Up(ops::local::UpArgs),
    /// Stop the local cluster started by `berthctl up`.
    Down(ops::local::DownArgs),
}

/// `completion bash|zsh`.
#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell: bash or zsh.
    pub shell: String,
}
