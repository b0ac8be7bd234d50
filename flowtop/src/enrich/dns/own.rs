//! flowtop's own resolver sockets, so its DNS queries can be hidden from the
//! flow table.
//!
//! hickory lets the caller supply the [`RuntimeProvider`] that creates every
//! UDP and TCP socket of the resolver. [`OwnRuntime`] wraps tokio's provider:
//! each socket is registered (protocol, local address after bind with the
//! real port, server address) when it is created, and marked closed when
//! hickory drops it. Entries stay [`LINGER`] past close, since conntrack keeps
//! a UDP flow ~30-120 s and a TCP one in TIME_WAIT after the socket is gone.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hickory_resolver::net::runtime::iocompat::AsyncIoTokioAsStd;
use hickory_resolver::net::runtime::{
    DnsUdpSocket, RuntimeProvider, TokioHandle, TokioRuntimeProvider, TokioTime,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use crate::flow::model::proto;

/// How long a closed socket is still recognised (longer than conntrack's UDP
/// stream timeout of 120 s and TCP TIME_WAIT of 120 s).
pub(crate) const LINGER: Duration = Duration::from_secs(300);

/// Most sockets remembered. Open sockets are bounded by the lookups in
/// flight; closed ones beyond this are forgotten oldest first.
const MAX_SOCKETS: usize = 65_536;

/// TCP connect time-out when hickory gives none (its own default is 5 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The key conntrack's original tuple gives: protocol, local port, server.
type Key = (u8, u16, SocketAddr);

#[derive(Debug)]
struct Socket {
    /// As bound: often the unspecified address (the kernel picks the source
    /// address per packet), then any local address of the family matches.
    local_ip: IpAddr,
    id: u64,
    closed: Option<Instant>,
}

#[derive(Debug, Default)]
struct Registry {
    sockets: HashMap<Key, Socket>,
    next_id: u64,
}

/// The shared registry of the resolver's sockets.
#[derive(Debug, Default, Clone)]
pub(crate) struct OwnSockets(Arc<Mutex<Registry>>);

impl OwnSockets {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic elsewhere while holding the lock leaves a consistent map.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a socket; the guard marks it closed when dropped.
    fn register(&self, proto: u8, local: SocketAddr, remote: SocketAddr) -> SocketGuard {
        let now = Instant::now();
        let mut reg = self.lock();
        let id = reg.next_id;
        reg.next_id += 1;
        if reg.sockets.len() >= MAX_SOCKETS {
            reg.sockets
                .retain(|_, s| s.closed.is_none_or(|t| now.duration_since(t) < LINGER));
        }
        if reg.sockets.len() >= MAX_SOCKETS {
            // Still full of lingering sockets: forget the oldest eighth at
            // once, so a busy resolver does not sort on every socket.
            let mut closed: Vec<(Instant, Key)> = reg
                .sockets
                .iter()
                .filter_map(|(k, s)| s.closed.map(|t| (t, *k)))
                .collect();
            closed.sort_unstable();
            for (_, k) in closed.iter().take(MAX_SOCKETS / 8) {
                reg.sockets.remove(k);
            }
        }
        let key = (proto, local.port(), remote);
        reg.sockets.insert(
            key,
            Socket {
                local_ip: local.ip(),
                id,
                closed: None,
            },
        );
        SocketGuard {
            reg: self.clone(),
            key,
            id,
        }
    }

    /// Whether (proto, local, remote) is, or recently was, one of ours.
    pub(crate) fn contains(&self, proto: u8, local: SocketAddr, remote: SocketAddr) -> bool {
        let reg = self.lock();
        let Some(s) = reg.sockets.get(&(proto, local.port(), remote)) else {
            return false;
        };
        let ip_matches = if s.local_ip.is_unspecified() {
            s.local_ip.is_ipv4() == local.ip().is_ipv4()
        } else {
            s.local_ip == local.ip()
        };
        ip_matches && s.closed.is_none_or(|t| t.elapsed() < LINGER)
    }

    /// Every remembered socket (tests, diagnostics).
    pub(crate) fn list(&self) -> Vec<(u8, SocketAddr, SocketAddr, bool)> {
        self.lock()
            .sockets
            .iter()
            .map(|(&(p, port, remote), s)| (p, SocketAddr::new(s.local_ip, port), remote, s.closed.is_none()))
            .collect()
    }

    #[cfg(test)]
    fn age_closed(&self, by: Duration) {
        for s in self.lock().sockets.values_mut() {
            s.closed = s.closed.and_then(|t| t.checked_sub(by));
        }
    }
}

/// Marks its socket closed when the socket is dropped.
#[derive(Debug)]
struct SocketGuard {
    reg: OwnSockets,
    key: Key,
    id: u64,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let mut reg = self.reg.lock();
        // The same key may have been taken over by a newer socket meanwhile.
        if let Some(s) = reg.sockets.get_mut(&self.key) {
            if s.id == self.id {
                s.closed = Some(Instant::now());
            }
        }
    }
}

