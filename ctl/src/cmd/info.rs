//! `berthctl api-resources, version, cluster-info` (TODO: being implemented).

use crate::error::{CtlError, Result};
use crate::session::Session;
use crate::Out;

/// Flags of the command.
#[derive(Debug, clap::Args)]
pub struct ApiResourcesArgs {
    /// Arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs the command.
pub async fn run_api_resources(_session: &mut Session, _args: ApiResourcesArgs, _out: &mut Out) -> Result<()> {
    Err(CtlError::usage("not implemented yet"))
}

/// Flags of the command.
#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    /// Arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs the command.
pub async fn run_version(_session: &mut Session, _args: VersionArgs, _out: &mut Out) -> Result<()> {
    Err(CtlError::usage("not implemented yet"))
}

/// Flags of the command.
#[derive(Debug, clap::Args)]
pub struct ClusterInfoArgs {
    /// Arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs the command.
pub async fn run_cluster_info(_session: &mut Session, _args: ClusterInfoArgs, _out: &mut Out) -> Result<()> {
    Err(CtlError::usage("not implemented yet"))
}
