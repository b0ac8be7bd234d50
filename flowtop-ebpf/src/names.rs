//! Name captures (issue 13): the bytes a program's names are read from,
//! copied to [`NAME_EVENTS`] as [`NameEvent`] records followed by the
//! payload.
//!
//! - `cgroup_skb/ingress` ([`flowtop_name_ingress`]): DNS messages from
//!   port 53 delivered to local sockets (UDP, UDP-Lite, TCP). Every other
//!   packet is passed after a look at its socket's protocol and remote
//!   port, plus, for an unconnected UDP socket, one read of the packet's
//!   headers for its source port.
//! - in the `cgroup_skb/egress` program ([`stream_start`],
//!   [`stream_segment`], [`datagram`]): the first [`NAME_CAPTURE_MAX`]
//!   bytes a connecting TCP socket sends, and the first
//!   [`NAME_DATAGRAMS_PER_TUPLE`] datagrams of a new UDP tuple when they
//!   look like QUIC long-header packets.
//!
//! All of it is off when the [`INSPECT`] global is 0 (`--no-inspect`): the
//! verifier then knows the branches dead (a frozen read-only global) and
//! the ingress program is not attached at all.
//!
//! A record is assembled in a per-CPU scratch value (header, then the
//! payload read with `bpf_skb_load_bytes`) and copied out with
//! `bpf_ringbuf_output`, sized to what was captured: a 60-byte DNS answer
//! takes 136 bytes of the ring, not 4 KiB.

use core::ffi::c_void;
use core::ptr::{addr_of, addr_of_mut, null_mut, read_volatile};

use aya_ebpf::{
    bindings::bpf_sock,
    btf_maps::SkStorage,
    helpers::generated::{
        bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_ringbuf_output, bpf_sk_fullsock,
        bpf_sk_storage_delete, bpf_sk_storage_get, bpf_skb_load_bytes,
    },
    macros::{btf_map, cgroup_skb, map},
    maps::{PerCpuArray, RingBuf},
    programs::SkBuffContext,
    EbpfContext as _,
};
use flowtop_common::{
    NameEvent, SockState, SockTupleKey, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE,
    NAME_CAPTURE_MAX, NAME_DATAGRAMS_PER_TUPLE, NAME_EVENTS_BYTES, NAME_EVENT_DATAGRAM, NAME_EVENT_DNS,
    NAME_EVENT_STREAM, NAME_FLAG_SYN, NAME_FLAG_TCP, NAME_FLAG_TRUNCATED,
};

use crate::{count_lost_in, v4, v4_mapped, wakeup_flags_for};

/// 0 turns every capture off. Name must match
/// `flowtop_common::GLOBAL_INSPECT`; set by userspace at load time.
#[unsafe(no_mangle)]
static INSPECT: u8 = 1;

/// 1 when `bpf_get_netns_cookie` may be called from cgroup_skb programs.
/// Name must match `flowtop_common::GLOBAL_NAME_NETNS_COOKIE`.
#[unsafe(no_mangle)]
static NAME_NETNS_COOKIE: u8 = 1;

/// Whether captures are on. A volatile read: the value is set in the
/// object at load time, after compilation.
#[inline(always)]
pub(crate) fn inspect() -> bool {
    // SAFETY: a plain read of a global the loader initialises.
    unsafe { read_volatile(addr_of!(INSPECT)) != 0 }
}

/// Name events. Name must match `flowtop_common::MAP_NAME_EVENTS`.
#[map]
static NAME_EVENTS: RingBuf = RingBuf::with_byte_size(NAME_EVENTS_BYTES, 0);

/// Slot 0: name events dropped because [`NAME_EVENTS`] was full. Name must
/// match `flowtop_common::MAP_NAME_EVENTS_LOST`.
#[map]
static NAME_EVENTS_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

const CAPTURE_MAX: usize = NAME_CAPTURE_MAX as usize;
// `emit` bounds lengths with a mask.
const _: () = assert!(NAME_CAPTURE_MAX.is_power_of_two());
const HEADER: u64 = core::mem::size_of::<NameEvent>() as u64;

/// One record being assembled: the header, then the payload.
#[repr(C)]
pub struct Scratch {
    ev: NameEvent,
    bytes: [u8; CAPTURE_MAX],
}

