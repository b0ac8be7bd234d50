//! flowtop's eBPF programs, built for `bpfel-unknown-none` by `flowtop/build.rs`
//! (aya-build) and embedded into the `flowtop` binary.
//!
//! Programs:
//! - `cgroup/sock_create` ([`flowtop_sock_create`]): a CREATED
//!   [`SockEvent`] per AF_INET/AF_INET6 socket, in the creator's context.
//! - `cgroup_skb/egress` ([`flowtop_sock_egress`]): a TUPLE [`SockEvent`]
//!   per (socket, address tuple) the first time a packet is sent with it.
//! - kprobes on `tcp_connect`, `inet_csk_accept` (return), `udp_sendmsg`,
//!   `udpv6_sendmsg`, `ping_v4_sendmsg` and `ping_v6_sendmsg` ([`kprobe`]):
//!   KPROBE [`SockEvent`]s (tuple and owner in one), for kernels that can
//!   attach kprobes. They read `struct sock` at offsets userspace takes from
//!   the running kernel's BTF.
//!
//! - `cgroup_skb/ingress` and parts of the egress program ([`names`]): the
//!   bytes names are read from (DNS answers, the first bytes of connecting
//!   TCP streams, QUIC Initial datagrams), unless `--no-inspect`.
//!
//! The cgroup programs read only the UAPI context structs (`bpf_sock`,
//! `__sk_buff`), which the kernel rewrites for itself: no CO-RE needed.
//!
//! On any target other than bpf the crate is an ordinary (std) binary whose
//! `main` only says so: that keeps `cargo clippy -p flowtop-ebpf` on the host
//! target working (a `no_std` binary would need `panic = "abort"` there).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod exec;
mod kprobe;
mod names;

use core::ffi::c_void;
use core::ptr::{addr_of, null_mut, read_volatile};

use aya_ebpf::{
    bindings::{bpf_sock, BPF_ANY},
    btf_maps::SkStorage,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_sk_fullsock, bpf_sk_storage_get},
    },
    macros::{btf_map, cgroup_skb, cgroup_sock, map},
    maps::{LruHashMap, PerCpuArray, RingBuf},
    programs::{SkBuffContext, SockContext},
    EbpfContext as _,
};
use flowtop_common::{
    SockEvent, SockState, SockTuple, SockTupleKey, AF_INET, AF_INET6, IPPROTO_ICMP, IPPROTO_ICMPV6,
    IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, SOCK_EVENTS_BYTES, SOCK_EVENT_BOUND, SOCK_EVENT_CREATED,
    SOCK_EVENT_TUPLE, SOCK_SEEN_ENTRIES,
};

// ---------------------------------------------------------------------------
// Socket ownership events
// ---------------------------------------------------------------------------

/// CREATED and TUPLE events. Name must match `flowtop_common::MAP_SOCK_EVENTS`.
#[map]
static SOCK_EVENTS: RingBuf = RingBuf::with_byte_size(SOCK_EVENTS_BYTES, 0);

/// (cookie, tuple) pairs already reported by the egress program, for
/// sockets that send with more than one tuple (an unconnected UDP socket
/// talking to several peers): [`SOCK_STATE`] holds only the latest. Name
/// must match `flowtop_common::MAP_SOCK_SEEN`.
#[map]
static SOCK_SEEN: LruHashMap<SockTupleKey, u32> = LruHashMap::with_max_entries(SOCK_SEEN_ENTRIES, 0);

/// Per socket (socket-local storage, freed with the socket): its cookie and
/// the tuple it last sent with that is known to be reported, and that
/// tuple's datagram budget for name captures. A repeat of that tuple, the
/// common case, costs this one lookup and no hash of the tuple (and, with
/// inspection on, one load of the budget). `cookie == 0` means nothing
/// reported yet (cookies start at 1). Name must match
/// `flowtop_common::MAP_SOCK_STATE`.
#[btf_map]
static SOCK_STATE: SkStorage<SockState> = SkStorage::new();

/// Slot 0: events dropped because the ring buffer was full. Name must match
/// `flowtop_common::MAP_SOCK_EVENTS_LOST`.
#[map]
static SOCK_EVENTS_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn count_lost() {
    count_lost_in(&SOCK_EVENTS_LOST);
}

