//! Types shared between the eBPF program (`flowtop-ebpf`, built for
//! `bpfel-unknown-none`) and userspace (`flowtop`, feature `user`).
//!
//! Every type here is `#[repr(C)]`, uses fixed-width integers only, spells out
//! its padding, and has a compile-time size assertion: the eBPF object and the
//! userspace binary are compiled separately and must agree byte for byte.
#![no_std]

use core::mem::size_of;

/// Address families as they appear in [`SockEvent::family`].
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

// ---------------------------------------------------------------------------
// Socket ownership events (cgroup programs -> ring buffer)
// ---------------------------------------------------------------------------

/// `cgroup/sock_create` program: one [`SockEvent`] of kind
/// [`SOCK_EVENT_CREATED`] per AF_INET/AF_INET6 socket(2), in the creating
/// process's context.
pub const PROG_SOCK_CREATE: &str = "flowtop_sock_create";
/// `cgroup_skb/egress` program: one [`SockEvent`] of kind
/// [`SOCK_EVENT_TUPLE`] per socket and distinct address tuple it sends from.
/// TCP sockets report from their SYN only (sent by connect(2), in
/// SYN_SENT, with no dedupe state: a retransmitted SYN repeats its event);
/// every other TCP packet is passed on one load of the socket's state. Other sockets cost one socket-local storage lookup
/// ([`MAP_SOCK_STATE`]) per packet while they repeat their latest tuple.
pub const PROG_SOCK_EGRESS: &str = "flowtop_sock_egress";
/// `cgroup/post_bind4` and `cgroup/post_bind6` programs: one [`SockEvent`]
/// of kind [`SOCK_EVENT_BOUND`] per bind(2) of an AF_INET/AF_INET6 socket,
/// with the bound address and port. Userspace keeps those of other network
/// namespaces only: the listener behind a container's published port, still
/// known when its process is gone before a `/proc` scan could see it.
pub const PROG_SOCK_POST_BIND4: &str = "flowtop_post_bind4";
pub const PROG_SOCK_POST_BIND6: &str = "flowtop_post_bind6";
/// Ring buffer of [`SockEvent`]s written by the socket programs.
pub const MAP_SOCK_EVENTS: &str = "SOCK_EVENTS";
/// Size of [`MAP_SOCK_EVENTS`] in bytes (a power-of-two multiple of the page
/// size): about 11 900 events.
pub const SOCK_EVENTS_BYTES: u32 = 1 << 20;
/// LRU hash, [`SockTupleKey`] -> 0: the (socket, tuple) pairs the egress
/// program has reported for non-TCP sockets, consulted only when a socket
/// sends with a tuple other than its latest one ([`MAP_SOCK_STATE`]), e.g.
/// an unconnected UDP socket alternating between peers.
pub const MAP_SOCK_SEEN: &str = "SOCK_SEEN";
/// Capacity of [`MAP_SOCK_SEEN`]. When more (socket, tuple) pairs than this
/// are active, the least recently used are forgotten and reported again (a
/// duplicate TUPLE event) when they next send.
pub const SOCK_SEEN_ENTRIES: u32 = 65536;
/// Socket-local storage (`BPF_MAP_TYPE_SK_STORAGE`, a BTF map), value
/// [`SockState`]: per non-TCP socket, its cookie and the latest tuple it was
/// reported (or found in [`MAP_SOCK_SEEN`]) with, and the datagram budget of
/// the name capture. Freed with the socket.
pub const MAP_SOCK_STATE: &str = "SOCK_STATE";
/// Per-CPU array with one `u64`: events dropped because [`MAP_SOCK_EVENTS`]
/// was full.
pub const MAP_SOCK_EVENTS_LOST: &str = "SOCK_EVENTS_LOST";

/// [`SockEvent::kind`]: a socket was created (socket(2)).
pub const SOCK_EVENT_CREATED: u32 = 1;
/// [`SockEvent::kind`]: a socket sent a packet with an address tuple not
/// reported for it before.
pub const SOCK_EVENT_TUPLE: u32 = 2;
/// [`SockEvent::kind`]: a socket was bound (bind(2)): `local_addr` and
/// `local_port` are set (the address may be the wildcard), the remote end
/// is zero.
pub const SOCK_EVENT_BOUND: u32 = 4;

