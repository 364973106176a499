//! WebSocket port-forward in the channel protocol (`v4.channel.k8s.io` /
//! `portforward.k8s.io`, what kube-rs and the Python client speak): port i of the request's
//! `ports` gets channel 2i for data and 2i+1 for errors, and the server's first message on
//! each channel is the port number (2 bytes, little-endian). The agent bridges it to SPDY
//! on the runtime's streaming server, where each port is a pair of streams (`streamtype`
//! data and error, with `port` and a shared `requestid`), as kube-apiserver's translation
//! to a kubelet does. (kubectl tunnels SPDY itself instead; see [`super`].)

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::channels::normal_close;
use super::spdy::{self, Frame, HeaderWriter};
use super::upgrade::Upgraded;

/// The WebSocket subprotocols of this form of port-forward.
pub const WEBSOCKET_PROTOCOLS: [&str; 2] = ["v4.channel.k8s.io", "portforward.k8s.io"];

/// One forwarded port: its SPDY data and error streams (pure layout: port i uses streams
/// 4i+1 (error) and 4i+3 (data)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortStreams {
    pub port: u16,
    pub error: u32,
    pub data: u32,
}

pub fn port_streams(ports: &[u16]) -> Vec<PortStreams> {
    ports
        .iter()
        .enumerate()
        .map(|(i, &port)| PortStreams { port, error: 4 * i as u32 + 1, data: 4 * i as u32 + 3 })
        .collect()
}

/// The WebSocket message for `channel` (pure).
fn message(channel: u8, payload: &[u8]) -> Message {
    let mut m = Vec::with_capacity(payload.len() + 1);
    m.push(channel);
    m.extend_from_slice(payload);
    Message::Binary(m.into())
}

/// Runs the session until the client goes or every port's data stream has ended.
pub async fn bridge(socket: WebSocket, upstream: Upgraded, ports: Vec<u16>) {
    let layout = port_streams(&ports);
    let (mut to_client, mut from_client) = socket.split();
    let (mut read, mut write) = upstream.stream.into_split();
    let mut headers = HeaderWriter::default();
    let mut opening = Vec::new();
    for (i, p) in layout.iter().enumerate() {
        let (port, request) = (p.port.to_string(), i.to_string());
        for (id, kind) in [(p.error, "error"), (p.data, "data")] {
            let h = [("streamtype", kind), ("port", port.as_str()), ("requestid", request.as_str())];
            opening.extend(spdy::syn_stream(&mut headers, id, &h));
        }
    }
    if write.write_all(&opening).await.is_err() {
        let _ = to_client.send(normal_close()).await;
        return;
    }
    for (i, p) in layout.iter().enumerate() {
        for channel in [2 * i as u8, 2 * i as u8 + 1] {
            if to_client.send(message(channel, &p.port.to_le_bytes())).await.is_err() {
                return;
            }
        }
    }
    let mut open_data = layout.len();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            msg = from_client.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    let Some((&channel, payload)) = b.split_first() else { continue };
                    let Some(p) = layout.get(channel as usize / 2).filter(|_| channel % 2 == 0) else { continue };
                    if write.write_all(&spdy::data(p.data, payload, false)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            n = read.read(&mut chunk) => {
                let n = match n { Ok(0) | Err(_) => break, Ok(n) => n };
                buf.extend_from_slice(&chunk[..n]);
                while let Ok(Some(frame)) = spdy::parse(&mut buf) {
                    match frame {
                        Frame::Data { stream, fin, data } => {
                            let Some(i) = layout.iter().position(|p| p.data == stream || p.error == stream) else { continue };
                            let channel = if layout[i].data == stream { 2 * i as u8 } else { 2 * i as u8 + 1 };
                            if !data.is_empty() && to_client.send(message(channel, &data)).await.is_err() {
                                return;
                            }
                            if fin && layout[i].data == stream {
                                open_data -= 1;
                            }
                        }
                        Frame::Ping { id } => {
                            let _ = write.write_all(&spdy::ping(id)).await;
                        }
                        Frame::GoAway => open_data = 0,
                        _ => {}
                    }
                }
                if open_data == 0 {
                    break;
                }
            }
        }
    }
    let _ = to_client.send(normal_close()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_port_has_an_error_and_a_data_stream() {
        assert_eq!(
            port_streams(&[80, 8080]),
            vec![PortStreams { port: 80, error: 1, data: 3 }, PortStreams { port: 8080, error: 5, data: 7 }]
        );
    }
}
