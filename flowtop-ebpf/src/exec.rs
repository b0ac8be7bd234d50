//! Process lifecycle programs: who a process is, recorded when it starts,
//! so that a process that exits before userspace looks at /proc is still
//! known by its executable, arguments and parent.
//!
//! - `raw_tp/sched_process_exec` ([`flowtop_sched_exec`]): an [`ExecEvent`]
//!   per successful execve(2), in the new program's context.
//! - `raw_tp/sched_process_fork` ([`flowtop_sched_fork`]): a [`ForkEvent`]
//!   per new process (threads skipped): a child that never execs keeps its
//!   parent's program, and userspace copies it from the parent.
//!
//! Raw tracepoints rather than `tp_btf`: both see the same arguments (the
//! tracepoint's `TP_PROTO`), attach here without tracefs, and read kernel
//! structs the same way (`bpf_probe_read_kernel` at offsets from
//! [`TASK_OFFSETS`], set by userspace from the kernel's BTF: Rust eBPF has no
//! CO-RE); but `tp_btf` needs the tracepoint's BTF id at load time, i.e.
//! userspace parsing all of vmlinux BTF with aya (~0.3 s, ~36 MB peak),
//! which flowtop avoids (see `load_object` in flowtop/src/ebpf/mod.rs).

use core::ffi::c_void;
use core::ptr::{addr_of, addr_of_mut, read_volatile};

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_probe_read_kernel,
        generated::{bpf_get_current_task, bpf_probe_read_kernel_str, bpf_probe_read_user},
    },
    macros::{map, raw_tracepoint},
    maps::{PerCpuArray, RingBuf},
    programs::RawTracePointContext,
};
use flowtop_common::{
    ExecEvent, ForkEvent, TaskOffsets, EXEC_ARGS_MAX, EXEC_EVENTS_BYTES, EXEC_PATH_MAX, OFFSET_ABSENT,
    PROC_EVENT_EXEC, PROC_EVENT_FORK,
};

/// Kernel struct offsets. Name must match
/// `flowtop_common::GLOBAL_TASK_OFFSETS`; set by userspace at load time.
#[unsafe(no_mangle)]
static TASK_OFFSETS: TaskOffsets = TaskOffsets::ABSENT;

/// Exec and fork records. Name must match `flowtop_common::MAP_EXEC_EVENTS`.
#[map]
static EXEC_EVENTS: RingBuf = RingBuf::with_byte_size(EXEC_EVENTS_BYTES, 0);

/// Slot 0: records dropped because [`EXEC_EVENTS`] was full. Name must match
/// `flowtop_common::MAP_EXEC_EVENTS_LOST`.
#[map]
static EXEC_EVENTS_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn count_lost() {
    crate::count_lost_in(&EXEC_EVENTS_LOST);
}

/// As for the socket events: no wakeup per record, a forced one once the
/// buffer is a quarter full.
#[inline(always)]
fn wakeup_flags() -> u64 {
    crate::wakeup_flags_for(&EXEC_EVENTS, EXEC_EVENTS_BYTES)
}

/// One offset out of [`TASK_OFFSETS`]; volatile because the loader sets the
/// value after compilation.
macro_rules! offset {
    ($field:ident) => {
        // SAFETY: reading a field of a static the loader fills in.
        unsafe { read_volatile(addr_of!(TASK_OFFSETS.$field)) }
    };
}

/// A `T` at `base + offset` of kernel memory (None when absent or faulting).
#[inline(always)]
fn read_at<T>(base: *const u8, offset: u32) -> Option<T> {
    if offset == OFFSET_ABSENT || base.is_null() {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address and fails instead of
    // faulting; nothing dereferences it here.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize).cast::<T>()).ok() }
}

/// The comm of `task`'s thread group leader (the process's name), zeros if
/// unreadable.
/// The inode number of the current task's network namespace
/// (`current->nsproxy->net_ns->ns.inum`), 0 when an offset is absent or a
/// read fails. For the socket programs: a socket is made in its creator's
/// namespace, and the number still names it once the process is gone.
#[inline(always)]
pub(crate) fn current_netns_inode() -> u32 {
    // SAFETY: no arguments; the current task's address, only ever read
    // through bpf_probe_read_kernel.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let nsproxy: Option<u64> = read_at(task, offset!(nsproxy));
    let net: Option<u64> = nsproxy.and_then(|p| read_at(p as *const u8, offset!(net_ns)));
    net.and_then(|n| read_at::<u32>(n as *const u8, offset!(ns_inum)))
        .unwrap_or(0)
}

#[inline(always)]
fn leader_comm(task: *const u8) -> [u8; 16] {
    let leader: *const u8 = read_at(task, offset!(group_leader)).unwrap_or(task);
    read_at(leader, offset!(comm)).unwrap_or([0; 16])
}

/// `raw_tp/sched_process_exec` (`struct task_struct *p, pid_t old_pid,
/// struct linux_binprm *bprm`). Name must match `PROG_SCHED_EXEC`.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn flowtop_sched_exec(ctx: RawTracePointContext) -> i32 {
    on_exec(&ctx);
    0
}

