//! kubectl's verbs, one module per verb family. Each module owns its flags (a clap `Args`
//! struct) and an async `run` that talks to the cluster through a [`crate::session::Session`]
//! and prints to an [`crate::Out`].

pub mod apply;
pub mod autoscale;
pub mod delete;
pub mod describe;
pub mod edit;
pub mod exec;
pub mod get;
pub mod info;
pub mod label;
pub mod logs;
pub mod manifest;
pub mod node;
pub mod objects;
pub mod port_forward;
pub mod rollout;
pub mod run;
pub mod scale;
pub mod set;
pub mod token;
pub mod top;
pub mod watch;
