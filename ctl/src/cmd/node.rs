//! `berthctl taint, cordon, uncordon, drain` (TODO: being implemented).

use crate::error::{CtlError, Result};
use crate::session::Session;
use crate::Out;

/// Flags of the command.
#[derive(Debug, clap::Args)]
pub struct TaintArgs {
    /// Arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs the command.
pub async fn run_taint(_session: &mut Session, _args: TaintArgs, _out: &mut Out) -> Result<()> {
    Err(CtlError::usage("not implemented yet"))
}

/// Flags of the command.
#[derive(Debug, clap::Args)]
pub struct CordonArgs {
    /// Arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Flags of the command.
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// Arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs the command.
pub async fn run_drain(_session: &mut Session, _args: DrainArgs, _out: &mut Out) -> Result<()> {
    Err(CtlError::usage("not implemented yet"))
}

/// Runs cordon (`true`) or uncordon.
pub async fn run_cordon(_session: &mut Session, _args: CordonArgs, _cordon: bool, _out: &mut Out) -> Result<()> {
    Err(CtlError::usage("not implemented yet"))
}
