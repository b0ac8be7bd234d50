//! A small PTR server over UDP, for tests and benchmarks (the
//! `ptr_server` example wraps it). Not part of flowtop's interface, hence
//! here and not in flowtop's library.
//!
//! Written on a raw tokio UDP socket with hickory-proto's message types
//! rather than on hickory-server: the misbehaviours tests need (never answer,
//! answer late, answer with malformed bytes or the wrong record type, names
//! with control bytes in a label) and the counters they check (queries seen,
//! most answered concurrently, query source addresses) are each a few lines
//! here. It needs none of flowtop's types, so flowtop's own unit tests can
//! run it in-process.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, PTR};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// PTR for known addresses, NXDOMAIN otherwise.
    #[default]
    Answer,
    /// Counts queries, never answers.
    Silent,
    /// Answers with a malformed packet (right id, truncated records).
    Garbage,
    /// Answers a well-formed message with an A record instead of a PTR.
    WrongType,
}

/// What the server knows and how it behaves.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// Address -> target name. Labels are split on '.', and their bytes are
    /// used as they are, so a name may hold control bytes.
    pub ptr: HashMap<IpAddr, String>,
    /// TTL of PTR answers, seconds.
    pub ttl: u32,
    pub mode: Mode,
    /// Wait this long before answering.
    pub delay: Duration,
}

/// Counters the tests read.
#[derive(Debug, Default)]
pub struct Counters {
    queries: AtomicUsize,
    active: AtomicUsize,
    max_active: AtomicUsize,
    peers: Mutex<Vec<SocketAddr>>,
}

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct PtrServer {
    addr: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

/// A name from text whose labels are raw bytes (no escapes, no IDNA).
pub fn raw_name(text: &str) -> Result<Name, String> {
    let labels = text.trim_end_matches('.').split('.').map(str::as_bytes);
    let mut name = Name::from_labels(labels).map_err(|e| format!("bad name {text:?}: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

/// The address a reverse name stands for (full-length names only).
fn arpa_addr(name: &Name) -> Option<IpAddr> {
    let net = name.parse_arpa_name().ok()?;
    let full = if net.addr().is_ipv4() { 32 } else { 128 };
    (net.prefix_len() == full).then(|| net.addr())
}

/// The reply to `packet`, or `None` for no reply.
pub fn respond(packet: &[u8], cfg: &ServerConfig) -> Option<Vec<u8>> {
    let query = Message::from_vec(packet).ok()?;
    if query.metadata.message_type != MessageType::Query {
        return None;
    }
    let id = query.metadata.id;
    match cfg.mode {
        Mode::Silent => return None,
        Mode::Garbage => {
            // Header: our id, "response, no error", 1 question, 1 answer,
            // then a label that claims 63 bytes and stops after three.
            let mut out = id.to_be_bytes().to_vec();
            out.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 63, b'x', b'y', b'z']);
            return Some(out);
        }
        Mode::Answer | Mode::WrongType => {}
    }
    let mut reply = Message::response(id, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    let Some(q) = query.queries.first().cloned() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply.to_vec().ok();
    };
    reply.add_query(q.clone());
    if cfg.mode == Mode::WrongType {
        let a = RData::A(A::new(192, 0, 2, 99));
        reply.add_answer(Record::from_rdata(q.name.clone(), cfg.ttl, a));
        return reply.to_vec().ok();
    }
    let target = (q.query_type == RecordType::PTR)
        .then(|| arpa_addr(&q.name))
        .flatten()
        .and_then(|ip| cfg.ptr.get(&ip))
        .and_then(|t| raw_name(t).ok());
    match target {
        Some(t) => {
            reply.add_answer(Record::from_rdata(q.name.clone(), cfg.ttl, RData::PTR(PTR(t))));
        }
        None => reply.metadata.response_code = ResponseCode::NXDomain,
    }
    reply.to_vec().ok()
}

impl PtrServer {
    /// Binds `listen` (port 0 for any) and serves in a tokio task.
    pub async fn start(listen: SocketAddr, cfg: ServerConfig) -> io::Result<PtrServer> {
        let socket = Arc::new(UdpSocket::bind(listen).await?);
        let addr = socket.local_addr()?;
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(serve(socket, Arc::new(cfg), Arc::clone(&counters)));
        Ok(PtrServer { addr, counters, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queries received (answered or not).
    pub fn queries(&self) -> usize {
        self.counters.queries.load(Ordering::SeqCst)
    }

    /// Most queries being answered (waiting out `delay`) at one time.
    pub fn max_concurrent(&self) -> usize {
        self.counters.max_active.load(Ordering::SeqCst)
    }

    /// Source addresses of the queries, in arrival order.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.counters.peers.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Serves until the task ends (it does not, short of a socket error).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for PtrServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: Arc<UdpSocket>, cfg: Arc<ServerConfig>, counters: Arc<Counters>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            return;
        };
        counters.queries.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut p) = counters.peers.lock() {
            if p.len() < 100_000 {
                p.push(peer);
            }
        }
        let Some(reply) = respond(&buf[..n], &cfg) else {
            continue;
        };
        let (socket, cfg, counters) = (Arc::clone(&socket), Arc::clone(&cfg), Arc::clone(&counters));
        // One task per query, so a delay overlaps queries as a real server
        // would, and the overlap is what `max_concurrent` measures.
        tokio::spawn(async move {
            let now = counters.active.fetch_add(1, Ordering::SeqCst) + 1;
            counters.max_active.fetch_max(now, Ordering::SeqCst);
            if !cfg.delay.is_zero() {
                tokio::time::sleep(cfg.delay).await;
            }
            counters.active.fetch_sub(1, Ordering::SeqCst);
            let _ = socket.send_to(&reply, peer).await;
        });
    }
}