/// tokio's runtime provider, with every socket registered in [`OwnSockets`].
#[derive(Clone, Default)]
pub(crate) struct OwnRuntime {
    inner: TokioRuntimeProvider,
    pub(crate) sockets: OwnSockets,
}

/// A UDP socket of the resolver.
pub(crate) struct OwnUdp {
    socket: UdpSocket,
    _guard: SocketGuard,
}

impl DnsUdpSocket for OwnUdp {
    type Time = TokioTime;

    fn poll_recv_from(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<(usize, SocketAddr)>> {
        DnsUdpSocket::poll_recv_from(&self.socket, cx, buf)
    }

    fn poll_send_to(&self, cx: &mut Context<'_>, buf: &[u8], target: SocketAddr) -> Poll<io::Result<usize>> {
        DnsUdpSocket::poll_send_to(&self.socket, cx, buf, target)
    }
}

/// A TCP connection of the resolver.
pub(crate) struct OwnTcp {
    stream: TcpStream,
    _guard: SocketGuard,
}

impl AsyncRead for OwnTcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for OwnTcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

fn unspecified_like(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

type BoxIo<T> = Pin<Box<dyn Send + Future<Output = io::Result<T>>>>;

impl RuntimeProvider for OwnRuntime {
    type Handle = TokioHandle;
    type Timer = TokioTime;
    type Udp = OwnUdp;
    type Tcp = AsyncIoTokioAsStd<OwnTcp>;

    fn create_handle(&self) -> TokioHandle {
        self.inner.create_handle()
    }

    fn connect_tcp(
        &self,
        server: SocketAddr,
        bind_addr: Option<SocketAddr>,
        wait_for: Option<Duration>,
    ) -> BoxIo<Self::Tcp> {
        let sockets = self.sockets.clone();
        Box::pin(async move {
            let socket = match server {
                SocketAddr::V4(_) => TcpSocket::new_v4(),
                SocketAddr::V6(_) => TcpSocket::new_v6(),
            }?;
            // Bind before connecting so the port is known, and registered,
            // before the SYN creates the conntrack entry.
            socket.bind(bind_addr.unwrap_or_else(|| unspecified_like(server)))?;
            let guard = sockets.register(proto::TCP, socket.local_addr()?, server);
            socket.set_nodelay(true)?;
            let wait_for = wait_for.unwrap_or(CONNECT_TIMEOUT);
            match tokio::time::timeout(wait_for, socket.connect(server)).await {
                Ok(Ok(stream)) => Ok(AsyncIoTokioAsStd(OwnTcp {
                    stream,
                    _guard: guard,
                })),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "TCP connect timed out")),
            }
        })
    }