/// IP protocol numbers as they appear in [`SockEvent::protocol`].
pub const IPPROTO_ICMP: u16 = 1;
pub const IPPROTO_TCP: u16 = 6;
pub const IPPROTO_UDP: u16 = 17;
pub const IPPROTO_ICMPV6: u16 = 58;
pub const IPPROTO_UDPLITE: u16 = 136;

/// One socket ownership event, as written to [`MAP_SOCK_EVENTS`].
///
/// `cookie` (the kernel's socket cookie, unique per socket for the boot) is
/// the join key between a CREATED event (who) and TUPLE events (what).
///
/// Valid fields per kind:
/// - both: `kind`, `cookie`, `protocol`, `family`.
/// - [`SOCK_EVENT_CREATED`]: `tgid`, `uid`, `comm`, `cgroup_id` (of the process calling
///   socket(2)), `netns_cookie`. The tuple fields are zero.
/// - [`SOCK_EVENT_TUPLE`]: `local_*`, `remote_*`, and `uid` = the socket's
///   owner uid (`sk_uid`). `tgid`, `comm` and `netns_cookie` are zero: the
///   packet may be sent from softirq context, where the current task is
///   unrelated.
/// - [`SOCK_EVENT_KPROBE`]: tuple and owner together (see there).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockEvent {
    /// [`SOCK_EVENT_CREATED`], [`SOCK_EVENT_TUPLE`] or [`SOCK_EVENT_KPROBE`].
    pub kind: u32,
    /// Process (thread group) id of the creator (CREATED only).
    pub tgid: u32,
    /// CREATED: the creator's uid; TUPLE: the socket's owner uid.
    pub uid: u32,
    /// `IPPROTO_*` of the socket (6 tcp, 17 udp, 136 udplite, 1 icmp,
    /// 58 icmpv6, raw sockets: their protocol; 0 unknown). TUPLE events of
    /// raw sockets: the protocol of the packet (IPPROTO_RAW sends any).
    pub protocol: u16,
    /// Socket family: [`AF_INET`] or [`AF_INET6`]. An AF_INET6 socket talking
    /// IPv4 has v4-mapped addresses (`::ffff:a.b.c.d`).
    pub family: u16,
    /// `bpf_get_socket_cookie` of the socket: the join key.
    pub cookie: u64,
    /// Cookie of the socket's network namespace (CREATED; 0 if unavailable).
    pub netns_cookie: u64,
    /// `comm` of the creating thread, NUL-padded (CREATED).
    pub comm: [u8; 16],
    /// Host byte order (TUPLE). For ping sockets and ICMP queries sent on
    /// raw sockets: the echo identifier.
    pub local_port: u16,
    /// Host byte order (TUPLE). 0 for protocols without ports.
    pub remote_port: u16,
    /// Inode number of the creating task's network namespace (CREATED; 0
    /// when the kernel's BTF did not give the offsets to read it): names
    /// another namespace's socket even after its process is gone, when
    /// /proc can no longer say.
    pub netns_inode: u32,
    /// Network byte order; IPv4 in the first 4 bytes, the rest zero (TUPLE).
    pub local_addr: [u8; 16],
    /// Network byte order; IPv4 in the first 4 bytes, the rest zero (TUPLE).
    pub remote_addr: [u8; 16],
    /// cgroup v2 id (`bpf_get_current_cgroup_id`, the inode number of the
    /// cgroup's directory) of the creating task (CREATED; 0 otherwise).
    pub cgroup_id: u64,
}

const _: () = assert!(size_of::<SockEvent>() == 96);
const _: () = assert!(core::mem::align_of::<SockEvent>() == 8);

/// Byte offsets of [`SockEvent`] (a layout check for both sides).
pub mod sock_event_offsets {
    use super::SockEvent as E;
    use core::mem::offset_of;

