//! Descriptors over a unix stream socket (`SCM_RIGHTS`), with one line of text beside
//! them: the only way to hand a listening socket to a process that is already running.
//! `rustix` wraps the system calls; the received descriptors arrive owned and close-on-exec.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tokio::io::Interest;
use tokio::net::UnixStream;

/// Most descriptors one hand-over carries (the kernel allows 253 per message).
pub const MAX_FDS: usize = 32;

/// Longest text line sent with the descriptors.
pub const MAX_LINE: usize = 4096;

/// Send `line` (one line, newline included by the caller) with `fds` attached.
pub async fn send(stream: &UnixStream, line: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS || line.len() > MAX_LINE || line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors or too long a line",
        ));
    }
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let sent = stream
        .async_io(Interest::WRITABLE, || {
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(io::Error::other("control buffer too small"));
            }
            rustix::net::sendmsg(
                stream,
                &[IoSlice::new(line)],
                &mut control,
                SendFlags::NOSIGNAL,
            )
            .map_err(io::Error::from)
        })
        .await?;
    if sent != line.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write of the hand-over line",
        ));
    }
    Ok(())
}

/// Receive one line and the descriptors sent with it. Descriptors come only with the
/// first bytes; the rest of the line (should the kernel split it) is read after them.
pub async fn recv(stream: &UnixStream) -> io::Result<(String, Vec<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut buf = vec![0u8; MAX_LINE];
    let mut fds = Vec::new();
    let mut line = Vec::new();
    loop {
        let n = stream
            .async_io(Interest::READABLE, || {
                let mut control = RecvAncillaryBuffer::new(&mut space);
                let msg = rustix::net::recvmsg(
                    stream,
                    &mut [IoSliceMut::new(&mut buf)],
                    &mut control,
                    RecvFlags::CMSG_CLOEXEC,
                )
                .map_err(io::Error::from)?;
                for m in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(received) = m {
                        fds.extend(received);
                    }
                }
                Ok(msg.bytes)
            })
            .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the hand-over line ended",
            ));
        }
        line.extend_from_slice(&buf[..n]);
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            line.truncate(end);
            let text = String::from_utf8(line)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))?;
            return Ok((text, fds));
        }
        if line.len() > MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "hand-over line too long",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[tokio::test]
    async fn a_listener_crosses_a_socket_pair_and_still_accepts() {
        let (a, b) = UnixStream::pair().expect("pair");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        send(&a, b"fds imap\n", &[listener.as_fd()])
            .await
            .expect("send");
        drop(listener);
        let (line, mut fds) = recv(&b).await.expect("recv");
        assert_eq!(line, "fds imap");
        assert_eq!(fds.len(), 1);
        let got = std::net::TcpListener::from(fds.remove(0));
        assert_eq!(got.local_addr().expect("addr"), addr);
        let _client = std::net::TcpStream::connect(addr).expect("the socket still listens");
        got.accept().expect("accepted by the receiver");
    }

    #[tokio::test]
    async fn a_line_without_descriptors() {
        let (a, b) = UnixStream::pair().expect("pair");
        send(&a, b"ready 42\n", &[]).await.expect("send");
        let (line, fds) = recv(&b).await.expect("recv");
        assert_eq!((line.as_str(), fds.len()), ("ready 42", 0));
        drop(a);
        assert!(recv(&b).await.is_err(), "EOF is an error");
    }
}
