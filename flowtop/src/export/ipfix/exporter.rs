//! The exporter thread: takes records from a bounded queue (the engine
//! never waits: a full queue drops the record and counts it), packs them
//! into IPFIX messages and sends them to the collector over UDP (one
//! message per datagram, templates again every [`TEMPLATE_EVERY`]) or TCP
//! (templates at each connection; reconnects; a bounded backlog of
//! messages while the collector is away, whose overflow is counted).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::encode::{MessageBuilder, UserNames};
use super::Record;

/// Records waiting for the exporter thread, at most.
pub const QUEUE: usize = 65_536;
/// How long a record waits for more to fill its message.
const FLUSH: Duration = Duration::from_millis(200);
/// Over UDP the collector may start after flowtop or lose a datagram:
/// templates go out again this often (RFC 7011 section 8.4).
pub const TEMPLATE_EVERY: Duration = Duration::from_secs(10);
/// A datagram that fits a 1500-byte MTU with IPv6 and UDP headers.
const UDP_MESSAGE: usize = 1400;
const TCP_MESSAGE: usize = 16_384;
/// Messages kept while a TCP collector is unreachable (~16 MiB at most).
const TCP_BACKLOG: usize = 1024;
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// The observation domain flowtop reports (one per exporter).
pub const DOMAIN: u32 = 1;

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Udp(SocketAddr),
    Tcp(SocketAddr),
}

impl Target {
    /// `HOST:PORT` or `udp://HOST:PORT` (UDP), `tcp://HOST:PORT` (TCP).
    pub fn parse(s: &str) -> Result<Target, String> {
        let (tcp, rest) = if let Some(r) = s.strip_prefix("tcp://") {
            (true, r)
        } else {
            (false, s.strip_prefix("udp://").unwrap_or(s))
        };
        let addr = rest
            .to_socket_addrs()
            .map_err(|e| format!("--ipfix {s}: not HOST:PORT ({e})"))?
            .next()
            .ok_or_else(|| format!("--ipfix {s}: the host has no address"))?;
        Ok(if tcp { Target::Tcp(addr) } else { Target::Udp(addr) })
    }
}

/// The exporter's counters (read by the metrics).
#[derive(Debug, Default)]
pub struct Stats {
    /// Records handed to the queue.
    pub records: AtomicU64,
    /// Records dropped: the queue was full, or the TCP backlog overflowed.
    pub dropped: AtomicU64,
    /// Records in messages that were sent (or written to TCP).
    pub sent: AtomicU64,
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    /// Sends that failed (UDP: the datagram is lost; TCP: a reconnect follows).
    pub send_errors: AtomicU64,
    /// TCP connections made.
    pub connects: AtomicU64,
}

/// The engine's handle on the exporter thread.
pub struct Exporter {
    tx: Option<SyncSender<Record>>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<Stats>,
}

impl Exporter {
    pub fn start(target: Target) -> io::Result<Exporter> {
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::sync_channel::<Record>(QUEUE);
        let mut transport = Transport::new(target, stats.clone())?;
        let st = stats.clone();
        let thread = std::thread::Builder::new()
            .name("flowtop-ipfix".into())
            .spawn(move || {
                let mut users = Users::default();
                let mut b = MessageBuilder::new(transport.max_len());
                let mut oldest: Option<Instant> = None;
                loop {
                    let wait = oldest.map_or(FLUSH, |t| FLUSH.saturating_sub(t.elapsed()));
                    match rx.recv_timeout(wait) {
                        Ok(r) => {
                            if b.is_empty() && transport.templates_due() {
                                b.add_templates();
                            }
                            if !b.add(&r, &mut users) {
                                transport.send(&mut b, &st);
                                if transport.templates_due() {
                                    b.add_templates();
                                }
                                if !b.add(&r, &mut users) {
                                    st.dropped.fetch_add(1, Relaxed);
                                }
                            }
                            oldest.get_or_insert_with(Instant::now);
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            if b.is_empty() && transport.templates_due() {
                                b.add_templates();
                            }
                            if !b.is_empty() {
                                transport.send(&mut b, &st);
                            }
                            transport.retry(&st);
                            oldest = None;
                        }
                        Err(RecvTimeoutError::Disconnected) => {
                            if !b.is_empty() {
                                transport.send(&mut b, &st);
                            }
                            transport.close(&st);
                            return;
                        }
                    }
                    if oldest.is_some_and(|t| t.elapsed() >= FLUSH) {
                        transport.send(&mut b, &st);
                        oldest = None;
                    }
                }
            })?;
        Ok(Exporter {
            tx: Some(tx),
            thread: Some(thread),
            stats,
        })
    }