    pub const KIND: usize = offset_of!(E, kind);
    pub const TGID: usize = offset_of!(E, tgid);
    pub const UID: usize = offset_of!(E, uid);
    pub const PROTOCOL: usize = offset_of!(E, protocol);
    pub const FAMILY: usize = offset_of!(E, family);
    pub const COOKIE: usize = offset_of!(E, cookie);
    pub const NETNS_COOKIE: usize = offset_of!(E, netns_cookie);
    pub const COMM: usize = offset_of!(E, comm);
    pub const LOCAL_PORT: usize = offset_of!(E, local_port);
    pub const REMOTE_PORT: usize = offset_of!(E, remote_port);
    pub const LOCAL_ADDR: usize = offset_of!(E, local_addr);
    pub const REMOTE_ADDR: usize = offset_of!(E, remote_addr);
    pub const CGROUP_ID: usize = offset_of!(E, cgroup_id);
    pub const NETNS_INODE: usize = offset_of!(E, netns_inode);

    const _: () = assert!(KIND == 0 && TGID == 4 && UID == 8 && PROTOCOL == 12 && FAMILY == 14);
    const _: () = assert!(COOKIE == 16 && NETNS_COOKIE == 24 && COMM == 32);
    const _: () = assert!(LOCAL_PORT == 48 && REMOTE_PORT == 50);
    const _: () = assert!(LOCAL_ADDR == 56 && REMOTE_ADDR == 72 && CGROUP_ID == 88);
}

impl SockEvent {
    /// `comm` up to its first NUL.
    pub fn comm_bytes(&self) -> &[u8] {
        let end = self.comm.iter().position(|&b| b == 0).unwrap_or(self.comm.len());
        &self.comm[..end]
    }
}

/// An address tuple of a socket, as reported in a TUPLE event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockTuple {
    /// Network byte order, as in [`SockEvent::local_addr`].
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    /// Host byte order.
    pub local_port: u16,
    pub remote_port: u16,
    pub protocol: u16,
    pub family: u16,
}

const _: () = assert!(size_of::<SockTuple>() == 40);

/// Key of [`MAP_SOCK_SEEN`] and value of [`MAP_SOCK_STATE`]: a socket
/// cookie and one tuple it sent with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockTupleKey {
    pub cookie: u64,
    pub tuple: SockTuple,
}

const _: () = assert!(size_of::<SockTupleKey>() == 48);
// The eBPF side compares tuples as five aligned words.
const _: () = assert!(core::mem::offset_of!(SockTupleKey, tuple) == 8);
const _: () = assert!(core::mem::align_of::<SockTupleKey>() == 8);

/// Value of [`MAP_SOCK_STATE`]: the socket's latest reported tuple (with
/// its cookie) and how many more datagrams of that tuple the egress program
/// inspects for names ([`NAME_DATAGRAMS_PER_TUPLE`] when the tuple is new,
/// counted down per datagram sent; 0 once spent, for a tuple found already
/// reported, for non-UDP sockets, and with inspection off).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockState {
    pub key: SockTupleKey,
    pub datagrams_left: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
}

const _: () = assert!(size_of::<SockState>() == 56);
const _: () = assert!(core::mem::offset_of!(SockState, key) == 0);

// ---------------------------------------------------------------------------
// Name captures (issue 13): DNS answers and the first bytes of flows
// ---------------------------------------------------------------------------

