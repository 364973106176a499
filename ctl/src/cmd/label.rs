//! `berthctl label and annotate` (TODO: being implemented).

use crate::error::{CtlError, Result};
use crate::session::Session;
use crate::Out;

/// Flags of the command.
#[derive(Debug, clap::Args)]
pub struct LabelArgs {
    /// Arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs the command.
pub async fn run_label(_session: &mut Session, _args: LabelArgs, _out: &mut Out) -> Result<()> {
    Err(CtlError::usage("not implemented yet"))
}

/// Flags of the command.
#[derive(Debug, clap::Args)]
pub struct AnnotateArgs {
    /// Arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs the command.
pub async fn run_annotate(_session: &mut Session, _args: AnnotateArgs, _out: &mut Out) -> Result<()> {
    Err(CtlError::usage("not implemented yet"))
}