    fn bind_udp(&self, local: SocketAddr, server: SocketAddr) -> BoxIo<Self::Udp> {
        let sockets = self.sockets.clone();
        Box::pin(async move {
            let socket = UdpSocket::bind(local).await?;
            // hickory sends unconnected (send_to the server), so conntrack's
            // original tuple is (bound address -> server).
            let guard = sockets.register(proto::UDP, socket.local_addr()?, server);
            Ok(OwnUdp {
                socket,
                _guard: guard,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn unspecified_bind_matches_any_local_address_of_the_family() {
        let reg = OwnSockets::default();
        let _g = reg.register(proto::UDP, sa("0.0.0.0:40000"), sa("198.51.100.1:53"));
        assert!(reg.contains(proto::UDP, sa("192.0.2.7:40000"), sa("198.51.100.1:53")));
        assert!(!reg.contains(proto::UDP, sa("[2001:db8::1]:40000"), sa("198.51.100.1:53")));
        assert!(!reg.contains(proto::UDP, sa("192.0.2.7:40001"), sa("198.51.100.1:53")));
        assert!(!reg.contains(proto::TCP, sa("192.0.2.7:40000"), sa("198.51.100.1:53")));
        assert!(!reg.contains(proto::UDP, sa("192.0.2.7:40000"), sa("198.51.100.2:53")));
    }

    #[test]
    fn specific_bind_matches_only_that_address() {
        let reg = OwnSockets::default();
        let _g = reg.register(proto::UDP, sa("192.0.2.7:40000"), sa("198.51.100.1:53"));
        assert!(reg.contains(proto::UDP, sa("192.0.2.7:40000"), sa("198.51.100.1:53")));
        assert!(!reg.contains(proto::UDP, sa("192.0.2.8:40000"), sa("198.51.100.1:53")));
    }

    #[test]
    fn closed_sockets_linger_then_expire() {
        let reg = OwnSockets::default();
        let g = reg.register(proto::UDP, sa("0.0.0.0:40000"), sa("198.51.100.1:53"));
        drop(g);
        assert!(reg.contains(proto::UDP, sa("192.0.2.7:40000"), sa("198.51.100.1:53")));
        reg.age_closed(LINGER + Duration::from_secs(1));
        assert!(!reg.contains(proto::UDP, sa("192.0.2.7:40000"), sa("198.51.100.1:53")));
    }

    #[test]
    fn a_stale_guard_does_not_close_the_newer_socket_on_the_same_key() {
        let reg = OwnSockets::default();
        let old = reg.register(proto::UDP, sa("0.0.0.0:40000"), sa("198.51.100.1:53"));
        let _new = reg.register(proto::UDP, sa("0.0.0.0:40000"), sa("198.51.100.1:53"));
        drop(old);
        reg.age_closed(LINGER * 2);
        assert!(reg.contains(proto::UDP, sa("192.0.2.7:40000"), sa("198.51.100.1:53")));
    }

    #[test]
    fn registry_is_bounded() {
        let reg = OwnSockets::default();
        for i in 0..(MAX_SOCKETS as u32 + 100) {
            let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0xc633_6400u32 + i)), 53);
            drop(reg.register(proto::UDP, sa("0.0.0.0:40000"), server));
        }
        assert!(reg.list().len() <= MAX_SOCKETS);
    }

    #[tokio::test]
    async fn sockets_made_through_the_provider_are_registered_with_their_real_port() {
        let rt = OwnRuntime::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let server = listener.local_addr().expect("addr");
        let tcp = rt.connect_tcp(server, None, None).await.expect("connect");
        let local = tcp.0.stream.local_addr().expect("local");
        assert_ne!(local.port(), 0);
        assert!(rt.sockets.contains(proto::TCP, local, server));
        assert!(!rt
            .sockets
            .contains(proto::TCP, SocketAddr::new(local.ip(), local.port() ^ 1), server));

        let udp = rt.bind_udp(sa("127.0.0.1:0"), server).await.expect("bind");
        let local = udp.socket.local_addr().expect("local");
        assert!(rt.sockets.contains(proto::UDP, local, server));
        drop(udp);
        assert!(rt
            .sockets
            .list()
            .iter()
            .any(|&(p, l, _, open)| p == proto::UDP && l == local && !open));
    }
}