/// `cgroup_skb/ingress` program: a [`NameEvent`] of kind [`NAME_EVENT_DNS`]
/// per UDP datagram or TCP segment from port 53 delivered to a local socket.
/// Every other packet is passed after a look at its socket's remote port
/// (and, for unconnected UDP sockets, at the packet's source port).
pub const PROG_NAME_INGRESS: &str = "flowtop_name_ingress";
/// Ring buffer of [`NameEvent`]s, each followed by `len` captured bytes.
pub const MAP_NAME_EVENTS: &str = "NAME_EVENTS";
/// Size of [`MAP_NAME_EVENTS`] in bytes.
pub const NAME_EVENTS_BYTES: u32 = 1 << 21;
/// Per-CPU array with one `u64`: name events dropped because
/// [`MAP_NAME_EVENTS`] was full.
pub const MAP_NAME_EVENTS_LOST: &str = "NAME_EVENTS_LOST";
/// Most bytes captured per event (payload after the transport header). A
/// DNS answer longer than this is not parsed (flagged
/// [`NAME_FLAG_TRUNCATED`]); the first bytes of a flow are captured up to
/// this stream offset in all.
pub const NAME_CAPTURE_MAX: u32 = 4096;
/// Global (`u8`) of the eBPF object: 0 turns every payload capture off
/// (`--no-inspect`), in the egress program too.
pub const GLOBAL_INSPECT: &str = "INSPECT";
/// Global (`u8`) of the eBPF object: 1 when the kernel lets cgroup_skb
/// programs call `bpf_get_netns_cookie` (Linux 6.15 on); the loader tries 1
/// first and loads again with 0 when the verifier refuses, and then
/// [`NameEvent::netns_cookie`] is 0.
pub const GLOBAL_NAME_NETNS_COOKIE: &str = "NAME_NETNS_COOKIE";
/// Datagrams inspected per new (UDP socket, tuple): each of the first this
/// many datagrams a socket sends with a tuple newly reported for it costs
/// one budget unit ([`SockState::datagrams_left`]), and is captured
/// ([`NAME_EVENT_DATAGRAM`]) when its first byte has the QUIC long-header
/// bit: Initial packets, whose ClientHello may span two or three datagrams.
/// Later datagrams of the tuple are not looked at.
pub const NAME_DATAGRAMS_PER_TUPLE: u32 = 3;
/// Socket-local storage (BTF map) of the egress program, value: the
/// initial sequence number (`u32`, then 4 bytes of padding) of a TCP socket
/// whose first bytes are being captured. Created at the SYN of connect(2),
/// deleted once the stream passed [`NAME_CAPTURE_MAX`] or at FIN/RST: the
/// only steady-state cost of stream capture is the failed lookup of it.
pub const MAP_NAME_STREAM: &str = "NAME_STREAM";

/// [`NameEvent::kind`]: a DNS message from port 53 received by a local
/// socket (UDP payload, or a TCP segment's payload: see
/// [`NAME_FLAG_TCP`]).
pub const NAME_EVENT_DNS: u32 = 1;
/// [`NameEvent::kind`]: payload of a data segment a TCP socket that called
/// connect(2) while flowtop ran sent, starting at stream offset `seq` (0 is
/// the first byte after the SYN), for segments starting below
/// [`NAME_CAPTURE_MAX`]. A segment crossing that offset is captured up to
/// it (flagged [`NAME_FLAG_TRUNCATED`]), so a stream's captures never go
/// beyond its first [`NAME_CAPTURE_MAX`] bytes. Retransmissions capture
/// their offsets again (same bytes): consumers dedupe by offset. Data in
/// the SYN (TCP Fast Open) is not captured.
pub const NAME_EVENT_STREAM: u32 = 2;
/// [`NameEvent::kind`]: a UDP datagram a local socket sent, among the first
/// of its tuple, whose first byte has the QUIC long-header bit (0x80).
pub const NAME_EVENT_DATAGRAM: u32 = 3;

/// [`NameEvent::flags`]: DNS over TCP (the bytes are a segment of a stream
/// of 2-byte-length-prefixed messages; `seq` is the raw TCP sequence number).
pub const NAME_FLAG_TCP: u32 = 1;
/// [`NameEvent::flags`]: the packet's payload was longer than the captured
/// bytes.
pub const NAME_FLAG_TRUNCATED: u32 = 2;
/// [`NameEvent::flags`]: a TCP segment with SYN set (DNS over TCP: the
/// server's SYN-ACK, `seq` is its initial sequence number, no payload).
pub const NAME_FLAG_SYN: u32 = 4;

