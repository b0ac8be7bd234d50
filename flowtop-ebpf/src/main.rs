//! flowtop's eBPF programs, built for `bpfel-unknown-none` by `flowtop/build.rs`
//! (aya-build) and embedded into the `flowtop` binary.
//!
//! Current program: `tracepoint/sock/inet_sock_set_state`, which counts socket
//! state transitions per new state into a per-CPU array. The tracepoint record
//! layout is a stable kernel ABI, so no CO-RE relocations are needed.
//!
//! On any target other than bpf the crate is an ordinary (std) binary whose
//! `main` only says so: that keeps `cargo clippy -p flowtop-ebpf` on the host
//! target working (a `no_std` binary would need `panic = "abort"` there).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use aya_ebpf::{
    macros::{map, tracepoint},
    maps::PerCpuArray,
    programs::TracePointContext,
    EbpfContext as _,
};
use flowtop_common::{state_slot, InetSockSetStateRecord, StateCounter, AF_INET6, STATE_SLOTS};

/// Per CPU: transitions into each TCP state, indexed by `state_slot(newstate)`.
/// Name must match `flowtop_common::MAP_STATE_COUNTS`.
#[map]
static STATE_COUNTS: PerCpuArray<StateCounter> = PerCpuArray::with_max_entries(STATE_SLOTS, 0);

/// Attached to `sock:inet_sock_set_state`. Name must match
/// `flowtop_common::PROG_INET_SOCK_SET_STATE`.
#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    count_transition(&ctx);
    0
}

#[inline(always)]
fn count_transition(ctx: &TracePointContext) {
    let rec = ctx.as_ptr().cast::<InetSockSetStateRecord>().cast_const();
    // SAFETY: for a tracepoint program the context is the trace record, whose
    // layout `InetSockSetStateRecord` mirrors (checked against the kernel's
    // format file by a root-only test). Tracepoint programs may read the
    // record directly (naturally aligned loads past the 8-byte common header),
    // which the verifier checks; no helper call is needed.
    let (oldstate, newstate, family) = unsafe {
        (
            core::ptr::addr_of!((*rec).oldstate).read(),
            core::ptr::addr_of!((*rec).newstate).read(),
            core::ptr::addr_of!((*rec).family).read(),
        )
    };
    let Some(counter) = STATE_COUNTS.get_ptr_mut(state_slot(newstate)) else {
        return;
    };
    // SAFETY: the pointer comes from a successful per-CPU array lookup and is
    // valid for this CPU's slot for the duration of the program; tracepoint
    // programs do not migrate between CPUs while running.
    unsafe {
        (*counter).transitions = (*counter).transitions.wrapping_add(1);
        if family == AF_INET6 {
            (*counter).ipv6 = (*counter).ipv6.wrapping_add(1);
        }
        (*counter).last_oldstate = oldstate as u32;
    }
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
