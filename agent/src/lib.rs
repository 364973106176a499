//! `berth-agent`: the Berth node agent.
//!
//! An agent registers its [`Node`](k8s_openapi::api::core::v1::Node), renews its Lease and
//! posts node conditions ([`node`]); watches the pods bound to it ([`watch`]) and converges
//! them with a [`runtime::Runtime`] through per-node workers ([`worker`]) whose decisions
//! come from the pure [`sync::plan`], with probe results from [`prober`] and volumes from
//! [`volumes`]; and serves container logs and a stats summary on a kubelet-style endpoint
//! ([`server`]). [`Agent::run`] runs one real node; [`hollow::run`] runs many fake-runtime
//! nodes in one process for scale tests. Every API connection goes through the
//! [`balancer`], which fails over between the servers of an HA cluster. The binary only
//! parses flags ([`cli`]).

pub mod api_client;
pub mod balancer;
pub mod bootstrap;
pub mod cli;
pub mod command;
pub mod config;
pub mod dns;
pub mod endpoint_auth;
pub mod error;
pub mod events;
pub mod hollow;
pub mod hooks;
pub mod host;
pub mod ingress;
pub mod node;
pub mod podnet;
pub mod prober;
pub mod proxy;
pub mod runtime;
pub mod sa_token;
pub mod server;
pub mod service_view;
pub mod streaming;
pub mod sync;
pub mod volumes;
pub mod watch;
pub mod worker;

mod agent;

pub use agent::Agent;
pub use config::{AgentConfig, Capacity, CriOptions, Heartbeat, HollowConfig, NodeTemplate, RuntimeKind};
pub use error::{AgentError, Result};