/// Header of one [`MAP_NAME_EVENTS`] record; `len` captured bytes follow it.
///
/// The tuple is the local socket's: for [`NAME_EVENT_DNS`] `local_*` is the
/// packet's destination and `remote_*` its source (port 53); for the egress
/// kinds `local_*` is the packet's source. Addresses as in [`SockEvent`]
/// (IPv4 in the first 4 bytes for AF_INET; an AF_INET6 socket talking IPv4
/// has v4-mapped addresses).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameEvent {
    /// [`NAME_EVENT_DNS`], [`NAME_EVENT_STREAM`] or [`NAME_EVENT_DATAGRAM`].
    pub kind: u32,
    /// Bytes following this header (at most [`NAME_CAPTURE_MAX`]).
    pub len: u32,
    /// `bpf_get_socket_cookie` of the local socket (joins its CREATED event).
    pub cookie: u64,
    /// Cookie of the socket's network namespace (0 if unavailable).
    pub netns_cookie: u64,
    /// `IPPROTO_TCP` or `IPPROTO_UDP` (UDP-Lite: `IPPROTO_UDPLITE`).
    pub protocol: u16,
    /// [`AF_INET`] or [`AF_INET6`] (the socket's).
    pub family: u16,
    /// Host byte order.
    pub local_port: u16,
    /// Host byte order.
    pub remote_port: u16,
    /// [`NAME_EVENT_STREAM`]: stream offset of the first captured byte;
    /// DNS over TCP: the segment's TCP sequence number; else 0.
    pub seq: u32,
    /// `NAME_FLAG_*` bits.
    pub flags: u32,
    /// Network byte order.
    pub local_addr: [u8; 16],
    /// Network byte order.
    pub remote_addr: [u8; 16],
}

const _: () = assert!(size_of::<NameEvent>() == 72);
const _: () = assert!(core::mem::align_of::<NameEvent>() == 8);

// ---------------------------------------------------------------------------
// Socket ownership from kprobes (used where the kernel can attach them)
// ---------------------------------------------------------------------------

/// [`SockEvent::kind`]: tuple and owner in one event, from a kprobe in the
/// process context of connect(2), accept(2) or a send call.
///
/// Valid fields: `tgid`, `uid`, `comm` (of the calling thread), `protocol`
/// (the socket's `sk_protocol`, or the probe's protocol where the kernel's
/// BTF has no plain `sock.sk_protocol`), `family` (the socket's), `local_*`
/// and `remote_*` (addresses in [`SockEvent::local_addr`] form; an AF_INET6
/// socket talking IPv4 has v4-mapped addresses), `netns_cookie` (the
/// namespace's `net_cookie`, the value `bpf_get_netns_cookie` returns; 0 if
/// the kernel's BTF has no `net.net_cookie`).
///
/// `cookie` is the socket's `sk_cookie` as stored in the socket: 0 until
/// something (e.g. the cgroup programs) asked for the socket's cookie, so it
/// is not a join key here. None is needed: the event is self-contained.
///
/// For an unconnected UDP or ping socket the local address is the socket's
/// bound address, which is the unspecified address (all zero) unless it was
/// bound to one; the route picks the real source later. The remote address
/// and both ports are exact. One event is sent per (socket, process, tuple)
/// while the socket is remembered in [`MAP_KPROBE_SEEN`].
pub const SOCK_EVENT_KPROBE: u32 = 3;

/// `kprobe/tcp_connect`: a TCP connect(2), IPv4 and IPv6, once the local
/// port is chosen.
pub const PROG_KPROBE_TCP_CONNECT: &str = "flowtop_kp_tcp_connect";
/// `kretprobe/inet_csk_accept`: the socket accept(2) returns.
pub const PROG_KRETPROBE_INET_CSK_ACCEPT: &str = "flowtop_krp_inet_csk_accept";
/// `kprobe/udp_sendmsg`: sends on AF_INET UDP and UDP-Lite sockets,
/// connected (tuple from the socket) or not (peer from the message).
pub const PROG_KPROBE_UDP_SENDMSG: &str = "flowtop_kp_udp_sendmsg";
/// `kprobe/udpv6_sendmsg`: as [`PROG_KPROBE_UDP_SENDMSG`] for AF_INET6
/// sockets (IPv6 and v4-mapped peers).
pub const PROG_KPROBE_UDPV6_SENDMSG: &str = "flowtop_kp_udpv6_sendmsg";
/// `kprobe/ping_v4_sendmsg`: sends on ICMP ping sockets (local port = echo
/// identifier).
pub const PROG_KPROBE_PING_V4_SENDMSG: &str = "flowtop_kp_ping_v4_sendmsg";
/// `kprobe/ping_v6_sendmsg`: as [`PROG_KPROBE_PING_V4_SENDMSG`] for ICMPv6.
pub const PROG_KPROBE_PING_V6_SENDMSG: &str = "flowtop_kp_ping_v6_sendmsg";

