//! kprobe programs: one [`SockEvent`] of kind [`SOCK_EVENT_KPROBE`] (tuple
//! and owner together) from the process context of connect(2), accept(2)
//! and the UDP / ping send calls, for kernels that can attach kprobes.
//!
//! Programs (names in `flowtop_common::KPROBE_PROGRAMS`):
//! - `kprobe/tcp_connect`: TCP connect, IPv4 and IPv6; the local port is
//!   already chosen there.
//! - `kretprobe/inet_csk_accept`: the socket accept(2) returns.
//! - `kprobe/udp_sendmsg`, `kprobe/udpv6_sendmsg`: UDP and UDP-Lite sends,
//!   connected (tuple from the socket) or not (peer from `msg_name`).
//! - `kprobe/ping_v4_sendmsg`, `kprobe/ping_v6_sendmsg`: ICMP ping sockets.
//!
//! `struct sock` and `struct msghdr` are read with `bpf_probe_read_kernel` at
//! offsets from the [`SOCK_OFFSETS`] global, which userspace sets at load
//! time from the running kernel's BTF (Rust eBPF has no CO-RE relocations).
//! While a required offset is absent (never set) the programs do nothing.

use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_probe_read_kernel,
    },
    macros::{kprobe, kretprobe, map},
    maps::{LruHashMap, PerCpuArray},
    programs::{ProbeContext, RetProbeContext},
};
use flowtop_common::{
    KprobeSeenKey, SockEvent, SockOffsets, SockTuple, AF_INET, AF_INET6, IPPROTO_ICMP, IPPROTO_ICMPV6,
    IPPROTO_TCP, IPPROTO_UDP, KPROBE_SEEN_ENTRIES, OFFSET_ABSENT, SOCK_EVENT_KPROBE,
};

use crate::{count_lost, v4, v4_mapped, wakeup_flags, SOCK_EVENTS};

/// Kernel struct offsets. Name must match
/// `flowtop_common::GLOBAL_SOCK_OFFSETS`; set by userspace at load time.
#[unsafe(no_mangle)]
static SOCK_OFFSETS: SockOffsets = SockOffsets::ABSENT;

/// What the send probes have reported. Name must match
/// `flowtop_common::MAP_KPROBE_SEEN`.
#[map]
static KPROBE_SEEN: LruHashMap<KprobeSeenKey, u32> = LruHashMap::with_max_entries(KPROBE_SEEN_ENTRIES, 0);

/// Per CPU, the key the send probes last reported or found in
/// [`KPROBE_SEEN`]: a socket repeating its send (the common case) is passed
/// on a compare with it, without hashing the key. Socket-local storage would
/// be the per-socket equivalent, but kprobes see an untyped `struct sock`
/// pointer, which `bpf_sk_storage_get` does not take.
#[map]
static KPROBE_LAST: PerCpuArray<KprobeSeenKey> = PerCpuArray::with_max_entries(1, 0);

/// Whether two keys are equal, word by word (56 bytes, 8-aligned).
#[inline(always)]
fn same_key(a: *const KprobeSeenKey, b: *const KprobeSeenKey) -> bool {
    // SAFETY: both point to live KprobeSeenKeys (a stack value and a checked
    // per-CPU array value), which are 8-aligned and 56 bytes long.
    let (a, b) = unsafe { (&*a.cast::<[u64; 7]>(), &*b.cast::<[u64; 7]>()) };
    a[0] == b[0]
        && a[1] == b[1]
        && a[2] == b[2]
        && a[3] == b[3]
        && a[4] == b[4]
        && a[5] == b[5]
        && a[6] == b[6]
}

/// One offset out of [`SOCK_OFFSETS`]. A volatile read: the value is set in
/// the object by the loader, after compilation, so it must not be folded.
macro_rules! offset {
    ($field:ident) => {
        // SAFETY: reading a field of a static; the loader only replaces the
        // bytes of the (read-only) section it lives in.
        unsafe { read_volatile(addr_of!(SOCK_OFFSETS.$field)) }
    };
}

