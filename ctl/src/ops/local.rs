//! `berthctl up and down` (TODO: being implemented).

use crate::error::{CtlError, Result};
use crate::session::Session;
use crate::Out;

/// Flags of the command.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs the command.
pub async fn run_up(_session: &mut Session, _args: UpArgs, _out: &mut Out) -> Result<()> {
    Err(CtlError::usage("not implemented yet"))
}

/// Flags of the command.
#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// Arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs the command.
pub async fn run_down(_session: &mut Session, _args: DownArgs, _out: &mut Out) -> Result<()> {
    Err(CtlError::usage("not implemented yet"))
}
