//! `berthctl token create|list|delete`: bootstrap tokens for joining nodes, as `kubeadm
//! token` makes them — a Secret `kube-system/bootstrap-token-<id>` — and
//! `--print-join-command` prints the agent's join command with the CA pin
//! (`--discovery-token-ca-cert-hash sha256:…`, the hash of the kubeconfig's CA).

use berth_proto::bootstrap_token::{self as bt, Token};
use http::Method;
use serde_json::{json, Value};

use crate::cmd::objects::{call, Request};
use crate::error::{CtlError, Result};
use crate::session::Session;
use crate::Out;

/// Flags of `token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a bootstrap token on the server.
    Create(CreateArgs),
    /// List the bootstrap tokens on the server.
    List,
    /// Delete bootstrap tokens (by id or whole token).
    Delete {
        /// Token ids (`abcdef`) or tokens (`abcdef.0123456789abcdef`).
        #[arg(required = true)]
        tokens: Vec<String>,
    },
}

/// Flags of `token create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The token to create (`[a-z0-9]{6}.[a-z0-9]{16}`); a random one if omitted.
    pub token: Option<String>,
    /// How long the token is valid (`0` never expires), as kubeadm's `--ttl`.
    #[arg(long, default_value = "24h")]
    pub ttl: String,
    /// A human description of the token's use.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Extra groups the token authenticates with (each under `system:bootstrappers:`).
    #[arg(long, value_delimiter = ',', default_value = bt::DEFAULT_NODE_GROUP)]
    pub groups: Vec<String>,
    /// Print the whole `berth-agent` join command instead of the token alone (with
    /// --control-plane: the `berth-server` one).
    #[arg(long)]
    pub print_join_command: bool,
    /// A token for joining servers: it may also read the cluster's CAs and keys.
    #[arg(long)]
    pub control_plane: bool,
}

fn secrets_path(name: Option<&str>) -> String {
    let base = format!("/api/v1/namespaces/{}/secrets", bt::NAMESPACE);
    match name {
        Some(n) => format!("{base}/{n}"),
        None => base,
    }
}

/// The expiration of a token created now with `ttl` (`None`: never), RFC 3339.
pub fn expiration(ttl: &str, now: chrono::DateTime<chrono::Utc>) -> Result<Option<String>> {
    let duration = berth_proto::model::duration::parse_go_duration(ttl)
        .ok_or_else(|| CtlError::usage(format!("invalid argument {ttl:?} for \"--ttl\" flag: not a duration")))?;
    if duration.is_zero() {
        return Ok(None);
    }
    let at = now + chrono::Duration::from_std(duration).map_err(|e| CtlError::usage(format!("--ttl: {e}")))?;
    Ok(Some(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
}

/// The join command for `token` against `server` with CA pin `hash` (kubeadm's
/// `kubeadm join … --token … --discovery-token-ca-cert-hash …`).
pub fn join_command(server: &str, token: &Token, hash: &str) -> String {
    format!("berth-agent --server {server} --token {token} --discovery-token-ca-cert-hash {hash}")
}

/// The `berth-server` join command for `token` (add `--name`, `--data-dir` and the
/// listen URLs of the new server): it joins through `member`'s client URL and fetches the
/// cluster's secrets from `server`'s API.
pub fn server_join_command(member: &str, server: &str, token: &Token, hash: &str) -> String {
    format!(
        "berth-server --join {member} --discovery-server {server} --token {token} --discovery-token-ca-cert-hash {hash}"
    )
}

/// Runs `token`.
pub async fn run(s: &mut Session, args: TokenArgs, out: &mut Out) -> Result<()> {
    match args.command {
        TokenCommand::Create(a) => create(s, a, out).await,
        TokenCommand::List => list(s, out).await,
        TokenCommand::Delete { tokens } => delete(s, &tokens, out).await,
    }
}

async fn create(s: &mut Session, args: CreateArgs, out: &mut Out) -> Result<()> {
    let token = match &args.token {
        Some(text) => Token::parse(text).ok_or_else(|| {
            CtlError::usage(format!(
                "the bootstrap token {text:?} was not of the form \"\\\\A([a-z0-9]{{6}})\\\\.([a-z0-9]{{16}})\\\\z\""
            ))
        })?,
        None => Token::generate(),
    };
    for group in &args.groups {
        if !group.starts_with("system:bootstrappers:") {
            return Err(CtlError::usage(format!(
                "--groups: {group:?} is not a bootstrap group: it must start with \"system:bootstrappers:\""
            )));
        }
    }
    let expiration = expiration(&args.ttl, chrono::Utc::now())?;
    let mut groups = args.groups.clone();
    if args.control_plane {
        groups.push(bt::CONTROL_PLANE_GROUP.to_string());
    }
    let data = bt::secret_data(&token, expiration.as_deref(), &groups, &args.description);
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": bt::SECRET_TYPE,
        "metadata": {"name": token.secret_name(), "namespace": bt::NAMESPACE},
        "stringData": data,
    });
    call(s, Request::new(Method::POST, secrets_path(None)).body("application/json", secret)).await?;
    let line = if args.print_join_command {
        let target = s.target()?;
        let server =
            target.api_servers.first().cloned().ok_or_else(|| CtlError::usage("no API server in the kubeconfig"))?;
        let ca = target.ca_pem().ok_or_else(|| {
            CtlError::usage(
                "the kubeconfig has no cluster CA to pin (an --insecure cluster has none to join with a token)",
            )
        })?;
        let hash =
            berth_proto::pki::ca_cert_hash(&ca).map_err(|e| CtlError::usage(format!("the kubeconfig's CA: {e}")))?;
        if args.control_plane {
            let member =
                target.etcd_endpoints.first().cloned().ok_or_else(|| {
                    CtlError::usage("the kubeconfig names no etcd endpoint of a member to join through")
                })?;
            server_join_command(&member, &server, &token, &hash)
        } else {
            join_command(&server, &token, &hash)
        }
    } else {
        token.to_string()
    };
    crate::emit(out, &format!("{line}\n"))
}

