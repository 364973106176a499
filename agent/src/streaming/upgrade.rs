//! Opening an SPDY connection to a runtime's streaming server: the HTTP/1.1 `Upgrade:
//! SPDY/3.1` request to the URL that CRI `Exec`/`Attach`/`PortForward` returned, offering
//! stream protocols in `X-Stream-Protocol-Version`. After `101 Switching Protocols` the TCP
//! stream carries SPDY frames.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long connecting and the upgrade handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// An upgraded connection and the stream protocol the server chose.
pub struct Upgraded {
    pub stream: TcpStream,
    pub protocol: String,
}

/// The failure of an upgrade, with the HTTP status the server answered (if it answered).
#[derive(Debug)]
pub struct UpgradeError {
    pub status: Option<u16>,
    pub message: String,
}

impl std::fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Host, port and path of an `http://` URL (pure).
pub fn split_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("streaming URL {url:?} is not http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => {
            (h, p.parse().map_err(|_| format!("port in {url:?}"))?)
        }
        _ => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    Ok((host, port, path.to_string()))
}

/// The status code and `X-Stream-Protocol-Version` of a response head (pure).
pub fn parse_head(head: &str) -> Result<(u16, Option<String>), String> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let code = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let protocol = lines.filter_map(|l| l.split_once(':')).find_map(|(name, value)| {
        name.trim().eq_ignore_ascii_case("x-stream-protocol-version").then(|| value.trim().to_string())
    });
    Ok((code, protocol))
}

/// Upgrades a connection to `url` to SPDY/3.1 offering `protocols`.
pub async fn connect(url: &str, protocols: &[String]) -> Result<Upgraded, UpgradeError> {
    let fail = |message: String| UpgradeError { status: None, message };
    let (host, port, path) = split_url(url).map_err(fail)?;
    let run = async {
        let mut stream =
            TcpStream::connect((host.as_str(), port)).await.map_err(|e| fail(format!("connecting to {url}: {e}")))?;
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n"
        );
        for p in protocols {
            request.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|e| fail(format!("writing to {url}: {e}")))?;
        // Read the head a byte at a time: what follows it is already SPDY and must stay in
        // the stream.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > MAX_HEAD {
                return Err(fail(format!("{url}: response head over {MAX_HEAD} bytes")));
            }
            let b = stream.read_u8().await.map_err(|e| fail(format!("reading from {url}: {e}")))?;
            head.push(b);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let (code, protocol) = parse_head(&head).map_err(fail)?;
        if code != 101 {
            // The runtime explains a refusal in the body; read a little of it.
            let mut body = vec![0u8; 4096];
            let n =
                tokio::time::timeout(Duration::from_secs(1), stream.read(&mut body)).await.ok().and_then(Result::ok);
            let text = String::from_utf8_lossy(&body[..n.unwrap_or(0)]).trim().to_string();
            return Err(UpgradeError { status: Some(code), message: format!("upgrade refused ({code}): {text}") });
        }
        Ok(Upgraded { stream, protocol: protocol.unwrap_or_default() })
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| Err(fail(format!("{url}: no upgrade within {} s", HANDSHAKE_TIMEOUT.as_secs()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split() {
        assert_eq!(
            split_url("http://127.0.0.1:4321/exec/abc").unwrap(),
            ("127.0.0.1".into(), 4321, "/exec/abc".into())
        );
        assert_eq!(split_url("http://[::1]:80/x").unwrap(), ("::1".into(), 80, "/x".into()));
        assert!(split_url("https://h/x").is_err());
    }

    #[test]
    fn heads_parse() {
        let head = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n";
        assert_eq!(parse_head(head).unwrap(), (101, Some("v4.channel.k8s.io".into())));
        assert_eq!(parse_head("HTTP/1.1 404 Not Found\r\n\r\n").unwrap(), (404, None));
        assert!(parse_head("garbage").is_err());
    }
}
