//! Bridges an exec or attach session between the client's WebSocket, in the Kubernetes
//! channel protocol (`v5.channel.k8s.io` or `v4.channel.k8s.io`: every binary message starts
//! with its channel — 0 stdin, 1 stdout, 2 stderr, 3 error/status, 4 resize; v5 adds 255,
//! "close channel N", which half-closes stdin), and the runtime's streaming server over SPDY
//! (`v4.channel.k8s.io`: one SPDY stream per channel, stdin half-closed with FIN). This is
//! what the kube-apiserver's stream translator does between kubectl and a kubelet.

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::spdy::{self, Frame, HeaderWriter};
use super::upgrade::Upgraded;
use crate::runtime::StreamOptions;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5: `[CLOSE, channel]` closes the client's side of `channel`.
pub const CLOSE: u8 = 255;

/// The WebSocket channel protocols served, best first.
pub const WEBSOCKET_PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// What the agent asks of the runtime's SPDY server.
pub const SPDY_PROTOCOL: &str = "v4.channel.k8s.io";

/// The SPDY streams of a session: (stream id, channel, `streamtype` header), in the order
/// client-go opens them (pure).
pub fn streams(options: StreamOptions) -> Vec<(u32, u8, &'static str)> {
    let mut wanted = vec![(ERROR, "error")];
    if options.stdin {
        wanted.push((STDIN, "stdin"));
    }
    if options.stdout {
        wanted.push((STDOUT, "stdout"));
    }
    if options.stderr && !options.tty {
        wanted.push((STDERR, "stderr"));
    }
    if options.tty {
        wanted.push((RESIZE, "resize"));
    }
    wanted.into_iter().enumerate().map(|(i, (channel, kind))| (2 * i as u32 + 1, channel, kind)).collect()
}

/// What a client message asks of the SPDY side (pure): bytes to write upstream, if any.
pub fn client_message(streams: &[(u32, u8, &'static str)], v5: bool, message: &[u8]) -> Option<Vec<u8>> {
    let (&channel, payload) = message.split_first()?;
    let stream_of = |c: u8| streams.iter().find(|(_, ch, _)| *ch == c).map(|(id, _, _)| *id);
    match channel {
        STDIN | RESIZE => Some(spdy::data(stream_of(channel)?, payload, false)),
        CLOSE if v5 && payload.first() == Some(&STDIN) => Some(spdy::data(stream_of(STDIN)?, &[], true)),
        _ => None,
    }
}

/// A close frame with status 1000: clients (gorilla/websocket in client-go) read any other
/// close, even one without a status, as an error.
pub fn normal_close() -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame { code: 1000, reason: "".into() }))
}

/// Runs the session until either side ends it; the WebSocket is closed last, after
/// everything the runtime sent (the exit status on channel 3 included) was forwarded.
pub async fn bridge(socket: WebSocket, v5: bool, upstream: Upgraded, options: StreamOptions) {
    let streams = streams(options);
    let (mut upstream_read, mut upstream_write) = upstream.stream.into_split();
    let mut headers = HeaderWriter::default();
    let mut opening = Vec::new();
    for (id, _, kind) in &streams {
        opening.extend(spdy::syn_stream(&mut headers, *id, &[("streamtype", kind)]));
    }
    let (mut to_client, mut from_client) = socket.split();
    if let Err(e) = upstream_write.write_all(&opening).await {
        let _ = to_client.send(normal_close()).await;
        tracing::warn!(error = %e, "opening exec streams failed");
        return;
    }
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 32 * 1024];
    let mut client_open = true;
    loop {
        tokio::select! {
            msg = from_client.next(), if client_open => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if let Some(bytes) = client_message(&streams, v5, &b) {
                        if upstream_write.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    // The client went away: the session ends (the runtime sees the
                    // connection close and ends the exec's streams).
                    client_open = false;
                    break;
                }
                Some(Ok(_)) => {}
            },
            n = upstream_read.read(&mut chunk) => {
                let n = match n { Ok(0) | Err(_) => break, Ok(n) => n };
                buf.extend_from_slice(&chunk[..n]);
                let mut finished = false;
                loop {
                    match spdy::parse(&mut buf) {
                        Ok(Some(Frame::Data { stream, fin, data })) => {
                            let channel = streams.iter().find(|(id, _, _)| *id == stream).map(|(_, c, _)| *c);
                            if let (Some(channel), false) = (channel, data.is_empty()) {
                                let mut message = Vec::with_capacity(data.len() + 1);
                                message.push(channel);
                                message.extend_from_slice(&data);
                                if to_client.send(Message::Binary(message.into())).await.is_err() {
                                    finished = true;
                                }
                            }
                            // The status comes last: once it is complete the session is over.
                            finished |= fin && channel == Some(ERROR);
                        }
                        Ok(Some(Frame::Ping { id })) => {
                            let _ = upstream_write.write_all(&spdy::ping(id)).await;
                        }
                        Ok(Some(Frame::GoAway)) => finished = true,
                        Ok(Some(Frame::RstStream { stream, .. })) => finished |= stream == 1,
                        Ok(Some(Frame::Control { .. })) => {}
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "bad frame from the runtime's streaming server");
                            finished = true;
                            break;
                        }
                    }
                }
                if finished {
                    break;
                }
            }
        }
    }
    if client_open {
        let _ = to_client.send(normal_close()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(stdin: bool, tty: bool) -> StreamOptions {
        StreamOptions { stdin, stdout: true, stderr: true, tty }
    }

    #[test]
    fn streams_follow_the_options() {
        let kinds = |o| streams(o).into_iter().map(|(id, _, k)| (id, k)).collect::<Vec<_>>();
        assert_eq!(kinds(opts(false, false)), vec![(1, "error"), (3, "stdout"), (5, "stderr")]);
        // A terminal merges stderr into stdout and adds the resize stream.
        assert_eq!(kinds(opts(true, true)), vec![(1, "error"), (3, "stdin"), (5, "stdout"), (7, "resize")]);
    }

    #[test]
    fn client_messages_become_stdin_data_resizes_and_half_closes() {
        let s = streams(opts(true, true));
        assert_eq!(client_message(&s, true, &[STDIN, b'h', b'i']).unwrap(), spdy::data(3, b"hi", false));
        assert_eq!(client_message(&s, true, &[RESIZE, b'{', b'}']).unwrap(), spdy::data(7, b"{}", false));
        assert_eq!(client_message(&s, true, &[CLOSE, STDIN]).unwrap(), spdy::data(3, b"", true));
        // v4 has no close channel; output channels are not the client's to write.
        assert_eq!(client_message(&s, false, &[CLOSE, STDIN]), None);
        assert_eq!(client_message(&s, true, &[STDOUT, b'x']), None);
        assert_eq!(client_message(&streams(opts(false, false)), true, &[STDIN, b'x']), None);
        assert_eq!(client_message(&s, true, &[]), None);
    }
}