/// Reads a `T` at `base + offset` of kernel memory (None when the offset is
/// absent or the read faults).
#[inline(always)]
fn read_at<T>(base: *const u8, offset: u32) -> Option<T> {
    if offset == OFFSET_ABSENT {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address itself and fails
    // (instead of faulting) on a bad one; nothing here dereferences it.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize).cast::<T>()).ok() }
}

/// Whether a returned kernel pointer is a socket (not NULL or an ERR_PTR).
#[inline(always)]
fn is_kernel_ptr(p: *const u8) -> bool {
    let a = p as u64;
    a != 0 && a < (-4095i64) as u64
}

/// The socket's family if it is AF_INET or AF_INET6.
#[inline(always)]
fn inet_family(sk: *const u8) -> Option<u16> {
    let family: u16 = read_at(sk, offset!(skc_family))?;
    (family == AF_INET || family == AF_INET6).then_some(family)
}

/// The socket's own tuple: bound/connected addresses and ports.
#[inline(always)]
fn sock_tuple(sk: *const u8, family: u16, default_protocol: u16) -> Option<SockTuple> {
    let mut t = SockTuple {
        family,
        protocol: read_at::<u16>(sk, offset!(sk_protocol)).unwrap_or(default_protocol),
        local_port: read_at(sk, offset!(skc_num))?,
        remote_port: u16::from_be(read_at(sk, offset!(skc_dport))?),
        ..SockTuple::default()
    };
    if family == AF_INET {
        t.local_addr = v4(read_at(sk, offset!(skc_rcv_saddr))?);
        t.remote_addr = v4(read_at(sk, offset!(skc_daddr))?);
    } else {
        t.local_addr = read_at(sk, offset!(skc_v6_rcv_saddr))?;
        t.remote_addr = read_at(sk, offset!(skc_v6_daddr))?;
    }
    Some(t)
}

/// Sends one KPROBE event for `sk` with tuple `t`; with `dedupe`, only if
/// this (socket, process, tuple) was not reported before.
#[inline(always)]
fn emit(sk: *const u8, t: &SockTuple, dedupe: bool) {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let key = KprobeSeenKey {
        sk: sk as u64,
        tgid,
        _pad: 0,
        tuple: *t,
    };
    let key = &key;
    let last = if dedupe { KPROBE_LAST.get_ptr_mut(0) } else { None };
    if let Some(last) = last {
        if same_key(last, key) {
            return;
        }
    }
    if dedupe && KPROBE_SEEN.get_ptr(key).is_some() {
        if let Some(last) = last {
            // SAFETY: this CPU's slot; kprobe programs do not migrate.
            unsafe { *last = *key };
        }
        return;
    }
    let Some(mut entry) = SOCK_EVENTS.reserve::<SockEvent>(0) else {
        count_lost();
        return;
    };
    if dedupe {
        // A full map evicts its least recently used entry; an error only
        // means a later send reports the tuple again.
        let _ = KPROBE_SEEN.insert(key, 0, u64::from(BPF_ANY));
        if let Some(last) = last {
            // SAFETY: as above.
            unsafe { *last = *key };
        }
    }
    let net: Option<*const u8> = read_at(sk, offset!(skc_net));
    let netns_cookie = net
        .filter(|n| is_kernel_ptr(*n))
        .and_then(|n| read_at::<u64>(n, offset!(net_cookie)))
        .unwrap_or(0);
    entry.write(SockEvent {
        kind: SOCK_EVENT_KPROBE,
        tgid,
        uid: bpf_get_current_uid_gid() as u32,
        protocol: t.protocol,
        family: t.family,
        cookie: read_at(sk, offset!(skc_cookie)).unwrap_or(0),
        netns_cookie,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        local_port: t.local_port,
        remote_port: t.remote_port,
        local_addr: t.local_addr,
        remote_addr: t.remote_addr,
        // SAFETY: no arguments; the current task's cgroup v2 id.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        ..SockEvent::default()
    });
    entry.submit(wakeup_flags());
}

/// A connected socket (TCP connect/accept): its own tuple, once.
#[inline(always)]
fn on_connected(sk: *const u8) {
    if !is_kernel_ptr(sk) {
        return;
    }
    let Some(family) = inet_family(sk) else {
        return;
    };
    let Some(t) = sock_tuple(sk, family, IPPROTO_TCP) else {
        return;
    };
    emit(sk, &t, false);
}

/// `kprobe/tcp_connect`. Name must match `PROG_KPROBE_TCP_CONNECT`.
#[kprobe(function = "tcp_connect")]
pub fn flowtop_kp_tcp_connect(ctx: ProbeContext) -> u32 {
    if let Some(sk) = ctx.arg::<*const u8>(0) {
        on_connected(sk);
    }
    0
}

/// `kretprobe/inet_csk_accept`. Name must match
/// `PROG_KRETPROBE_INET_CSK_ACCEPT`.
#[kretprobe(function = "inet_csk_accept")]
pub fn flowtop_krp_inet_csk_accept(ctx: RetProbeContext) -> u32 {
    on_connected(ctx.ret::<*const u8>());
    0
}

/// A send on a datagram socket of family `want_family`: the peer comes from
/// `msg_name` when given, else from the (connected) socket. Ping sockets
/// have no remote port (`ports` false); their local port is the echo id.
#[inline(always)]
fn on_sendmsg(ctx: &ProbeContext, want_family: u16, default_protocol: u16, ports: bool) {
    let (Some(sk), Some(msg)) = (ctx.arg::<*const u8>(0), ctx.arg::<*const u8>(1)) else {
        return;
    };
    if !is_kernel_ptr(sk) || !is_kernel_ptr(msg) {
        return;
    }
    if inet_family(sk) != Some(want_family) {
        return;
    }
    let Some(mut t) = sock_tuple(sk, want_family, default_protocol) else {
        return;
    };
    // The kernel copy of the destination address (sendto/sendmsg).
    let name: *const u8 = read_at(msg, offset!(msg_name)).unwrap_or(core::ptr::null());
    if is_kernel_ptr(name) {
        let namelen: i32 = read_at(msg, offset!(msg_namelen)).unwrap_or(0);
        let Some(sa_family) = read_at::<u16>(name, 0) else {
            return;
        };
        if sa_family == AF_INET && namelen >= 16 {
            // struct sockaddr_in: family, port (network order), address.
            let (Some(port), Some(addr)) = (read_at::<u16>(name, 2), read_at::<[u8; 4]>(name, 4)) else {
                return;
            };
            t.remote_port = u16::from_be(port);
            t.remote_addr = if want_family == AF_INET6 {
                v4_mapped(addr)
            } else {
                v4(addr)
            };
        } else if sa_family == AF_INET6 && namelen >= 24 && want_family == AF_INET6 {
            // struct sockaddr_in6: family, port, flowinfo, address.
            let (Some(port), Some(addr)) = (read_at::<u16>(name, 2), read_at::<[u8; 16]>(name, 8)) else {
                return;
            };
            t.remote_port = u16::from_be(port);
            t.remote_addr = addr;
        }
    }
    if !ports {
        t.remote_port = 0;
    }
    // Nothing to report without a peer (the send fails anyway).
    if t.remote_addr == [0u8; 16] || (ports && t.remote_port == 0) {
        return;
    }
    emit(sk, &t, true);
}

/// `kprobe/udp_sendmsg`. Name must match `PROG_KPROBE_UDP_SENDMSG`.
/// AF_INET sockets only: udpv6_sendmsg hands v4 peers of AF_INET6 sockets
/// to udp_sendmsg, and those are reported by the IPv6 probe.
#[kprobe(function = "udp_sendmsg")]
pub fn flowtop_kp_udp_sendmsg(ctx: ProbeContext) -> u32 {
    on_sendmsg(&ctx, AF_INET, IPPROTO_UDP, true);
    0
}

/// `kprobe/udpv6_sendmsg`. Name must match `PROG_KPROBE_UDPV6_SENDMSG`.
#[kprobe(function = "udpv6_sendmsg")]
pub fn flowtop_kp_udpv6_sendmsg(ctx: ProbeContext) -> u32 {
    on_sendmsg(&ctx, AF_INET6, IPPROTO_UDP, true);
    0
}

/// `kprobe/ping_v4_sendmsg`. Name must match `PROG_KPROBE_PING_V4_SENDMSG`.
#[kprobe(function = "ping_v4_sendmsg")]
pub fn flowtop_kp_ping_v4_sendmsg(ctx: ProbeContext) -> u32 {
    on_sendmsg(&ctx, AF_INET, IPPROTO_ICMP, false);
    0
}

/// `kprobe/ping_v6_sendmsg`. Name must match `PROG_KPROBE_PING_V6_SENDMSG`.
#[kprobe(function = "ping_v6_sendmsg")]
pub fn flowtop_kp_ping_v6_sendmsg(ctx: ProbeContext) -> u32 {
    on_sendmsg(&ctx, AF_INET6, IPPROTO_ICMPV6, false);
    0
}