#[inline(always)]
fn on_exec(ctx: &RawTracePointContext) {
    if offset!(tgid) == OFFSET_ABSENT {
        return;
    }
    let task: *const u8 = ctx.arg(0);
    let bprm: *const u8 = ctx.arg(2);
    let Some(mut entry) = EXEC_EVENTS.reserve::<ExecEvent>(0) else {
        count_lost();
        return;
    };
    let ev = entry.as_mut_ptr();
    let parent: *const u8 = read_at(task, offset!(real_parent)).unwrap_or(core::ptr::null());
    let ppid = read_at::<i32>(parent, offset!(tgid)).unwrap_or(0) as u32;
    let start_ns: u64 = read_at(task, offset!(start_time)).unwrap_or(0);
    let parent_comm = leader_comm(parent);
    // SAFETY: `ev` points to the reserved record (576 bytes, 8-aligned);
    // each field is written once through a raw pointer (the arrays are
    // filled by the helpers below, which the verifier bounds-checks).
    unsafe {
        addr_of_mut!((*ev).kind).write(PROC_EVENT_EXEC);
        addr_of_mut!((*ev).tgid).write((bpf_get_current_pid_tgid() >> 32) as u32);
        addr_of_mut!((*ev).ppid).write(ppid);
        addr_of_mut!((*ev).uid).write(bpf_get_current_uid_gid() as u32);
        addr_of_mut!((*ev).start_ns).write(start_ns);
        addr_of_mut!((*ev).comm).write(bpf_get_current_comm().unwrap_or([0; 16]));
        addr_of_mut!((*ev).parent_comm).write(parent_comm);
    }

    // The path of what runs: `interp` (the interpreter of a script, else
    // the same as `filename`).
    let path_ptr: *const u8 = read_at(bprm, offset!(interp))
        .or_else(|| read_at(bprm, offset!(filename)))
        .unwrap_or(core::ptr::null());
    let mut path_len = 0u32;
    if !path_ptr.is_null() {
        // SAFETY: the destination is the record's `path` array of exactly
        // EXEC_PATH_MAX bytes; the helper stops there and never faults.
        let n = unsafe {
            bpf_probe_read_kernel_str(
                addr_of_mut!((*ev).path).cast::<c_void>(),
                EXEC_PATH_MAX as u32,
                path_ptr.cast::<c_void>(),
            )
        };
        // The count includes the NUL.
        if n > 1 {
            path_len = (n - 1) as u32;
        }
    }

    // The arguments: the new mm's argument area, user memory of the current
    // task (the one exec'ing), bounded by the record's array.
    let mm: *const u8 = read_at(task, offset!(mm)).unwrap_or(core::ptr::null());
    let arg_start: u64 = read_at(mm, offset!(arg_start)).unwrap_or(0);
    let arg_end: u64 = read_at(mm, offset!(arg_end)).unwrap_or(0);
    let mut args_len = 0u32;
    if arg_start != 0 && arg_end > arg_start {
        let want = arg_end - arg_start;
        let n = if want > EXEC_ARGS_MAX as u64 {
            EXEC_ARGS_MAX as u32
        } else {
            want as u32
        };
        // SAFETY: `n` is at most the size of the record's `args` array; the
        // helper fails (zeroing the destination) instead of faulting.
        let rc = unsafe {
            bpf_probe_read_user(
                addr_of_mut!((*ev).args).cast::<c_void>(),
                n,
                arg_start as *const c_void,
            )
        };
        if rc == 0 {
            args_len = n;
        }
    }
    // SAFETY: as above.
    unsafe {
        addr_of_mut!((*ev).path_len).write(path_len);
        addr_of_mut!((*ev).args_len).write(args_len);
    }
    entry.submit(wakeup_flags());
}

/// `raw_tp/sched_process_fork` (`struct task_struct *parent, struct
/// task_struct *child`), in the parent's context. Name must match
/// `PROG_SCHED_FORK`.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn flowtop_sched_fork(ctx: RawTracePointContext) -> i32 {
    on_fork(&ctx);
    0
}

#[inline(always)]
fn on_fork(ctx: &RawTracePointContext) {
    let parent: *const u8 = ctx.arg(0);
    let child: *const u8 = ctx.arg(1);
    let (Some(pid), Some(tgid)) = (
        read_at::<i32>(child, offset!(pid)),
        read_at::<i32>(child, offset!(tgid)),
    ) else {
        return;
    };
    // A new thread of an existing process: nothing new to know.
    if pid != tgid {
        return;
    }
    let Some(mut entry) = EXEC_EVENTS.reserve::<ForkEvent>(0) else {
        count_lost();
        return;
    };
    entry.write(ForkEvent {
        kind: PROC_EVENT_FORK,
        tgid: tgid as u32,
        ppid: (bpf_get_current_pid_tgid() >> 32) as u32,
        uid: bpf_get_current_uid_gid() as u32,
        start_ns: read_at(child, offset!(start_time)).unwrap_or(0),
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        parent_comm: leader_comm(parent),
    });
    entry.submit(wakeup_flags());
}