/// Counts one event dropped for want of room in slot 0 of `lost`, a
/// ring buffer's per-CPU lost counter (one per ring buffer).
#[inline(always)]
fn count_lost_in(lost: &PerCpuArray<u64>) {
    if let Some(lost) = lost.get_ptr_mut(0) {
        // SAFETY: pointer from a successful per-CPU array lookup; cgroup
        // and tracing programs run with migration disabled.
        unsafe { *lost = (*lost).wrapping_add(1) };
    }
}

/// Reads one field of a kernel context struct with a single load of exactly
/// the field's size: the verifier rewrites context accesses field by field
/// and refuses loads that LLVM might otherwise merge or widen.
macro_rules! ctx_read {
    ($ptr:expr, $($field:tt)+) => {
        // SAFETY: `$ptr` is a context pointer the verifier tracks (program
        // context or a checked bpf_sock); the access is rewritten by the
        // kernel and checked at load time.
        unsafe { read_volatile(addr_of!((*$ptr).$($field)+)) }
    };
}

/// `cgroup/sock_create`: runs in socket(2), in the creating thread's
/// context. Name must match `flowtop_common::PROG_SOCK_CREATE`. Always
/// allows the socket.
#[cgroup_sock(sock_create)]
pub fn flowtop_sock_create(ctx: SockContext) -> i32 {
    on_sock_create(&ctx);
    1
}

#[inline(always)]
fn on_sock_create(ctx: &SockContext) {
    let sk: *mut bpf_sock = ctx.sock;
    let family = ctx_read!(sk, family);
    if family != u32::from(AF_INET) && family != u32::from(AF_INET6) {
        return;
    }
    let protocol = ctx_read!(sk, protocol);
    send_sock_event(
        ctx,
        SockEvent {
            kind: SOCK_EVENT_CREATED,
            protocol: protocol as u16,
            family: family as u16,
            comm: bpf_get_current_comm().unwrap_or([0; 16]),
            // SAFETY: no arguments; the current task's cgroup v2 id.
            cgroup_id: unsafe { bpf_get_current_cgroup_id() },
            netns_inode: exec::current_netns_inode(),
            ..SockEvent::default()
        },
    );
}

/// Sends `ev` for the socket of `ctx`, made or bound by the current task:
/// its cookie, its namespace's cookie, and the task's pid and uid are
/// filled in here.
#[inline(always)]
fn send_sock_event(ctx: &SockContext, ev: SockEvent) {
    let Some(mut entry) = SOCK_EVENTS.reserve::<SockEvent>(0) else {
        count_lost();
        return;
    };
    // SAFETY: both helpers take the program context (a bpf_sock here) and
    // have no other preconditions.
    let (cookie, netns_cookie) = unsafe {
        (
            bpf_get_socket_cookie(ctx.as_ptr()),
            bpf_get_netns_cookie(ctx.as_ptr()),
        )
    };
    entry.write(SockEvent {
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        uid: bpf_get_current_uid_gid() as u32,
        cookie,
        netns_cookie,
        ..ev
    });
    entry.submit(wakeup_flags());
}

/// `cgroup/post_bind4`: runs in bind(2) of an AF_INET socket, once the
/// address is bound. Name must match `flowtop_common::PROG_SOCK_POST_BIND4`.
/// Always allows the bind.
#[cgroup_sock(post_bind4)]
pub fn flowtop_post_bind4(ctx: SockContext) -> i32 {
    on_post_bind(&ctx, false);
    1
}

/// `cgroup/post_bind6`: as [`flowtop_post_bind4`] for AF_INET6 sockets.
/// Name must match `flowtop_common::PROG_SOCK_POST_BIND6`.
#[cgroup_sock(post_bind6)]
pub fn flowtop_post_bind6(ctx: SockContext) -> i32 {
    on_post_bind(&ctx, true);
    1
}

