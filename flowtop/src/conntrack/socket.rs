//! A ctnetlink socket: dump requests, event subscription, receive buffer.

use std::io;
use std::os::fd::AsRawFd;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};

/// Multicast groups of ctnetlink (`NFNLGRP_CONNTRACK_*`): group numbers, not bits.
pub const NFNLGRP_CONNTRACK_NEW: u32 = 1;
pub const NFNLGRP_CONNTRACK_UPDATE: u32 = 2;
pub const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;

/// Size of the user-space buffer one `recv` fills. The kernel sizes dump
/// batches to it, so a large one means fewer system calls per dump.
pub const RECV_BUFFER: usize = 1 << 20;

/// Errors opening or using the socket, with the cases users must act on.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("permission denied ({0})")]
    PermissionDenied(&'static str),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

impl SocketError {
    pub(crate) fn io(what: &'static str, source: io::Error) -> Self {
        if source.raw_os_error() == Some(libc::EPERM) || source.raw_os_error() == Some(libc::EACCES) {
            SocketError::PermissionDenied(what)
        } else {
            SocketError::Io { what, source }
        }
    }
}

/// An open ctnetlink socket and its receive buffer.
pub struct CtSocket {
    sock: Socket,
    buf: Vec<u8>,
}

impl CtSocket {
    pub fn open() -> Result<Self, SocketError> {
        let mut sock = Socket::new(NETLINK_NETFILTER)
            .map_err(|e| SocketError::io("opening a netfilter netlink socket", e))?;
        sock.bind_auto()
            .map_err(|e| SocketError::io("binding the netlink socket", e))?;
        Ok(CtSocket {
            sock,
            buf: vec![0; RECV_BUFFER],
        })
    }

    /// Joins the NEW, UPDATE and DESTROY groups (needs CAP_NET_ADMIN).
    pub fn subscribe_events(&self) -> Result<(), SocketError> {
        for group in [
            NFNLGRP_CONNTRACK_NEW,
            NFNLGRP_CONNTRACK_UPDATE,
            NFNLGRP_CONNTRACK_DESTROY,
        ] {
            self.sock
                .add_membership(group)
                .map_err(|e| SocketError::io("subscribing to conntrack events", e))?;
        }
        Ok(())
    }

    /// Sets the kernel receive buffer, beyond `rmem_max` when allowed
    /// (SO_RCVBUFFORCE needs CAP_NET_ADMIN). Returns the size in effect.
    pub fn set_kernel_rcvbuf(&self, bytes: usize) -> io::Result<usize> {
        let val = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        if setsockopt_int(self.sock.as_raw_fd(), libc::SO_RCVBUFFORCE, val).is_err() {
            setsockopt_int(self.sock.as_raw_fd(), libc::SO_RCVBUF, val)?;
        }
        self.kernel_rcvbuf()
    }

    /// The kernel receive buffer in effect (the kernel doubles what was asked).
    pub fn kernel_rcvbuf(&self) -> io::Result<usize> {
        let mut val: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: val and len are valid for writes of the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&mut val as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(usize::try_from(val).unwrap_or(0))
    }

    /// Sends requests already framed (several netlink messages back to back).
    pub fn send_requests(&self, msgs: &[u8]) -> io::Result<()> {
        let n = self.sock.send(msgs, 0)?;
        if n != msgs.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short netlink send"));
        }
        Ok(())
    }

    /// Receives one datagram if one is queued, without waiting.
    pub fn try_recv(&mut self) -> io::Result<Option<&[u8]>> {
        let mut slice = &mut self.buf[..];
        match self.sock.recv(&mut slice, libc::MSG_DONTWAIT) {
            Ok(n) => Ok(Some(&self.buf[..n.min(self.buf.len())])),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Receives one datagram; ENOBUFS comes back as an error of that kind.
    pub fn recv(&mut self) -> io::Result<&[u8]> {
        let mut slice = &mut self.buf[..];
        let n = self.sock.recv(&mut slice, 0)?;
        Ok(&self.buf[..n.min(self.buf.len())])
    }
}

fn setsockopt_int(fd: libc::c_int, opt: libc::c_int, val: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid pointer to an int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