/// Every kprobe program: `(program name, kernel function, is a kretprobe)`.
pub const KPROBE_PROGRAMS: [(&str, &str, bool); 6] = [
    (PROG_KPROBE_TCP_CONNECT, "tcp_connect", false),
    (PROG_KRETPROBE_INET_CSK_ACCEPT, "inet_csk_accept", true),
    (PROG_KPROBE_UDP_SENDMSG, "udp_sendmsg", false),
    (PROG_KPROBE_UDPV6_SENDMSG, "udpv6_sendmsg", false),
    (PROG_KPROBE_PING_V4_SENDMSG, "ping_v4_sendmsg", false),
    (PROG_KPROBE_PING_V6_SENDMSG, "ping_v6_sendmsg", false),
];

/// LRU hash, [`KprobeSeenKey`] -> 0: what the send probes have reported, so
/// a busy socket costs no event. A send repeating the key the probes last
/// saw on that CPU (kept in a one-slot per-CPU array) skips even the lookup.
pub const MAP_KPROBE_SEEN: &str = "KPROBE_SEEN";
/// Capacity of [`MAP_KPROBE_SEEN`] (loads that do not attach the kprobes
/// shrink it to one entry).
pub const KPROBE_SEEN_ENTRIES: u32 = 16384;

/// Key of [`MAP_KPROBE_SEEN`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KprobeSeenKey {
    /// Kernel address of the `struct sock` (identity only).
    pub sk: u64,
    /// The sending process.
    pub tgid: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
    pub tuple: SockTuple,
}

const _: () = assert!(size_of::<KprobeSeenKey>() == 56);
// The kprobes compare keys as seven aligned words.
const _: () = assert!(core::mem::align_of::<KprobeSeenKey>() == 8);

/// Name of the global ([`SockOffsets`]) the kprobe programs read kernel
/// struct offsets from. Userspace sets it at load time from the running
/// kernel's BTF (`/sys/kernel/btf/vmlinux`): Rust eBPF has no CO-RE.
pub const GLOBAL_SOCK_OFFSETS: &str = "SOCK_OFFSETS";
/// A [`SockOffsets`] field the kernel does not have (or that was not set).
pub const OFFSET_ABSENT: u32 = u32::MAX;

/// Byte offsets of the kernel struct fields the kprobe programs read with
/// `bpf_probe_read_kernel`. Every field is [`OFFSET_ABSENT`] until set; the
/// programs do nothing while a required one is absent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockOffsets {
    /// `sock.__sk_common.skc_family` (u16). Required.
    pub skc_family: u32,
    /// `sock.__sk_common.skc_num`: local port, host order (u16). Required.
    pub skc_num: u32,
    /// `sock.__sk_common.skc_dport`: remote port, network order. Required.
    pub skc_dport: u32,
    /// `sock.__sk_common.skc_rcv_saddr` (IPv4, network order). Required.
    pub skc_rcv_saddr: u32,
    /// `sock.__sk_common.skc_daddr` (IPv4, network order). Required.
    pub skc_daddr: u32,
    /// `sock.__sk_common.skc_v6_rcv_saddr` (16 bytes; absent without IPv6).
    pub skc_v6_rcv_saddr: u32,
    /// `sock.__sk_common.skc_v6_daddr` (16 bytes; absent without IPv6).
    pub skc_v6_daddr: u32,
    /// `sock.__sk_common.skc_cookie` (u64, 0 until allocated).
    pub skc_cookie: u32,
    /// `sock.__sk_common.skc_net.net` (pointer to `struct net`).
    pub skc_net: u32,
    /// `net.net_cookie` (u64).
    pub net_cookie: u32,
    /// `sock.sk_protocol` (u16; a bitfield before Linux 5.6: then absent).
    pub sk_protocol: u32,
    /// `msghdr.msg_name` (pointer to the kernel copy of the peer address).
    pub msg_name: u32,
    /// `msghdr.msg_namelen` (int).
    pub msg_namelen: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
}

const _: () = assert!(size_of::<SockOffsets>() == 56);

