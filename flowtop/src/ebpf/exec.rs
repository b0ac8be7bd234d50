//! The process lifecycle programs (`raw_tp/sched_process_exec`,
//! `raw_tp/sched_process_fork`): attached next to whichever socket programs
//! run, in the same object, with their own ring buffer of exec and fork
//! records, read by the same reader thread (see `sock_events.rs`).

#![cfg_attr(flowtop_no_ebpf, allow(dead_code))]

use std::sync::OnceLock;

use flowtop_common::{
    ExecEvent, ForkEvent, TaskOffsets, MAP_EXEC_EVENTS, PROC_EVENT_EXEC, PROC_EVENT_FORK, PROG_SCHED_EXEC,
    PROG_SCHED_FORK, TP_SCHED_EXEC, TP_SCHED_FORK,
};

use super::*;

/// One record of the exec ring buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcEvent {
    Exec(Box<ExecEvent>),
    Fork(ForkEvent),
}

/// Decodes one exec ring buffer record (None if unknown or too short).
pub fn parse_proc_event(record: &[u8]) -> Option<ProcEvent> {
    let kind = u32::from_ne_bytes(record.get(..4)?.try_into().ok()?);
    match kind {
        PROC_EVENT_EXEC if record.len() >= std::mem::size_of::<ExecEvent>() => {
            // SAFETY: long enough, unaligned read, plain integers only.
            Some(ProcEvent::Exec(Box::new(unsafe {
                std::ptr::read_unaligned(record.as_ptr().cast::<ExecEvent>())
            })))
        }
        PROC_EVENT_FORK if record.len() >= std::mem::size_of::<ForkEvent>() => {
            // SAFETY: as above.
            Some(ProcEvent::Fork(unsafe {
                std::ptr::read_unaligned(record.as_ptr().cast::<ForkEvent>())
            }))
        }
        _ => None,
    }
}

/// The offsets the exec/fork programs are given, from the running kernel's
/// BTF; read once per run (every load of the object sets them).
pub fn kernel_task_offsets() -> Result<TaskOffsets, String> {
    static OFFSETS: OnceLock<Result<TaskOffsets, String>> = OnceLock::new();
    OFFSETS
        .get_or_init(|| KernelBtf::from_sys_fs()?.task_offsets())
        .clone()
}

/// What the loader puts in the object's `TASK_OFFSETS` global: the kernel's
/// offsets, or all absent (the programs then do nothing) without them.
pub(super) fn task_offsets_for_load() -> TaskOffsets {
    kernel_task_offsets().unwrap_or(TaskOffsets::ABSENT)
}

/// Attached exec/fork programs: their ring buffer and names.
pub(crate) struct ExecAttachment {
    pub ring: aya::maps::RingBuf<aya::maps::MapData>,
    pub programs: Vec<String>,
}

/// Loads and attaches the exec and fork programs of a loaded object and
/// takes their ring buffer. They stay attached while `ebpf` lives.
pub(crate) fn attach_exec_programs(ebpf: &mut aya::Ebpf) -> Result<ExecAttachment, String> {
    use aya::programs::RawTracePoint;
    kernel_task_offsets().map_err(|e| format!("no task_struct offsets: {e}"))?;
    let mut programs = Vec::new();
    for (name, tracepoint) in [(PROG_SCHED_EXEC, TP_SCHED_EXEC), (PROG_SCHED_FORK, TP_SCHED_FORK)] {
        let program: &mut RawTracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| format!("the eBPF object has no program {name}"))?
            .try_into()
            .map_err(|e| format!("{name} is not a raw tracepoint program: {e:?}"))?;
        program
            .load()
            .map_err(|e| format!("loading program {name} failed: {e:?}"))?;
        program
            .attach(tracepoint)
            .map_err(|e| format!("attaching {name} (raw_tp/{tracepoint}) failed: {e:?}"))?;
        programs.push(format!("raw_tp/{tracepoint}"));
    }
    let map = ebpf
        .take_map(MAP_EXEC_EVENTS)
        .ok_or_else(|| format!("the eBPF object has no map {MAP_EXEC_EVENTS}"))?;
    let ring = aya::maps::RingBuf::try_from(map)
        .map_err(|e| format!("map {MAP_EXEC_EVENTS} is not a ring buffer: {e:?}"))?;
    Ok(ExecAttachment { ring, programs })
}