/// kubeadm's `token list` table: TOKEN TTL EXPIRES USAGES DESCRIPTION EXTRA GROUPS.
pub fn list_table(secrets: &[Value], now: chrono::DateTime<chrono::Utc>) -> String {
    let value = |s: &Value, k: &str| {
        use base64::Engine;
        s.pointer(&format!("/data/{k}"))
            .and_then(Value::as_str)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default()
    };
    let mut rows =
        vec![["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"].map(String::from).to_vec()];
    for s in secrets.iter().filter(|s| s["type"] == bt::SECRET_TYPE) {
        let token = format!("{}.{}", value(s, "token-id"), value(s, "token-secret"));
        let expires = value(s, "expiration");
        let ttl = chrono::DateTime::parse_from_rfc3339(&expires)
            .map(|t| berth_proto::model::duration::human_duration(t.with_timezone(&chrono::Utc) - now))
            .unwrap_or_else(|_| "<forever>".into());
        let usages: Vec<&str> = ["authentication", "signing"]
            .into_iter()
            .filter(|u| value(s, &format!("usage-bootstrap-{u}")) == "true")
            .collect();
        let or_none = |v: String| if v.is_empty() { "<none>".to_string() } else { v };
        rows.push(vec![
            token,
            ttl,
            if expires.is_empty() { "<never>".into() } else { expires },
            usages.join(","),
            or_none(value(s, "description")),
            or_none(value(s, "auth-extra-groups")),
        ]);
    }
    let widths: Vec<usize> = (0..6).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            format!("{}\n", cells.join("   ").trim_end())
        })
        .collect()
}

async fn list(s: &mut Session, out: &mut Out) -> Result<()> {
    let listed = call(s, Request::get(secrets_path(None))).await?;
    let items = listed["items"].as_array().cloned().unwrap_or_default();
    crate::emit(out, &list_table(&items, chrono::Utc::now()))
}

async fn delete(s: &mut Session, tokens: &[String], out: &mut Out) -> Result<()> {
    for text in tokens {
        let id = text.split_once('.').map_or(text.as_str(), |(id, _)| id);
        let name = format!("{}{id}", bt::SECRET_PREFIX);
        call(s, Request::new(Method::DELETE, secrets_path(Some(&name)))).await.map_err(|e| {
            if e.is_not_found() {
                CtlError::usage(format!("bootstrap token {id:?} not found"))
            } else {
                e
            }
        })?;
        crate::emit(out, &format!("bootstrap token {id:?} deleted\n"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_and_join_command_read_as_kubeadm_writes_them() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(expiration("24h", now).unwrap().as_deref(), Some("2026-12-07T10:00:00Z"));
        assert_eq!(expiration("0", now).unwrap(), None);
        assert!(expiration("tomorrow", now).is_err());
        let token = Token::parse("abcdef.0123456789abcdef").unwrap();
        assert_eq!(
            join_command("https://10.0.0.1:6443", &token, "sha256:ab"),
            "berth-agent --server https://10.0.0.1:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:ab"
        );
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let secret = json!({"type": bt::SECRET_TYPE, "data": {
            "token-id": b64("abcdef"), "token-secret": b64("0123456789abcdef"),
            "usage-bootstrap-authentication": b64("true"), "usage-bootstrap-signing": b64("true"),
            "expiration": b64("2026-12-07T10:00:00Z"), "auth-extra-groups": b64(bt::DEFAULT_NODE_GROUP)}});
        let table = list_table(&[secret], now);
        let row = table.lines().nth(1).unwrap();
        assert!(row.starts_with("abcdef.0123456789abcdef   24h   2026-12-07T10:00:00Z"), "{table}");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[3..], ["authentication,signing", "<none>", bt::DEFAULT_NODE_GROUP], "{table}");
    }
}