impl SockOffsets {
    /// Every offset absent (the value compiled into the eBPF object).
    pub const ABSENT: Self = Self {
        skc_family: OFFSET_ABSENT,
        skc_num: OFFSET_ABSENT,
        skc_dport: OFFSET_ABSENT,
        skc_rcv_saddr: OFFSET_ABSENT,
        skc_daddr: OFFSET_ABSENT,
        skc_v6_rcv_saddr: OFFSET_ABSENT,
        skc_v6_daddr: OFFSET_ABSENT,
        skc_cookie: OFFSET_ABSENT,
        skc_net: OFFSET_ABSENT,
        net_cookie: OFFSET_ABSENT,
        sk_protocol: OFFSET_ABSENT,
        msg_name: OFFSET_ABSENT,
        msg_namelen: OFFSET_ABSENT,
        _pad: 0,
    };
}

impl Default for SockOffsets {
    fn default() -> Self {
        Self::ABSENT
    }
}

// ---------------------------------------------------------------------------
// Process lifecycle: exec and fork (raw tracepoints -> their own ring buffer)
// ---------------------------------------------------------------------------

/// `raw_tp/sched_process_exec`: one [`ExecEvent`] per successful execve(2),
/// in the new program's context (its mm and comm are already the new ones).
pub const PROG_SCHED_EXEC: &str = "flowtop_sched_exec";
/// `raw_tp/sched_process_fork`: one [`ForkEvent`] per new process (new
/// threads are skipped).
pub const PROG_SCHED_FORK: &str = "flowtop_sched_fork";
/// The tracepoints the two programs attach to (raw tracepoints by name: no
/// tracefs and no BTF id needed).
pub const TP_SCHED_EXEC: &str = "sched_process_exec";
pub const TP_SCHED_FORK: &str = "sched_process_fork";
/// Ring buffer of [`ExecEvent`]s and [`ForkEvent`]s, apart from
/// [`MAP_SOCK_EVENTS`]: exec records are seven times bigger than socket
/// events, and a burst of them must not crowd socket events out.
pub const MAP_EXEC_EVENTS: &str = "EXEC_EVENTS";
/// Size of [`MAP_EXEC_EVENTS`] in bytes: about 1 800 exec records.
pub const EXEC_EVENTS_BYTES: u32 = 1 << 20;
/// Per-CPU array with one `u64`: exec/fork records dropped because
/// [`MAP_EXEC_EVENTS`] was full.
pub const MAP_EXEC_EVENTS_LOST: &str = "EXEC_EVENTS_LOST";

/// [`ExecEvent::kind`].
pub const PROC_EVENT_EXEC: u32 = 1;
/// [`ForkEvent::kind`].
pub const PROC_EVENT_FORK: u32 = 2;

/// Bytes of the executable path an [`ExecEvent`] carries (NUL included).
pub const EXEC_PATH_MAX: usize = 256;
/// Bytes of the argument area an [`ExecEvent`] carries (the first bytes of
/// `argv`, NUL-separated, as in `/proc/PID/cmdline`).
pub const EXEC_ARGS_MAX: usize = 256;

/// One execve(2), as written to [`MAP_EXEC_EVENTS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    /// [`PROC_EVENT_EXEC`].
    pub kind: u32,
    /// The process (thread group id) that exec'd.
    pub tgid: u32,
    /// Thread group id of its parent (`real_parent`).
    pub ppid: u32,
    /// Real uid of the process.
    pub uid: u32,
    /// When the process started (`task_struct.start_time`: CLOCK_MONOTONIC
    /// nanoseconds), 0 if unreadable. With `tgid` it names the process
    /// across pid reuse.
    pub start_ns: u64,
    /// The new program's comm (basename of the path, 15 bytes, NUL-padded).
    pub comm: [u8; 16],
    /// The parent process's comm (its thread group leader's).
    pub parent_comm: [u8; 16],
    /// Bytes of `path` used, NUL excluded (0: unreadable).
    pub path_len: u32,
    /// Bytes of `args` used (0: unreadable or none).
    pub args_len: u32,
    /// `linux_binprm.interp`: the path of the binary that runs (the
    /// interpreter for a `#!` script), as the caller named it (not made
    /// absolute, symlinks not resolved).
    pub path: [u8; EXEC_PATH_MAX],
    /// The first bytes of `mm->arg_start..arg_end`.
    pub args: [u8; EXEC_ARGS_MAX],
}

