//! Types shared between the eBPF program (`flowtop-ebpf`, built for
//! `bpfel-unknown-none`) and userspace (`flowtop`, feature `user`).
//!
//! Every type here is `#[repr(C)]`, uses fixed-width integers only, spells out
//! its padding, and has a compile-time size assertion: the eBPF object and the
//! userspace binary are compiled separately and must agree byte for byte.
#![no_std]

use core::mem::size_of;

/// Name of the eBPF program (the function name in `flowtop-ebpf`).
pub const PROG_INET_SOCK_SET_STATE: &str = "inet_sock_set_state";
/// Tracepoint category and name the program attaches to.
pub const TRACEPOINT_CATEGORY: &str = "sock";
pub const TRACEPOINT_NAME: &str = "inet_sock_set_state";

/// Name of the per-CPU array of [`StateCounter`], indexed by the new TCP state.
pub const MAP_STATE_COUNTS: &str = "STATE_COUNTS";
/// Number of slots in [`MAP_STATE_COUNTS`]. TCP states are 1..=12
/// (`TCP_ESTABLISHED` .. `TCP_NEW_SYN_RECV`); anything else lands in slot 0.
pub const STATE_SLOTS: u32 = 16;

/// Kernel TCP state numbers (include/net/tcp_states.h), as found in the
/// `oldstate`/`newstate` fields of the tracepoint.
pub mod tcp_state {
    pub const ESTABLISHED: i32 = 1;
    pub const SYN_SENT: i32 = 2;
    pub const SYN_RECV: i32 = 3;
    pub const FIN_WAIT1: i32 = 4;
    pub const FIN_WAIT2: i32 = 5;
    pub const TIME_WAIT: i32 = 6;
    pub const CLOSE: i32 = 7;
    pub const CLOSE_WAIT: i32 = 8;
    pub const LAST_ACK: i32 = 9;
    pub const LISTEN: i32 = 10;
    pub const CLOSING: i32 = 11;
    pub const NEW_SYN_RECV: i32 = 12;
}

/// Address families as they appear in the tracepoint's `family` field.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// Slot of [`MAP_STATE_COUNTS`] that a transition into `newstate` counts in.
#[inline(always)]
pub const fn state_slot(newstate: i32) -> u32 {
    if newstate > 0 && (newstate as u32) < STATE_SLOTS {
        newstate as u32
    } else {
        0
    }
}

/// Value type of [`MAP_STATE_COUNTS`]: per CPU, how many socket state
/// transitions went *into* the slot's state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounter {
    /// All transitions into this state.
    pub transitions: u64,
    /// Of those, how many were on `AF_INET6` sockets.
    pub ipv6: u64,
    /// `oldstate` of the most recent transition into this state (0 if none).
    pub last_oldstate: u32,
    /// Explicit padding to an 8-byte multiple; always zero.
    pub _pad: u32,
}

const _: () = assert!(size_of::<StateCounter>() == 24);

impl StateCounter {
    /// Sums the per-CPU values of one slot.
    pub fn merge(self, other: Self) -> Self {
        Self {
            transitions: self.transitions.wrapping_add(other.transitions),
            ipv6: self.ipv6.wrapping_add(other.ipv6),
            last_oldstate: if other.last_oldstate != 0 {
                other.last_oldstate
            } else {
                self.last_oldstate
            },
            _pad: 0,
        }
    }
}

/// Layout of the `sock:inet_sock_set_state` tracepoint record as the kernel
/// hands it to a `tracepoint/` program (see
/// `/sys/kernel/tracing/events/sock/inet_sock_set_state/format`). Tracepoint
/// formats are a stable ABI, unlike struct layouts read through BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InetSockSetStateRecord {
    pub common_type: u16,
    pub common_flags: u8,
    pub common_preempt_count: u8,
    pub common_pid: i32,
    /// Kernel address of the `struct sock` (only usable as an identity).
    pub skaddr: u64,
    pub oldstate: i32,
    pub newstate: i32,
    /// Host byte order.
    pub sport: u16,
    /// Host byte order.
    pub dport: u16,
    pub family: u16,
    pub protocol: u16,
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub saddr_v6: [u8; 16],
    pub daddr_v6: [u8; 16],
}

