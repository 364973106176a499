//! `kubectl exec` into a container that is a host process (the process runtime), served by
//! the agent itself: the command runs in the container's context (environment, working
//! directory, mount namespace; [`crate::prober::host_command`]) and its stdio is bridged
//! to the client's WebSocket in the channel protocol (`v5`/`v4.channel.k8s.io`): stdin on
//! channel 0 (v5's close-channel frame closes it), stdout 1, stderr 2, the exit status as a
//! `Status` on 3 — the same a kubelet's streaming server would send — and terminal resizes
//! on 4. With `tty` the command gets a pseudo-terminal as its controlling terminal (stderr
//! joins stdout, as on a kubelet).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Stdio;

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::channels::{normal_close, CLOSE, ERROR, RESIZE, STDERR, STDIN, STDOUT};
use crate::prober::ExecTarget;
use crate::runtime::StreamOptions;

/// The `Status` a kubelet sends on the error channel when the command ends (pure): exit
/// code 0 is Success; anything else is the `NonZeroExitCode` failure client-go turns into
/// the exit code (kubectl exits with it).
pub fn exit_status(command: &[String], code: i32) -> String {
    if code == 0 {
        return r#"{"metadata":{},"status":"Success"}"#.to_string();
    }
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
    .to_string()
}

/// A failure to start the command, as a `Status` on the error channel (pure).
fn start_failure(message: &str) -> String {
    serde_json::json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"}).to_string()
}

/// A terminal size from a resize message (`{"Width":80,"Height":24}`), if it is one (pure).
pub fn terminal_size(payload: &[u8]) -> Option<(u16, u16)> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    Some((u16::try_from(v["Width"].as_u64()?).ok()?, u16::try_from(v["Height"].as_u64()?).ok()?))
}

