//! `berthctl get` (TODO: being implemented).

use crate::error::{CtlError, Result};
use crate::session::Session;
use crate::Out;

/// Flags of the command.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// TYPE[,TYPE…] [NAME…] or TYPE/NAME…
    pub args: Vec<String>,
}

/// Runs the command.
pub async fn run(_session: &mut Session, _args: GetArgs, _out: &mut Out) -> Result<()> {
    Err(CtlError::usage("not implemented yet"))
}