/// A BOUND event: the socket's cookie and its bound address and port (the
/// owner is the CREATED event's, joined by cookie in userspace).
#[inline(always)]
fn on_post_bind(ctx: &SockContext, v6: bool) {
    let sk: *mut bpf_sock = ctx.sock;
    let protocol = ctx_read!(sk, protocol);
    let port = ctx_read!(sk, src_port);
    let mut local_addr = [0u8; 16];
    if v6 {
        let words = [
            ctx_read!(sk, src_ip6[0]),
            ctx_read!(sk, src_ip6[1]),
            ctx_read!(sk, src_ip6[2]),
            ctx_read!(sk, src_ip6[3]),
        ];
        for (i, w) in words.iter().enumerate() {
            // Network byte order in memory, as the field holds it.
            local_addr[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
    } else {
        local_addr[..4].copy_from_slice(&ctx_read!(sk, src_ip4).to_ne_bytes());
    }
    send_sock_event(
        ctx,
        SockEvent {
            kind: SOCK_EVENT_BOUND,
            protocol: protocol as u16,
            family: if v6 { AF_INET6 } else { AF_INET },
            local_port: port as u16,
            local_addr,
            ..SockEvent::default()
        },
    );
}

/// `cgroup_skb/egress`: every packet a socket sends. Name must match
/// `flowtop_common::PROG_SOCK_EGRESS`. Always lets the packet pass.
#[cgroup_skb(egress)]
pub fn flowtop_sock_egress(ctx: SkBuffContext) -> i32 {
    on_egress(&ctx);
    1
}

/// `TCP_SYN_SENT` (include/net/tcp_states.h), as in `bpf_sock.state`.
const TCP_SYN_SENT: u32 = 2;

/// `bpf_sk_storage_get` flag: create the socket's value if it has none.
const BPF_SK_STORAGE_GET_F_CREATE: u64 = 1;

/// The socket's [`SOCK_STATE`] value, created (zeroed) if `create`.
#[inline(always)]
fn sock_state(sk: *mut bpf_sock, create: bool) -> *mut SockState {
    let flags = if create { BPF_SK_STORAGE_GET_F_CREATE } else { 0 };
    // SAFETY: `sk` is a full socket checked by bpf_sk_fullsock (the helper
    // takes any socket pointer the verifier tracks); the map pointer is the
    // BTF map definition, which the loader relocates to the map.
    unsafe {
        bpf_sk_storage_get(
            addr_of!(SOCK_STATE).cast_mut().cast::<c_void>(),
            sk.cast::<c_void>(),
            null_mut(),
            flags,
        )
    }
    .cast::<SockState>()
}

/// The tuple of a key as five words, for a compare without a byte loop (the
/// tuple is 40 bytes at offset 8 of an 8-aligned struct).
#[inline(always)]
fn tuple_words(key: *const SockTupleKey) -> *const [u64; 5] {
    // SAFETY: only computes an address inside `*key`.
    unsafe { addr_of!((*key).tuple) }.cast::<[u64; 5]>()
}

#[inline(always)]
fn same_tuple(a: *const SockTupleKey, b: *const SockTupleKey) -> bool {
    // SAFETY: both point to live, 8-aligned SockTupleKeys (a stack value or
    // a socket-storage value the verifier checked for NULL).
    let (a, b) = unsafe { (&*tuple_words(a), &*tuple_words(b)) };
    a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4]
}

/// `SOCK_RAW` (include/linux/net.h), as in `bpf_sock.type`.
const SOCK_RAW: u32 = 3;

/// The socket's own addresses and ports: complete for a connected socket
/// (TCP in SYN_SENT, connected UDP, a ping socket, whose local port is the
/// echo identifier).
#[inline(always)]
fn tuple_from_socket(sk: *mut bpf_sock, family: u32, t: &mut SockTuple) {
    t.local_port = ctx_read!(sk, src_port) as u16;
    t.remote_port = u16::from_be(ctx_read!(sk, dst_port));
    if family == u32::from(AF_INET) {
        // src_ip4/dst_ip4 hold the address in network byte order: their
        // in-memory bytes are the address bytes.
        t.local_addr = v4(ctx_read!(sk, src_ip4).to_ne_bytes());
        t.remote_addr = v4(ctx_read!(sk, dst_ip4).to_ne_bytes());
    } else {
        t.local_addr = v6([
            ctx_read!(sk, src_ip6[0]),
            ctx_read!(sk, src_ip6[1]),
            ctx_read!(sk, src_ip6[2]),
            ctx_read!(sk, src_ip6[3]),
        ]);
        t.remote_addr = v6([
            ctx_read!(sk, dst_ip6[0]),
            ctx_read!(sk, dst_ip6[1]),
            ctx_read!(sk, dst_ip6[2]),
            ctx_read!(sk, dst_ip6[3]),
        ]);
    }
}

#[inline(always)]
fn on_egress(ctx: &SkBuffContext) {
    let skb = ctx.skb.skb;
    let sk = ctx_read!(skb, __bindgen_anon_2.sk);
    if sk.is_null() {
        return;
    }
    // SAFETY: `sk` is the non-NULL socket of the packet; the helper returns
    // NULL for request and timewait sockets.
    let sk = unsafe { bpf_sk_fullsock(sk) };
    if sk.is_null() {
        return;
    }
    let protocol = ctx_read!(sk, protocol) as u16;
    // A TCP socket's tuple is complete in its SYN, which connect(2) sends
    // from the calling process, in SYN_SENT: every other TCP packet (the
    // steady state) is passed on this one load of the socket's state, with
    // no helper call and no look at the packet. Accepted sockets never are
    // in SYN_SENT and have no socket(2) owner anyway (userspace matches
    // them to their listener).
    //
    // With inspection on, that steady state also asks for the socket's
    // stream-capture value, which only sockets that connected while flowtop
    // ran have, until their first bytes are captured: see names.rs.
    if protocol == IPPROTO_TCP && ctx_read!(sk, state) != TCP_SYN_SENT {
        if names::inspect() {
            names::stream_segment(ctx, sk);
        }
        return;
    }
    let family = ctx_read!(sk, family);
    let mut key = SockTupleKey::default();
    let t = &mut key.tuple;
    t.family = family as u16;
    t.protocol = protocol;
    if family != u32::from(AF_INET) && family != u32::from(AF_INET6) {
        return;
    }
    if ctx_read!(sk, type_) == SOCK_RAW {
        // A raw socket's own fields do not name the flow: its "local port"
        // is its protocol number, and with IP_HDRINCL (IPPROTO_RAW) the
        // packet may carry any protocol. Everything comes from the packet.
        // (Raw sockets of protocol TCP, among them the kernel's own that
        // send RSTs, were passed above: never in SYN_SENT.)
        if !tuple_from_packet(ctx, family, t) {
            return;
        }
    } else {
        tuple_from_socket(sk, family, t);
        // An unconnected UDP socket has no peer in the socket: take this
        // packet's addresses and ports from its headers.
        if t.remote_port == 0 && (protocol == IPPROTO_UDP || protocol == IPPROTO_UDPLITE) {
            tuple_from_packet(ctx, family, t);
        }
    }

    if protocol == IPPROTO_TCP {
        // A SYN: reported as it is, with no state kept. A retransmitted
        // SYN reports the same tuple again, which userspace takes as a
        // repeat; keeping socket storage to suppress that rare duplicate
        // would cost an allocation per TCP socket.
        // SAFETY: as below.
        key.cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
        report(ctx, &key);
        if names::inspect() {
            names::stream_start(ctx, sk, family);
        }
        return;
    }

    // The steady state of every other socket: the tuple it last reported.
    let state = sock_state(sk, false);
    if !state.is_null() {
        // SAFETY: non-NULL socket-storage value.
        let cookie = unsafe { (*state).key.cookie };
        // SAFETY: only computes the address of the value's key.
        if cookie != 0 && same_tuple(unsafe { addr_of!((*state).key) }, &key) {
            // SAFETY: as above.
            if names::inspect() && unsafe { (*state).datagrams_left } != 0 {
                names::datagram(ctx, state, &key);
            }
            return;
        }
        key.cookie = cookie;
    }
    if key.cookie == 0 {
        // SAFETY: the helper takes the program context (the skb) and
        // returns the cookie of skb->sk (allocating it on first use).
        key.cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    }
    let key = &key;
    // Not the latest tuple: reported before if the socket alternates
    // between peers.
    let mut datagrams_left = 0;
    if SOCK_SEEN.get_ptr(key).is_none() {
        if !report(ctx, key) {
            // Not remembered as seen: the next packet tries again.
            return;
        }
        // A full map evicts its least recently used entry; an error here
        // only means a later packet reports the tuple again.
        let _ = SOCK_SEEN.insert(key, 0, u64::from(BPF_ANY));
        // A new tuple: its first datagrams are looked at for names.
        datagrams_left = names::datagram_budget(protocol);
    }
    // Remember it as the socket's latest (creating the value on the first
    // report). Without memory for it the socket just stays on this path:
    // SOCK_SEEN still keeps the events unique.
    let state = if state.is_null() {
        sock_state(sk, true)
    } else {
        state
    };
    if !state.is_null() {
        // SAFETY: non-NULL socket-storage value, written as a whole.
        unsafe {
            *state = SockState {
                key: *key,
                datagrams_left,
                _pad: 0,
            }
        };
        if datagrams_left != 0 {
            // This datagram is the tuple's first.
            names::datagram(ctx, state, key);
        }
    }
}

/// Sends a TUPLE event for `key`; false when the ring buffer was full.
#[inline(always)]
fn report(ctx: &SkBuffContext, key: &SockTupleKey) -> bool {
    let Some(mut entry) = SOCK_EVENTS.reserve::<SockEvent>(0) else {
        count_lost();
        return false;
    };
    let t = &key.tuple;
    entry.write(SockEvent {
        kind: SOCK_EVENT_TUPLE,
        uid: ctx.get_socket_uid(),
        protocol: t.protocol,
        family: t.family,
        cookie: key.cookie,
        local_port: t.local_port,
        remote_port: t.remote_port,
        local_addr: t.local_addr,
        remote_addr: t.remote_addr,
        ..SockEvent::default()
    });
    entry.submit(wakeup_flags());
    true
}

/// [`wakeup_flags_for`] [`SOCK_EVENTS`].
#[inline(always)]
fn wakeup_flags() -> u64 {
    wakeup_flags_for(&SOCK_EVENTS, SOCK_EVENTS_BYTES)
}

/// `bpf_ringbuf_submit` flags for `ring` of `bytes` bytes: no wakeup per
/// event (the reader drains every poll interval anyway; a wakeup per event
/// cost more than the event), but a forced one once the buffer is a quarter
/// full, so bursts cannot overflow it.
#[inline(always)]
fn wakeup_flags_for(ring: &RingBuf, bytes: u32) -> u64 {
    const BPF_RB_NO_WAKEUP: u64 = 1;
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    const BPF_RB_AVAIL_DATA: u64 = 0;
    if ring.query(BPF_RB_AVAIL_DATA) > u64::from(bytes / 4) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[inline(always)]
fn v4(a: [u8; 4]) -> [u8; 16] {
    [a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// An IPv4 address as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
#[inline(always)]
fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3]]
}

#[inline(always)]
fn v6(w: [u32; 4]) -> [u8; 16] {
    let (a, b, c, d) = (
        w[0].to_ne_bytes(),
        w[1].to_ne_bytes(),
        w[2].to_ne_bytes(),
        w[3].to_ne_bytes(),
    );
    [
        a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1], d[2], d[3],
    ]
}