/// Runs the session: starts `command`, pipes it to and from the client until it exits and
/// its output is drained (then sends its status and closes) or the client goes (then the
/// command's process group is killed).
pub async fn serve(socket: WebSocket, v5: bool, command: Vec<String>, target: ExecTarget, options: StreamOptions) {
    let (mut to_client, from_client) = socket.split();
    let started = match start(&command, &target, options) {
        Ok(s) => s,
        Err(e) => {
            let mut message = vec![ERROR];
            message.extend_from_slice(start_failure(&e).as_bytes());
            let _ = to_client.send(Message::Binary(message.into())).await;
            let _ = to_client.send(normal_close()).await;
            return;
        }
    };
    let pgid = started.pgid;
    let finished = pump(started, from_client, &mut to_client, v5).await;
    match finished {
        Some(code) => {
            let mut message = vec![ERROR];
            message.extend_from_slice(exit_status(&command, code).as_bytes());
            let _ = to_client.send(Message::Binary(message.into())).await;
            let _ = to_client.send(normal_close()).await;
        }
        None => {
            if let Some(pgid) = pgid {
                // SAFETY: kill(2) on the exec's own process group (it leads it).
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
        }
    }
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

struct Started {
    child: tokio::process::Child,
    /// The command's process group (it leads it): what is killed when the session ends.
    pgid: Option<i32>,
    stdin: Option<Writer>,
    /// (channel, stream) of each output.
    outputs: Vec<(u8, Reader)>,
    /// The terminal's master side (resizes go to it).
    terminal: Option<OwnedFd>,
}

fn start(command: &[String], target: &ExecTarget, options: StreamOptions) -> Result<Started, String> {
    let ExecTarget::Host { env, dir, mount_ns_of } = target else {
        return Err("this container's runtime serves exec itself".into());
    };
    let mut cmd = crate::prober::host_command(command, env, dir, *mount_ns_of)?;
    let program = command.first().cloned().unwrap_or_default();
    if options.tty {
        let (master, slave) = open_terminal()?;
        let stdio = |fd: &OwnedFd| fd.try_clone().map(Stdio::from).map_err(|e| format!("terminal: {e}"));
        cmd.stdin(stdio(&slave)?).stdout(stdio(&slave)?).stderr(stdio(&slave)?);
        // SAFETY: setsid and ioctl are async-signal-safe. The command leads a new session
        // (so its process group is its PID) with the terminal as its controlling one.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| exec_failure(&program, &e))?;
        drop(slave);
        let read = std::fs::File::from(master.try_clone().map_err(|e| format!("terminal: {e}"))?);
        let write = std::fs::File::from(master.try_clone().map_err(|e| format!("terminal: {e}"))?);
        let stdin: Option<Writer> = options.stdin.then(|| Box::new(tokio::fs::File::from_std(write)) as Writer);
        let outputs: Vec<(u8, Reader)> = vec![(STDOUT, Box::new(tokio::fs::File::from_std(read)))];
        let pgid = child.id().map(|p| p as i32);
        return Ok(Started { child, pgid, stdin, outputs, terminal: Some(master) });
    }
    let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    cmd.process_group(0).stdin(piped(options.stdin)).stdout(piped(options.stdout)).stderr(piped(options.stderr));
    let mut child = cmd.spawn().map_err(|e| exec_failure(&program, &e))?;
    let stdin = child.stdin.take().map(|s| Box::new(s) as Writer);
    let mut outputs: Vec<(u8, Reader)> = Vec::new();
    if let Some(out) = child.stdout.take() {
        outputs.push((STDOUT, Box::new(out)));
    }
    if let Some(err) = child.stderr.take() {
        outputs.push((STDERR, Box::new(err)));
    }
    let pgid = child.id().map(|p| p as i32);
    Ok(Started { child, pgid, stdin, outputs, terminal: None })
}

/// How a kubelet words a command that cannot start.
fn exec_failure(program: &str, e: &std::io::Error) -> String {
    format!("exec: {program:?}: {e}")
}

/// A pseudo-terminal: (master, slave).
fn open_terminal() -> Result<(OwnedFd, OwnedFd), String> {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two new descriptors, owned from here on.
    let rc =
        unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    if rc != 0 {
        return Err(format!("allocating a terminal: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors were just opened by openpty and are not owned elsewhere.
    Ok(unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) })
}

fn resize(terminal: &OwnedFd, (width, height): (u16, u16)) {
    let size = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, valid for the call.
    unsafe { libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &size) };
}

/// Moves bytes both ways; Some(exit code) once the command has exited and its output is
/// drained, None when the client went first.
async fn pump(
    mut started: Started,
    mut from_client: futures::stream::SplitStream<WebSocket>,
    to_client: &mut futures::stream::SplitSink<WebSocket, Message>,
    v5: bool,
) -> Option<i32> {
    let (tx, mut output) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(16);
    let mut readers = Vec::new();
    for (channel, mut reader) in std::mem::take(&mut started.outputs) {
        let tx = tx.clone();
        readers.push(tokio::spawn(async move {
            let mut chunk = vec![0u8; 32 * 1024];
            // A terminal's master reads EIO once the last process holding the slave is gone.
            while let Ok(n @ 1..) = reader.read(&mut chunk).await {
                if tx.send((channel, chunk[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let mut exited: Option<i32> = None;
    let mut outputs_open = true;
    loop {
        if let (Some(code), false) = (exited, outputs_open) {
            return Some(code);
        }
        tokio::select! {
            msg = from_client.next() => match msg {
                Some(Ok(Message::Binary(b))) => match b.split_first() {
                    Some((&STDIN, data)) => {
                        if let Some(stdin) = started.stdin.as_mut() {
                            if stdin.write_all(data).await.is_err() || stdin.flush().await.is_err() {
                                started.stdin = None;
                            }
                        }
                    }
                    Some((&RESIZE, payload)) => {
                        if let (Some(terminal), Some(size)) = (&started.terminal, terminal_size(payload)) {
                            resize(terminal, size);
                        }
                    }
                    Some((&CLOSE, [STDIN])) if v5 => started.stdin = None,
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    readers.iter().for_each(|r| r.abort());
                    return None;
                }
                Some(Ok(_)) => {}
            },
            chunk = output.recv(), if outputs_open => match chunk {
                Some((channel, data)) => {
                    let mut message = Vec::with_capacity(data.len() + 1);
                    message.push(channel);
                    message.extend_from_slice(&data);
                    if to_client.send(Message::Binary(message.into())).await.is_err() {
                        readers.iter().for_each(|r| r.abort());
                        return None;
                    }
                }
                None => outputs_open = false,
            },
            status = started.child.wait(), if exited.is_none() => {
                use std::os::unix::process::ExitStatusExt;
                let status = status.ok();
                let code = status.and_then(|s| s.code().or_else(|| s.signal().map(|sig| 128 + sig)));
                exited = Some(code.unwrap_or(1));
                // Whatever the command left behind (a background child holding the
                // output open) must not keep the session open.
                if let Some(pgid) = started.pgid {
                    // SAFETY: kill(2) on the exec's own process group.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_are_the_kubelets() {
        assert_eq!(exit_status(&["true".into()], 0), r#"{"metadata":{},"status":"Success"}"#);
        let failed: serde_json::Value =
            serde_json::from_str(&exit_status(&["sh".into(), "-c".into(), "exit 7".into()], 7)).unwrap();
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "7");
        assert_eq!(
            failed["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 7], exit code 7"
        );
    }

    #[test]
    fn resize_messages_carry_width_and_height() {
        assert_eq!(terminal_size(br#"{"Width":120,"Height":40}"#), Some((120, 40)));
        assert_eq!(terminal_size(b"{}"), None);
        assert_eq!(terminal_size(b"nonsense"), None);
    }
}