/// Per-CPU room for one record (too big for the 512-byte stack).
#[map]
static NAME_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// [`NAME_STREAM`] value: the socket's initial sequence number, and how
/// many more packets it may send before the capture gives up on it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StreamState {
    isn: u32,
    packets_left: u32,
}

/// Packets (data or not) a connecting socket may send after its SYN while
/// its first bytes are awaited. A client that sends little and downloads
/// much sends an ACK per few segments received: without this bound each of
/// those would pay for the packet loads below until the stream passed
/// NAME_CAPTURE_MAX or closed. A ClientHello, an HTTP request or any
/// client-speaks-first protocol starts within the first few packets.
const STREAM_PACKETS: u32 = 32;

/// Per TCP socket whose first bytes are being captured. Name must match
/// `flowtop_common::MAP_NAME_STREAM`.
#[btf_map]
static NAME_STREAM: SkStorage<StreamState> = SkStorage::new();

const DNS_PORT: u16 = 53;
/// Port 53 as `__sk_buff.remote_port` reads on this (little-endian)
/// target: the socket's `skc_dport`, in network byte order, shifted into
/// the upper 16 bits by the kernel's context rewrite.
const DNS_REMOTE_PORT_CTX: u32 = (DNS_PORT.to_be() as u32) << 16;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
/// The QUIC long-header bit of a packet's first byte (RFC 9000, 17.2).
const QUIC_LONG_HEADER: u8 = 0x80;

/// Reads one field of a kernel context struct (see the macro in main.rs).
macro_rules! ctx_read {
    ($ptr:expr, $($field:tt)+) => {
        // SAFETY: `$ptr` is a context pointer the verifier tracks (program
        // context or a checked bpf_sock); the access is rewritten by the
        // kernel and checked at load time.
        unsafe { read_volatile(addr_of!((*$ptr).$($field)+)) }
    };
}

/// Sends `ev` with the `payload` bytes of the packet from offset `off`,
/// at most `room` of them (`room` at most [`NAME_CAPTURE_MAX`]); flags it
/// truncated when they are cut.
#[inline(always)]
fn emit_up_to(ctx: &SkBuffContext, ev: &mut NameEvent, off: u32, payload: u32, room: u32) {
    let take = if payload > room {
        ev.flags |= NAME_FLAG_TRUNCATED;
        room
    } else {
        payload
    };
    emit(ctx, ev, off, take);
}

/// Sends `ev` with `len` bytes of the packet from offset `off` (`len` at
/// most [`NAME_CAPTURE_MAX`]); fills in `len`, the cookies.
#[inline(always)]
fn emit(ctx: &SkBuffContext, ev: &mut NameEvent, off: u32, len: u32) {
    // Bounds the verifier can see (callers already clamp).
    if len > NAME_CAPTURE_MAX {
        return;
    }
    let Some(scratch) = NAME_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    ev.len = len;
    // SAFETY: both helpers take the program context (the skb).
    ev.cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: a plain read of a global the loader initialises; when it is
    // 0 the verifier never sees the helper call (dead branch).
    if unsafe { read_volatile(addr_of!(NAME_NETNS_COOKIE)) } != 0 {
        // SAFETY: as above.
        ev.netns_cookie = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    }
    // SAFETY: `scratch` is a valid per-CPU value (migration is disabled in
    // cgroup programs); the load writes `len` <= CAPTURE_MAX bytes into its
    // `bytes`, and the output reads the header plus those bytes.
    unsafe {
        (*scratch).ev = *ev;
        let mut size = HEADER;
        if len > 0 {
            // The verifier must see 1 <= len <= CAPTURE_MAX in the very
            // register passed to the helpers, and LLVM is free to test a
            // copy: read it back opaquely and mask it (a no-op for the
            // values that get here).
            let len = read_volatile(&len);
            let len = (len.wrapping_sub(1) & (NAME_CAPTURE_MAX - 1)) + 1;
            let rc = bpf_skb_load_bytes(
                ctx.skb.skb as *const c_void,
                off,
                addr_of_mut!((*scratch).bytes).cast::<c_void>(),
                len,
            );
            if rc != 0 {
                return;
            }
            size += u64::from(len);
        }
        let rc = bpf_ringbuf_output(
            addr_of!(NAME_EVENTS).cast_mut().cast::<c_void>(),
            scratch.cast::<c_void>(),
            size,
            wakeup_flags_for(&NAME_EVENTS, NAME_EVENTS_BYTES),
        );
        if rc < 0 {
            count_lost_in(&NAME_EVENTS_LOST);
        }
    }
}