/// Fills `t`'s protocol, addresses and ports from the packet's IP header
/// and the first 8 bytes of its transport header (for cgroup_skb, offset 0
/// is the IP header), as conntrack will tuple it. False, `t` partly
/// written, for what it cannot parse or does not report (see [`l4_ends`]):
/// non-first fragments, IPv6 extension headers.
///
/// This runs for every packet of an unconnected UDP or raw socket, so the
/// common case is one `bpf_skb_load_bytes` call: the IP version comes from
/// `__sk_buff.protocol` (set before the egress hook), not from the packet.
/// A packet too short for the transport bytes (a raw one of a portless
/// protocol) costs a second, shorter read.
#[inline(always)]
fn tuple_from_packet(ctx: &SkBuffContext, family: u32, t: &mut SockTuple) -> bool {
    const ETH_P_IP: u16 = 0x0800;
    const ETH_P_IPV6: u16 = 0x86dd;
    // The EtherType in network byte order, in the low 16 bits.
    let ethertype = u16::from_be(ctx_read!(ctx.skb.skb, protocol) as u16);
    let (proto, ends);
    if ethertype == ETH_P_IP {
        // The header without options and 8 transport bytes.
        let (h, l4) = match ctx.load::<[u8; 28]>(0) {
            Ok(h) => (
                [
                    h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12], h[13],
                    h[14], h[15], h[16], h[17], h[18], h[19],
                ],
                Some([h[20], h[21], h[22], h[23], h[24], h[25], h[26], h[27]]),
            ),
            Err(_) => match ctx.load::<[u8; 20]>(0) {
                Ok(h) => (h, None),
                Err(_) => return false,
            },
        };
        let ihl = usize::from(h[0] & 0x0f) * 4;
        let fragment_offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
        if h[0] >> 4 != 4 || ihl < 20 || fragment_offset != 0 {
            return false;
        }
        let l4 = if ihl == 20 {
            l4
        } else {
            // IP options: a second read for the transport bytes.
            ctx.load::<[u8; 8]>(ihl).ok()
        };
        proto = u16::from(h[9]);
        let Some(e) = l4_ends(proto, IPPROTO_ICMP, l4) else {
            return false;
        };
        ends = e;
        let (src, dst) = ([h[12], h[13], h[14], h[15]], [h[16], h[17], h[18], h[19]]);
        // An AF_INET6 socket sending IPv4 reports v4-mapped addresses, like
        // its connected peers.
        if family == u32::from(AF_INET6) {
            (t.local_addr, t.remote_addr) = (v4_mapped(src), v4_mapped(dst));
        } else {
            (t.local_addr, t.remote_addr) = (v4(src), v4(dst));
        }
    } else if ethertype == ETH_P_IPV6 {
        // The fixed header and 8 transport bytes.
        let (h, l4) = match ctx.load::<[u8; 48]>(0) {
            Ok(h) => {
                let mut f = [0u8; 40];
                let mut i = 0;
                while i < 40 {
                    f[i] = h[i];
                    i += 1;
                }
                (f, Some([h[40], h[41], h[42], h[43], h[44], h[45], h[46], h[47]]))
            }
            Err(_) => match ctx.load::<[u8; 40]>(0) {
                Ok(h) => (h, None),
                Err(_) => return false,
            },
        };
        // Extension headers (hop-by-hop, routing, fragment, AH, destination
        // options) hide the transport protocol: not followed.
        if h[0] >> 4 != 6 || matches!(h[6], 0 | 43 | 44 | 51 | 60) {
            return false;
        }
        proto = u16::from(h[6]);
        let Some(e) = l4_ends(proto, IPPROTO_ICMPV6, l4) else {
            return false;
        };
        ends = e;
        let mut i = 0;
        while i < 16 {
            t.local_addr[i] = h[8 + i];
            t.remote_addr[i] = h[24 + i];
            i += 1;
        }
    } else {
        return false;
    }
    t.protocol = proto;
    (t.local_port, t.remote_port) = ends;
    true
}

