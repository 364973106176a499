//! External commands the agent's networking runs (`ip`, `nft`): each bounded in time, its
//! failure carrying the command line and its stderr.

use std::time::Duration;

/// `ip` and `nft` answer in milliseconds, even for a large ruleset; the bound only
/// matters if one hangs.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `program args…` with `input` on stdin; Ok(stdout), or Err(command line: stderr).
pub async fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
    use tokio::io::AsyncWriteExt;
    let line = format!("{program} {}", args.join(" "));
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(if input.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{line}: {e}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).await.map_err(|e| format!("{line}: {e}"))?;
    }
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("{line}: no answer within {COMMAND_TIMEOUT:?}"))?
        .map_err(|e| format!("{line}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{line}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Whether nftables table `ip NAME` exists.
pub async fn nft_table_exists(name: &str) -> Result<bool, String> {
    let tables = run("nft", &["list", "tables", "ip"], None).await?;
    Ok(tables.lines().any(|l| l.trim() == format!("table ip {name}")))
}

/// Deletes nftables table `ip NAME` if it exists.
pub async fn delete_nft_table(name: &str) -> Result<(), String> {
    if nft_table_exists(name).await? {
        run("nft", &["delete", "table", "ip", name], None).await?;
    }
    Ok(())
}