/// The IP header facts a capture needs.
struct Ip {
    /// Offset of the transport header.
    l4: u32,
    proto: u16,
    /// Source and destination, in the socket family's form (v4-mapped for
    /// an AF_INET6 socket talking IPv4).
    src: [u8; 16],
    dst: [u8; 16],
    /// The first 8 bytes of the transport header.
    head: [u8; 8],
}

impl Ip {
    fn src_port(&self) -> u16 {
        u16::from_be_bytes([self.head[0], self.head[1]])
    }
    fn dst_port(&self) -> u16 {
        u16::from_be_bytes([self.head[2], self.head[3]])
    }
    /// TCP: the sequence number.
    fn seq(&self) -> u32 {
        u32::from_be_bytes([self.head[4], self.head[5], self.head[6], self.head[7]])
    }
}

/// Parses the IP header at offset 0 and reads the first 8 transport bytes,
/// in one `bpf_skb_load_bytes` for IPv4 without options and for IPv6 (a
/// second for IPv4 options). None for other packets, fragments and IPv6
/// extension headers.
#[inline(always)]
fn parse_ip(ctx: &SkBuffContext, family: u32) -> Option<Ip> {
    const ETH_P_IP: u16 = 0x0800;
    const ETH_P_IPV6: u16 = 0x86dd;
    let ethertype = u16::from_be(ctx_read!(ctx.skb.skb, protocol) as u16);
    if ethertype == ETH_P_IP {
        let h = ctx.load::<[u8; 28]>(0).ok()?;
        let ihl = u32::from(h[0] & 0x0f) * 4;
        let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x3fff;
        if h[0] >> 4 != 4 || ihl < 20 || fragment != 0 {
            return None;
        }
        let head = if ihl == 20 {
            [h[20], h[21], h[22], h[23], h[24], h[25], h[26], h[27]]
        } else {
            ctx.load::<[u8; 8]>(ihl as usize).ok()?
        };
        let (src, dst) = ([h[12], h[13], h[14], h[15]], [h[16], h[17], h[18], h[19]]);
        let (src, dst) = if family == u32::from(AF_INET6) {
            (v4_mapped(src), v4_mapped(dst))
        } else {
            (v4(src), v4(dst))
        };
        Some(Ip {
            l4: ihl,
            proto: u16::from(h[9]),
            src,
            dst,
            head,
        })
    } else if ethertype == ETH_P_IPV6 {
        let h = ctx.load::<[u8; 48]>(0).ok()?;
        if h[0] >> 4 != 6 {
            return None;
        }
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            src[i] = h[8 + i];
            dst[i] = h[24 + i];
            i += 1;
        }
        Some(Ip {
            l4: 40,
            proto: u16::from(h[6]),
            src,
            dst,
            head: [h[40], h[41], h[42], h[43], h[44], h[45], h[46], h[47]],
        })
    } else {
        None
    }
}

/// A TCP segment's data offset and flags (bytes 12 and 13 of its header).
#[inline(always)]
fn tcp_doff_flags(ctx: &SkBuffContext, l4: u32) -> Option<(u32, u8)> {
    let b = ctx.load::<[u8; 2]>(l4 as usize + 12).ok()?;
    Some((u32::from(b[0] >> 4) * 4, b[1]))
}

/// `cgroup_skb/ingress`: DNS answers for local sockets. Name must match
/// `flowtop_common::PROG_NAME_INGRESS`. Always lets the packet pass.
#[cgroup_skb(ingress)]
pub fn flowtop_name_ingress(ctx: SkBuffContext) -> i32 {
    on_ingress(&ctx);
    1
}