/// The (local, remote) "ports" conntrack's tuple of protocol `proto` has,
/// from the first 8 bytes of the transport header (`None`: the packet has
/// fewer): the ports for the protocols that have them (the first 4 bytes
/// for TCP, UDP, UDP-Lite, SCTP and DCCP); the identifier and 0 for an
/// ICMP query (`icmp` is the family's ICMP number; the same form the ping
/// sockets report); 0 and 0 for the protocols conntrack tracks without
/// ports. None for what is not reported: ICMP other than queries (replies
/// and errors, which conntrack files under their request's flow, and the
/// neighbour discovery the kernel's own raw sockets send).
#[inline(always)]
fn l4_ends(proto: u16, icmp: u16, l4: Option<[u8; 8]>) -> Option<(u16, u16)> {
    const IPPROTO_DCCP: u16 = 33;
    const IPPROTO_SCTP: u16 = 132;
    if matches!(
        proto,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP | IPPROTO_DCCP
    ) {
        let p = l4?;
        return Some((u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])));
    }
    if proto == icmp {
        let p = l4?;
        // Echo, timestamp, information and address mask requests (ICMP);
        // echo request (ICMPv6): what conntrack tracks by identifier.
        let query = if icmp == IPPROTO_ICMP {
            matches!(p[0], 8 | 13 | 15 | 17)
        } else {
            p[0] == 128
        };
        return query.then(|| (u16::from_be_bytes([p[4], p[5]]), 0));
    }
    Some((0, 0))
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // eBPF programs cannot unwind or abort; the verifier rejects any program
    // in which this is reachable, so it never runs.
    loop {}
}

/// "Dual MIT/GPL" is GPL-compatible for the kernel (needed for GPL-only helpers
/// in later programs).
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!(
        "flowtop-ebpf is an eBPF object for the bpfel-unknown-none target; \
         it is built and embedded by flowtop's build script"
    );
    std::process::exit(2);
}