    /// Queues a record without waiting; a full queue drops it (counted).
    pub fn send(&self, r: Record) {
        let Some(tx) = &self.tx else { return };
        self.stats.records.fetch_add(1, Relaxed);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(r) {
            self.stats.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Sends what is queued and stops the thread.
    pub fn finish(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Login names of the owners' uids (read from /etc/passwd once per uid).
#[derive(Default)]
struct Users(HashMap<u32, String>);

impl UserNames for Users {
    fn user_name(&mut self, uid: u32) -> &str {
        self.0.entry(uid).or_insert_with(|| {
            crate::ui::procinfo::user_name(std::path::Path::new("/etc/passwd"), uid)
                .unwrap_or_else(|| uid.to_string())
        })
    }
}

/// The seconds since the epoch of the message header.
fn export_secs() -> u32 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

enum Transport {
    Udp {
        sock: UdpSocket,
        to: SocketAddr,
        seq: u32,
        templates_at: Option<Instant>,
    },
    Tcp {
        to: SocketAddr,
        conn: Option<TcpStream>,
        /// Finished messages not yet written, with their record counts.
        backlog: VecDeque<(Vec<u8>, u32)>,
        seq: u32,
        last_try: Option<Instant>,
    },
}

impl Transport {
    fn new(target: Target, _stats: Arc<Stats>) -> io::Result<Transport> {
        Ok(match target {
            Target::Udp(to) => {
                let bind: SocketAddr = if to.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                // Not connected: a collector that is down makes ICMP
                // errors, which a connected socket would report on later
                // sends; each datagram stands alone.
                Transport::Udp {
                    sock: UdpSocket::bind(bind)?,
                    to,
                    seq: 0,
                    templates_at: None,
                }
            }
            Target::Tcp(to) => Transport::Tcp {
                to,
                conn: None,
                backlog: VecDeque::new(),
                seq: 0,
                last_try: None,
            },
        })
    }

    fn max_len(&self) -> usize {
        match self {
            Transport::Udp { .. } => UDP_MESSAGE,
            Transport::Tcp { .. } => TCP_MESSAGE,
        }
    }

    /// Whether the next message must start with the templates (UDP only:
    /// TCP sends them at each connection).
    fn templates_due(&self) -> bool {
        match self {
            Transport::Udp { templates_at, .. } => templates_at.is_none_or(|t| t.elapsed() >= TEMPLATE_EVERY),
            Transport::Tcp { .. } => false,
        }
    }

    /// Finishes the builder's message and sends it.
    fn send(&mut self, b: &mut MessageBuilder, st: &Stats) {
        if b.is_empty() {
            return;
        }
        let n = b.records();
        match self {
            Transport::Udp {
                sock,
                to,
                seq,
                templates_at,
            } => {
                let msg = b.finish(export_secs(), *seq, DOMAIN);
                // A message holding templates starts with a template set.
                if msg.len() > 16 && msg[16..18] == [0, 2] {
                    *templates_at = Some(Instant::now());
                }
                match sock.send_to(msg, *to) {
                    Ok(_) => {
                        st.sent.fetch_add(u64::from(n), Relaxed);
                        st.messages.fetch_add(1, Relaxed);
                        st.bytes.fetch_add(msg.len() as u64, Relaxed);
                    }
                    Err(_) => {
                        st.send_errors.fetch_add(1, Relaxed);
                    }
                }
                // Sequence numbers count records exported, sent or not.
                *seq = seq.wrapping_add(n);
            }
            Transport::Tcp { backlog, seq, .. } => {
                let msg = b.finish(export_secs(), *seq, DOMAIN).to_vec();
                *seq = seq.wrapping_add(n);
                if backlog.len() >= TCP_BACKLOG {
                    if let Some((_, lost)) = backlog.pop_front() {
                        st.dropped.fetch_add(u64::from(lost), Relaxed);
                    }
                }
                backlog.push_back((msg, n));
                self.retry(st);
            }
        }
        b.reset();
    }

    /// TCP: (re)connects when due and writes the backlog.
    fn retry(&mut self, st: &Stats) {
        let Transport::Tcp {
            to,
            conn,
            backlog,
            seq,
            last_try,
        } = self
        else {
            return;
        };
        if conn.is_none() {
            if last_try.is_some_and(|t| t.elapsed() < RECONNECT_EVERY) {
                return;
            }
            *last_try = Some(Instant::now());
            let Ok(mut c) = TcpStream::connect_timeout(to, Duration::from_secs(1)) else {
                return;
            };
            let _ = c.set_write_timeout(Some(Duration::from_secs(5)));
            // A new session: the templates first.
            let mut t = MessageBuilder::new(TCP_MESSAGE);
            t.add_templates();
            if c.write_all(t.finish(export_secs(), *seq, DOMAIN)).is_err() {
                st.send_errors.fetch_add(1, Relaxed);
                return;
            }
            st.connects.fetch_add(1, Relaxed);
            *conn = Some(c);
        }
        while let Some((msg, n)) = backlog.front() {
            let Some(c) = conn.as_mut() else { return };
            if c.write_all(msg).is_err() {
                // Part of it may have been written: the collector drops the
                // broken session; this message goes again on the next one.
                st.send_errors.fetch_add(1, Relaxed);
                *conn = None;
                return;
            }
            st.sent.fetch_add(u64::from(*n), Relaxed);
            st.messages.fetch_add(1, Relaxed);
            st.bytes.fetch_add(msg.len() as u64, Relaxed);
            backlog.pop_front();
        }
    }

    /// At exit: TCP tries once more to write its backlog; what stays is
    /// counted as dropped.
    fn close(&mut self, st: &Stats) {
        if let Transport::Tcp { last_try, .. } = self {
            *last_try = None;
        }
        self.retry(st);
        if let Transport::Tcp { backlog, conn, .. } = self {
            for (_, n) in backlog.drain(..) {
                st.dropped.fetch_add(u64::from(n), Relaxed);
            }
            if let Some(c) = conn.take() {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            Target::parse("127.0.0.1:4739"),
            Ok(Target::Udp("127.0.0.1:4739".parse().expect("addr")))
        );
        assert_eq!(
            Target::parse("tcp://[::1]:4739"),
            Ok(Target::Tcp("[::1]:4739".parse().expect("addr")))
        );
        assert!(Target::parse("nowhere").is_err());
        assert!(Target::parse("tcp://127.0.0.1").is_err());
    }

    /// Over TCP to a collector that is not there yet: the records wait in
    /// the backlog and arrive, after the templates, once it listens.
    #[test]
    fn tcp_collector_down_then_up() {
        use std::io::Read;
        // A free port: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let to: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut ex = Exporter::start(Target::Tcp(to)).expect("start");
        for _ in 0..30 {
            ex.send(record());
        }
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(ex.stats.sent.load(Relaxed), 0);
        let listener = std::net::TcpListener::bind(to).expect("listen");
        let (mut conn, _) = listener.accept().expect("the exporter reconnects");
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // Messages: the templates first, then the 30 records (sequence 0).
        let mut read_msg = || {
            let mut head = [0u8; 16];
            conn.read_exact(&mut head).expect("a message header");
            let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
            let mut rest = vec![0u8; len - 16];
            conn.read_exact(&mut rest).expect("the message");
            (head, rest)
        };
        let (_, first) = read_msg();
        assert_eq!(&first[0..2], &[0, 2], "templates first");
        let (head, data) = read_msg();
        assert_eq!(u32::from_be_bytes([head[8], head[9], head[10], head[11]]), 0);
        assert_eq!(
            u16::from_be_bytes([data[0], data[1]]),
            super::super::encode::TEMPLATE_V4
        );
        ex.finish();
        assert_eq!(ex.stats.sent.load(Relaxed), 30);
        assert_eq!(ex.stats.dropped.load(Relaxed), 0);
        assert_eq!(ex.stats.connects.load(Relaxed), 1);
    }

    fn record() -> super::super::Record {
        super::super::Record {
            src: "127.0.0.1".parse().expect("ip"),
            dst: "127.0.0.2".parse().expect("ip"),
            sport: 1,
            dport: 2,
            proto: 17,
            icmp_type_code: 0,
            octets: 10,
            packets: 1,
            start_ms: 0,
            end_ms: 1,
            end_reason: 1,
            post_src: "127.0.0.1".parse().expect("ip"),
            post_dst: "127.0.0.2".parse().expect("ip"),
            post_sport: 1,
            post_dport: 2,
            src_proc: None,
            dst_proc: None,
            name: None,
        }
    }

    /// Records sent over UDP arrive as messages whose sequence numbers
    /// count the records before them, templates in the first.
    #[test]
    fn udp_messages_reach_a_socket() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut ex = Exporter::start(Target::Udp(rx.local_addr().expect("addr"))).expect("start");
        let r = record();
        for _ in 0..50 {
            ex.send(r.clone());
        }
        ex.finish();
        let mut buf = [0u8; 2048];
        let mut seqs = Vec::new();
        let mut first = true;
        while let Ok(n) = rx.recv(&mut buf) {
            assert!(n <= UDP_MESSAGE);
            if first {
                assert_eq!(&buf[16..18], &[0, 2], "templates first");
                first = false;
            }
            seqs.push(u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]));
            if ex.stats.messages.load(Relaxed) as usize == seqs.len() {
                break;
            }
        }
        assert_eq!(ex.stats.sent.load(Relaxed), 50);
        assert_eq!(seqs[0], 0);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    }
}