#[inline(always)]
fn on_ingress(ctx: &SkBuffContext) {
    let skb = ctx.skb.skb;
    // Every packet delivered to a local socket comes here: the common case
    // (a connected socket whose peer is not port 53: any TCP socket, a
    // connected UDP one) leaves on this one context load, with no helper
    // call. Only unconnected sockets (remote port 0) and port 53 go on.
    let remote_port = ctx_read!(skb, remote_port);
    if remote_port != 0 && remote_port != DNS_REMOTE_PORT_CTX {
        return;
    }
    let sk = ctx_read!(skb, __bindgen_anon_2.sk);
    if sk.is_null() {
        return;
    }
    // SAFETY: `sk` is the non-NULL socket of the packet; the helper returns
    // NULL for request and timewait sockets.
    let sk: *mut bpf_sock = unsafe { bpf_sk_fullsock(sk) };
    if sk.is_null() {
        return;
    }
    let protocol = ctx_read!(sk, protocol) as u16;
    let remote_port = u16::from_be(ctx_read!(sk, dst_port));
    if protocol == IPPROTO_TCP {
        if remote_port != DNS_PORT {
            return;
        }
    } else if protocol == IPPROTO_UDP || protocol == IPPROTO_UDPLITE {
        // Connected to port 53, or unconnected (the packet says).
        if remote_port != DNS_PORT && remote_port != 0 {
            return;
        }
    } else {
        return;
    }
    let family = ctx_read!(sk, family);
    let Some(ip) = parse_ip(ctx, family) else {
        return;
    };
    if ip.proto != protocol || ip.src_port() != DNS_PORT {
        return;
    }
    let mut ev = NameEvent {
        kind: NAME_EVENT_DNS,
        protocol,
        family: family as u16,
        local_port: ip.dst_port(),
        remote_port: DNS_PORT,
        local_addr: ip.dst,
        remote_addr: ip.src,
        ..NameEvent::default()
    };
    let len = ctx.len();
    let data = if protocol == IPPROTO_TCP {
        let Some((doff, flags)) = tcp_doff_flags(ctx, ip.l4) else {
            return;
        };
        ev.seq = ip.seq();
        ev.flags = NAME_FLAG_TCP;
        if flags & TCP_SYN != 0 {
            // The server's initial sequence number: where its stream starts.
            ev.flags |= NAME_FLAG_SYN;
            emit(ctx, &mut ev, 0, 0);
            return;
        }
        ip.l4 + doff
    } else {
        ip.l4 + 8
    };
    if len <= data && protocol == IPPROTO_TCP {
        // An ACK without data.
        return;
    }
    let payload = len.saturating_sub(data);
    emit_up_to(ctx, &mut ev, data, payload, NAME_CAPTURE_MAX);
}

/// `bpf_sk_storage_get` flag: create the socket's value if it has none.
const BPF_SK_STORAGE_GET_F_CREATE: u64 = 1;

#[inline(always)]
fn stream_state(sk: *mut bpf_sock, create: bool) -> *mut StreamState {
    let flags = if create { BPF_SK_STORAGE_GET_F_CREATE } else { 0 };
    // SAFETY: `sk` is a full socket the verifier tracks; the map pointer is
    // the BTF map definition, which the loader relocates to the map.
    unsafe {
        bpf_sk_storage_get(
            addr_of!(NAME_STREAM).cast_mut().cast::<c_void>(),
            sk.cast::<c_void>(),
            null_mut(),
            flags,
        )
    }
    .cast::<StreamState>()
}

/// Egress, a TCP socket's SYN (connect(2), SYN_SENT): remembers its initial
/// sequence number so that its first bytes are captured.
#[inline(always)]
pub(crate) fn stream_start(ctx: &SkBuffContext, sk: *mut bpf_sock, family: u32) {
    let Some(ip) = parse_ip(ctx, family) else {
        return;
    };
    if ip.proto != IPPROTO_TCP {
        return;
    }
    let state = stream_state(sk, true);
    if !state.is_null() {
        // SAFETY: non-NULL socket-storage value.
        unsafe {
            (*state).isn = ip.seq();
            (*state).packets_left = STREAM_PACKETS;
        }
    }
}