const _: () = assert!(size_of::<InetSockSetStateRecord>() == 72);

/// Byte offsets of the record fields, checked against the kernel's format file
/// by a root-only test in `flowtop`.
pub mod record_offsets {
    use super::InetSockSetStateRecord as R;
    use core::mem::offset_of;

    pub const SKADDR: usize = offset_of!(R, skaddr);
    pub const OLDSTATE: usize = offset_of!(R, oldstate);
    pub const NEWSTATE: usize = offset_of!(R, newstate);
    pub const SPORT: usize = offset_of!(R, sport);
    pub const DPORT: usize = offset_of!(R, dport);
    pub const FAMILY: usize = offset_of!(R, family);
    pub const PROTOCOL: usize = offset_of!(R, protocol);
    pub const SADDR: usize = offset_of!(R, saddr);
    pub const DADDR: usize = offset_of!(R, daddr);
    pub const SADDR_V6: usize = offset_of!(R, saddr_v6);
    pub const DADDR_V6: usize = offset_of!(R, daddr_v6);

    /// `(field name, offset, size)` in format-file order.
    pub const FIELDS: [(&str, usize, usize); 11] = [
        ("skaddr", SKADDR, 8),
        ("oldstate", OLDSTATE, 4),
        ("newstate", NEWSTATE, 4),
        ("sport", SPORT, 2),
        ("dport", DPORT, 2),
        ("family", FAMILY, 2),
        ("protocol", PROTOCOL, 2),
        ("saddr", SADDR, 4),
        ("daddr", DADDR, 4),
        ("saddr_v6", SADDR_V6, 16),
        ("daddr_v6", DADDR_V6, 16),
    ];

    const _: () = assert!(SKADDR == 8 && OLDSTATE == 16 && NEWSTATE == 20);
    const _: () = assert!(SPORT == 24 && DPORT == 26 && FAMILY == 28 && PROTOCOL == 30);
    const _: () = assert!(SADDR == 32 && DADDR == 36 && SADDR_V6 == 40 && DADDR_V6 == 56);
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: both types are `#[repr(C)]`, `Copy`, consist only of integers
    // and integer arrays, have no implicit padding (padding is an explicit
    // field), and every bit pattern is a valid value.
    unsafe impl aya::Pod for super::StateCounter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::InetSockSetStateRecord {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_maps_known_states_and_clamps_the_rest() {
        assert_eq!(state_slot(tcp_state::ESTABLISHED), 1);
        assert_eq!(state_slot(tcp_state::NEW_SYN_RECV), 12);
        assert_eq!(state_slot(0), 0);
        assert_eq!(state_slot(-3), 0);
        assert_eq!(state_slot(STATE_SLOTS as i32), 0);
        assert_eq!(state_slot(i32::MAX), 0);
    }

    #[test]
    fn merge_sums_counts_and_keeps_a_nonzero_oldstate() {
        let a = StateCounter {
            transitions: 3,
            ipv6: 1,
            last_oldstate: 2,
            _pad: 0,
        };
        let b = StateCounter {
            transitions: 4,
            ipv6: 0,
            last_oldstate: 0,
            _pad: 0,
        };
        let m = a.merge(b);
        assert_eq!((m.transitions, m.ipv6, m.last_oldstate), (7, 1, 2));
        let c = StateCounter {
            transitions: 1,
            ipv6: 1,
            last_oldstate: 7,
            _pad: 0,
        };
        assert_eq!(m.merge(c).last_oldstate, 7);
        assert_eq!(m.merge(c).transitions, 8);
    }
}
