//! The agent's kube-rs client, assembled here from the parts kube-rs builds its own from
//! (hyper-rustls over a timed connector, kube-rs's base-URI, auth and header layers) for
//! one reason: the node's client certificate is a [`ReloadableCert`], so rotating it
//! while the agent runs ([`crate::bootstrap::keep_certificate_fresh`]) takes effect on
//! the next handshake without rebuilding the client every task holds a clone of.

use std::sync::Arc;

use berth_proto::tls::ReloadableCert;
use hyper_rustls::FixedServerNameResolver;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use tower::ServiceBuilder;

use crate::error::{AgentError, Result};

/// A client for `config`; with `identity`, TLS handshakes present its current certificate
/// instead of the kubeconfig's.
pub fn build(config: &kube::Config, identity: Option<Arc<ReloadableCert>>) -> Result<kube::Client> {
    let failed = |e: &dyn std::fmt::Display| AgentError::Config {
        flag: "--kubeconfig",
        message: format!("building the API client: {e}"),
    };
    let mut tls = config.rustls_client_config().map_err(|e| failed(&e))?;
    if let Some(identity) = identity {
        tls.client_auth_cert_resolver = identity;
        // A resumed TLS session keeps the identity of the handshake it resumes: after a
        // rotation, connections resumed from tickets of the old certificate would still be
        // the old certificate to the servers (and refused once it expires).
        tls.resumption = rustls::client::Resumption::disabled();
    }
    let mut https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| failed(&e))?;
        https = https.with_server_name_resolver(FixedServerNameResolver::new(name));
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let mut connector = hyper_timeout::TimeoutConnector::new(https.enable_http1().wrap_connector(http));
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let http_client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().map_err(|e| failed(&e))?)
        .layer(config.extra_headers_layer().map_err(|e| failed(&e))?)
        .map_err(tower::BoxError::from)
        .service(http_client);
    Ok(kube::Client::new(service, config.default_namespace.clone()))
}
