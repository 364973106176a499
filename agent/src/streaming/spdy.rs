//! SPDY/3.1 framing, only as much as an exec or attach *client* needs to talk to a
//! runtime's streaming server (containerd's, like the kubelet's, speaks SPDY for
//! `v4.channel.k8s.io`): open streams with headers, send data (with FIN to half-close
//! stdin), read data frames, answer pings. Everything here is pure: bytes in, bytes out.
//!
//! Header blocks are zlib data (SPDY/3 §2.6.10). We send ours as *stored* deflate blocks on
//! one zlib stream without a preset dictionary, each block ended by an empty stored block
//! as zlib's sync flush ends it — a valid zlib stream every SPDY peer inflates — because a few hundred bytes of headers are not worth compressing; we never
//! read the server's header blocks (`SYN_REPLY` carries nothing a client needs), so we never
//! inflate either.

/// A frame read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream: u32,
        fin: bool,
        data: Vec<u8>,
    },
    /// `SYN_REPLY`, `HEADERS`, `SETTINGS`, `WINDOW_UPDATE`, … — nothing to act on.
    Control {
        kind: u16,
        stream: Option<u32>,
        fin: bool,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway,
}

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;
pub const FLAG_FIN: u8 = 0x01;
/// Frames larger than this are refused (the 24-bit length allows 16 MiB).
pub const MAX_FRAME: usize = 1 << 24;

/// Writes header blocks as one zlib stream across the connection.
#[derive(Debug, Default)]
pub struct HeaderWriter {
    started: bool,
}

impl HeaderWriter {
    /// The compressed form of `headers` (names lowercase, as SPDY requires).
    pub fn block(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            raw.extend_from_slice(&(name.len() as u32).to_be_bytes());
            raw.extend_from_slice(name.as_bytes());
            raw.extend_from_slice(&(value.len() as u32).to_be_bytes());
            raw.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::new();
        if !self.started {
            // zlib header: deflate, 32 KiB window, no preset dictionary; check bits make
            // 0x7801 a multiple of 31.
            out.extend_from_slice(&[0x78, 0x01]);
            self.started = true;
        }
        for chunk in raw.chunks(u16::MAX as usize) {
            // A non-final stored block: BFINAL=0, BTYPE=00, padded to the byte; LEN, NLEN.
            let len = chunk.len() as u16;
            out.push(0);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        // An empty stored block ends the header block, as zlib's sync flush does: inflaters
        // hand out what they have only when they reach a block boundary like this one.
        out.extend_from_slice(&[0, 0, 0, 0xff, 0xff]);
        out
    }
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

/// `SYN_STREAM` opening client stream `stream` (odd) with `headers`.
pub fn syn_stream(writer: &mut HeaderWriter, stream: u32, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    payload.extend_from_slice(&0u32.to_be_bytes()); // associated stream
    payload.extend_from_slice(&[0, 0]); // priority, slot
    payload.extend_from_slice(&writer.block(headers));
    control(SYN_STREAM, 0, &payload)
}

/// Data frames carrying `data` on `stream` (split at the frame size limit), the last with
/// FIN when `fin`. Empty `data` with `fin` is one empty FIN frame (a half-close).
pub fn data(stream: u32, data: &[u8], fin: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(MAX_FRAME - 1).collect() };
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        out.push(if fin && i == last { FLAG_FIN } else { 0 });
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(chunk);
    }
    out
}

/// The answer to a server's `PING`.
pub fn ping(id: u32) -> Vec<u8> {
    control(PING, 0, &id.to_be_bytes())
}