/// Egress, every TCP packet not sent in SYN_SENT. Sockets without a
/// [`NAME_STREAM`] value (accepted ones, older than flowtop, done) pass on
/// the failed lookup; the others have the payload of segments below
/// [`NAME_CAPTURE_MAX`] captured, and lose the value once the stream passed
/// it, at FIN or RST, or after [`STREAM_PACKETS`] packets.
#[inline(always)]
pub(crate) fn stream_segment(ctx: &SkBuffContext, sk: *mut bpf_sock) {
    let state = stream_state(sk, false);
    if state.is_null() {
        return;
    }
    // SAFETY: non-NULL socket-storage value.
    let (isn, packets_left) = unsafe { ((*state).isn, (*state).packets_left) };
    if packets_left <= 1 {
        forget_stream(sk);
        return;
    }
    // SAFETY: as above.
    unsafe { (*state).packets_left = packets_left - 1 };
    let family = ctx_read!(sk, family);
    let Some(ip) = parse_ip(ctx, family) else {
        return;
    };
    if ip.proto != IPPROTO_TCP {
        return;
    }
    let Some((doff, flags)) = tcp_doff_flags(ctx, ip.l4) else {
        return;
    };
    let data = ip.l4 + doff;
    let payload = ctx.len().saturating_sub(data);
    // Stream offset of the segment's first byte (the SYN takes sequence
    // number isn). Negative: before the stream (a keepalive probe).
    let offset = ip.seq().wrapping_sub(isn).wrapping_sub(1) as i32;
    let mut done = flags & (TCP_FIN | TCP_RST) != 0;
    if offset >= 0 {
        let offset = offset as u32;
        if offset < NAME_CAPTURE_MAX && payload > 0 {
            let room = NAME_CAPTURE_MAX - offset;
            let mut ev = NameEvent {
                kind: NAME_EVENT_STREAM,
                protocol: IPPROTO_TCP,
                family: family as u16,
                local_port: ip.src_port(),
                remote_port: ip.dst_port(),
                seq: offset,
                local_addr: ip.src,
                remote_addr: ip.dst,
                ..NameEvent::default()
            };
            emit_up_to(ctx, &mut ev, data, payload, room);
        }
        if u64::from(offset) + u64::from(payload) >= u64::from(NAME_CAPTURE_MAX) {
            done = true;
        }
    }
    if done {
        forget_stream(sk);
    }
}

/// Drops the socket's [`NAME_STREAM`] value: its later packets pass on the
/// failed lookup.
#[inline(always)]
fn forget_stream(sk: *mut bpf_sock) {
    // SAFETY: `sk` is a full socket the verifier tracks.
    unsafe {
        bpf_sk_storage_delete(
            addr_of!(NAME_STREAM).cast_mut().cast::<c_void>(),
            sk.cast::<c_void>(),
        )
    };
}

/// The budget a newly reported tuple of a socket of `protocol` gets.
#[inline(always)]
pub(crate) fn datagram_budget(protocol: u16) -> u32 {
    if inspect() && (protocol == IPPROTO_UDP || protocol == IPPROTO_UDPLITE) {
        NAME_DATAGRAMS_PER_TUPLE
    } else {
        0
    }
}

/// Egress, a datagram of a UDP tuple whose budget is not spent: spends one
/// unit, and captures the datagram when it starts like a QUIC long-header
/// packet.
#[inline(always)]
pub(crate) fn datagram(ctx: &SkBuffContext, state: *mut SockState, key: &SockTupleKey) {
    // SAFETY: non-NULL socket-storage value (checked by the caller).
    unsafe {
        let left = (*state).datagrams_left;
        if left == 0 {
            return;
        }
        (*state).datagrams_left = left - 1;
    }
    let t = &key.tuple;
    let Some(ip) = parse_ip(ctx, u32::from(t.family)) else {
        return;
    };
    if ip.proto != t.protocol {
        return;
    }
    let data = ip.l4 + 8;
    let Ok(first) = ctx.load::<u8>(data as usize) else {
        return;
    };
    if first & QUIC_LONG_HEADER == 0 {
        return;
    }
    let payload = ctx.len().saturating_sub(data);
    let mut ev = NameEvent {
        kind: NAME_EVENT_DATAGRAM,
        protocol: t.protocol,
        family: t.family,
        local_port: t.local_port,
        remote_port: t.remote_port,
        local_addr: t.local_addr,
        remote_addr: t.remote_addr,
        ..NameEvent::default()
    };
    emit_up_to(ctx, &mut ev, data, payload, NAME_CAPTURE_MAX);
}
