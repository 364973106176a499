//! `berthctl apply and create` (TODO: being implemented).

use crate::error::{CtlError, Result};
use crate::session::Session;
use crate::Out;

/// Flags of the command.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs the command.
pub async fn run_apply(_session: &mut Session, _args: ApplyArgs, _out: &mut Out) -> Result<()> {
    Err(CtlError::usage("not implemented yet"))
}

/// Flags of the command.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs the command.
pub async fn run_create(_session: &mut Session, _args: CreateArgs, _out: &mut Out) -> Result<()> {
    Err(CtlError::usage("not implemented yet"))
}