/// Takes one whole frame off the front of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse(buf: &mut Vec<u8>) -> Result<Option<Frame>, String> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
    if len >= MAX_FRAME {
        return Err(format!("SPDY frame of {len} bytes"));
    }
    if buf.len() < 8 + len {
        return Ok(None);
    }
    let frame: Vec<u8> = buf.drain(..8 + len).collect();
    let flags = frame[4];
    let payload = &frame[8..];
    let word = |at: usize| payload.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff);
    if frame[0] & 0x80 == 0 {
        let stream = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        return Ok(Some(Frame::Data { stream, fin: flags & FLAG_FIN != 0, data: payload.to_vec() }));
    }
    let version = u16::from_be_bytes([frame[0], frame[1]]) & 0x7fff;
    if version != VERSION {
        return Err(format!("SPDY version {version} (want {VERSION})"));
    }
    let kind = u16::from_be_bytes([frame[2], frame[3]]);
    Ok(Some(match kind {
        RST_STREAM => {
            Frame::RstStream { stream: word(0).ok_or("short RST_STREAM")?, status: word(4).ok_or("short RST_STREAM")? }
        }
        PING => Frame::Ping { id: word(0).ok_or("short PING")? },
        GOAWAY => Frame::GoAway,
        SYN_STREAM | SYN_REPLY | HEADERS | WINDOW_UPDATE => {
            Frame::Control { kind, stream: word(0), fin: flags & FLAG_FIN != 0 }
        }
        _ => Frame::Control { kind, stream: None, fin: false },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inflates a stored-block zlib stream (what `HeaderWriter` writes) back to raw bytes.
    fn inflate_stored(mut z: &[u8]) -> Vec<u8> {
        assert_eq!(&z[..2], &[0x78, 0x01]);
        assert_eq!(u16::from_be_bytes([z[0], z[1]]) % 31, 0, "zlib check bits");
        z = &z[2..];
        let mut out = Vec::new();
        while !z.is_empty() {
            assert_eq!(z[0], 0, "non-final stored block");
            let len = u16::from_le_bytes([z[1], z[2]]) as usize;
            assert_eq!(!len as u16, u16::from_le_bytes([z[3], z[4]]));
            out.extend_from_slice(&z[5..5 + len]);
            z = &z[5 + len..];
        }
        out
    }

    #[test]
    fn a_syn_stream_carries_its_id_and_lowercase_headers() {
        let mut w = HeaderWriter::default();
        let f = syn_stream(&mut w, 3, &[("streamType", "stdin")]);
        assert_eq!(&f[..4], &[0x80, 0x03, 0x00, 0x01]);
        let len = u32::from_be_bytes([0, f[5], f[6], f[7]]) as usize;
        assert_eq!(len, f.len() - 8);
        assert_eq!(&f[8..12], &3u32.to_be_bytes());
        let raw = inflate_stored(&f[18..]);
        let mut expect = 1u32.to_be_bytes().to_vec();
        expect.extend_from_slice(&10u32.to_be_bytes());
        expect.extend_from_slice(b"streamtype");
        expect.extend_from_slice(&5u32.to_be_bytes());
        expect.extend_from_slice(b"stdin");
        assert_eq!(raw, expect);
        // The zlib header is written once per connection.
        let second = syn_stream(&mut w, 5, &[("a", "b")]);
        assert_eq!(second[18], 0);
    }

    #[test]
    fn frames_round_trip_and_wait_for_whole_frames() {
        let mut buf = data(5, b"hello", false);
        buf.extend(data(5, b"", true));
        buf.extend(ping(7));
        let whole = buf.len();
        let mut partial = buf[..whole - 3].to_vec();
        assert_eq!(parse(&mut partial).unwrap(), Some(Frame::Data { stream: 5, fin: false, data: b"hello".to_vec() }));
        assert_eq!(parse(&mut partial).unwrap(), Some(Frame::Data { stream: 5, fin: true, data: vec![] }));
        assert_eq!(parse(&mut partial).unwrap(), None, "the ping is cut short");
        partial.extend_from_slice(&buf[whole - 3..]);
        assert_eq!(parse(&mut partial).unwrap(), Some(Frame::Ping { id: 7 }));
        assert!(partial.is_empty());
    }

    #[test]
    fn a_wrong_version_is_an_error() {
        let mut f = ping(1);
        f[1] = 2;
        assert!(parse(&mut f).unwrap_err().contains("version 2"));
    }
}