const _: () = assert!(size_of::<ExecEvent>() == 576);
const _: () = assert!(core::mem::align_of::<ExecEvent>() == 8);

/// One new process (fork/clone without CLONE_THREAD), as written to
/// [`MAP_EXEC_EVENTS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkEvent {
    /// [`PROC_EVENT_FORK`].
    pub kind: u32,
    /// The new process.
    pub tgid: u32,
    /// The process that made it (its thread group id).
    pub ppid: u32,
    /// Real uid of the forking task.
    pub uid: u32,
    /// The child's `task_struct.start_time` (CLOCK_MONOTONIC ns), 0 if unreadable.
    pub start_ns: u64,
    /// The child's comm (a copy of the forking thread's).
    pub comm: [u8; 16],
    /// The parent process's comm (its thread group leader's).
    pub parent_comm: [u8; 16],
}

const _: () = assert!(size_of::<ForkEvent>() == 56);

/// Name of the global ([`TaskOffsets`]) the exec/fork programs read kernel
/// struct offsets from; set by userspace from the running kernel's BTF.
pub const GLOBAL_TASK_OFFSETS: &str = "TASK_OFFSETS";

/// Byte offsets of the `task_struct`, `mm_struct` and `linux_binprm` fields
/// the exec/fork programs read with `bpf_probe_read_kernel`. Every field is
/// [`OFFSET_ABSENT`] until set; the programs do nothing while `tgid` is.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskOffsets {
    /// `task_struct.pid` (pid_t). Required.
    pub pid: u32,
    /// `task_struct.tgid` (pid_t). Required.
    pub tgid: u32,
    /// `task_struct.real_parent` (pointer). Required.
    pub real_parent: u32,
    /// `task_struct.group_leader` (pointer).
    pub group_leader: u32,
    /// `task_struct.comm` (16 bytes).
    pub comm: u32,
    /// `task_struct.mm` (pointer).
    pub mm: u32,
    /// `task_struct.start_time` (u64).
    pub start_time: u32,
    /// `mm_struct.arg_start` (unsigned long).
    pub arg_start: u32,
    /// `mm_struct.arg_end` (unsigned long).
    pub arg_end: u32,
    /// `linux_binprm.filename` (pointer to the path execve was given).
    pub filename: u32,
    /// `linux_binprm.interp` (pointer to the path of what runs).
    pub interp: u32,
    /// `task_struct.nsproxy` (pointer), for the socket programs' namespace
    /// inode (with the next two).
    pub nsproxy: u32,
    /// `nsproxy.net_ns` (pointer to `struct net`).
    pub net_ns: u32,
    /// `net.ns.inum` (unsigned int: the namespace's inode number).
    pub ns_inum: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
}

const _: () = assert!(size_of::<TaskOffsets>() == 60);

impl TaskOffsets {
    /// Every offset absent (the value compiled into the eBPF object).
    pub const ABSENT: Self = Self {
        pid: OFFSET_ABSENT,
        tgid: OFFSET_ABSENT,
        real_parent: OFFSET_ABSENT,
        group_leader: OFFSET_ABSENT,
        comm: OFFSET_ABSENT,
        mm: OFFSET_ABSENT,
        start_time: OFFSET_ABSENT,
        arg_start: OFFSET_ABSENT,
        arg_end: OFFSET_ABSENT,
        filename: OFFSET_ABSENT,
        interp: OFFSET_ABSENT,
        nsproxy: OFFSET_ABSENT,
        net_ns: OFFSET_ABSENT,
        ns_inum: OFFSET_ABSENT,
        _pad: 0,
    };
}

impl Default for TaskOffsets {
    fn default() -> Self {
        Self::ABSENT
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: these types are `#[repr(C)]`, `Copy`, consist only of integers
    // and integer arrays, have no implicit padding (padding is an explicit
    // field), and every bit pattern is a valid value.
    unsafe impl aya::Pod for super::SockEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockTuple {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockTupleKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::NameEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KprobeSeenKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TaskOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ExecEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ForkEvent {}
}
