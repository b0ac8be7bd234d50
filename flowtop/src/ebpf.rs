//! eBPF side of flowtop: loads the object built by `build.rs` from
//! `flowtop-ebpf` and attaches its programs.
//!
//! Current program: `tracepoint/sock/inet_sock_set_state`, which counts socket
//! state transitions (see [`EbpfAttachment::state_counts`]). It is the base for
//! attributing sockets to processes later.
//!
//! Use [`probe`] once at start-up: it attaches the programs, keeps them
//! attached for the rest of the process and reports an [`EbpfStatus`]. Use
//! [`attach`] to own the attachment instead (dropping it detaches).
//!
//! When flowtop was built without the eBPF toolchain (`cfg(flowtop_no_ebpf)`,
//! see `build.rs`), or loading/attaching fails (not root, lockdown, no
//! tracefs ...), the status says `available: false` with a human reason.

// Without the object the loading code is only reached by the unit tests.
#![cfg_attr(flowtop_no_ebpf, allow(dead_code))]

use std::io;
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};

use flowtop_common::{
    StateCounter, MAP_STATE_COUNTS, PROG_INET_SOCK_SET_STATE, STATE_SLOTS, TRACEPOINT_CATEGORY,
    TRACEPOINT_NAME,
};

/// Mode string when the eBPF programs are attached.
pub const MODE_EBPF: &str = "ebpf";
/// Mode string when flowtop runs without eBPF attribution.
pub const MODE_UNAVAILABLE: &str = "unavailable";

/// What [`probe`] / [`attach`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EbpfStatus {
    /// True when every program is loaded and attached.
    pub available: bool,
    /// [`MODE_EBPF`] or [`MODE_UNAVAILABLE`].
    pub mode: &'static str,
    /// Attached programs, as `type/category/name` (empty when unavailable).
    pub programs: Vec<String>,
    /// Why eBPF is unavailable (None when available).
    pub reason: Option<String>,
}

impl EbpfStatus {
    fn attached(programs: Vec<String>) -> Self {
        Self {
            available: true,
            mode: MODE_EBPF,
            programs,
            reason: None,
        }
    }

    fn unavailable(reason: String) -> Self {
        Self {
            available: false,
            mode: MODE_UNAVAILABLE,
            programs: Vec::new(),
            reason: Some(reason),
        }
    }
}

/// Loaded and attached eBPF programs. They stay attached as long as this
/// value lives; dropping it detaches them and frees the maps.
#[derive(Debug)]
pub struct EbpfAttachment {
    ebpf: aya::Ebpf,
    programs: Vec<String>,
}

impl EbpfAttachment {
    /// Attached programs, as `type/category/name`.
    pub fn programs(&self) -> &[String] {
        &self.programs
    }

    /// Socket state transitions seen since attaching, summed over CPUs.
    /// Index = new TCP state number (1 = ESTABLISHED .. 12 = NEW_SYN_RECV,
    /// see `flowtop_common::tcp_state`); index 0 collects unknown states.
    pub fn state_counts(&self) -> Result<Vec<StateCounter>, String> {
        let map = self
            .ebpf
            .map(MAP_STATE_COUNTS)
            .ok_or_else(|| format!("eBPF object has no map {MAP_STATE_COUNTS}"))?;
        let array = aya::maps::PerCpuArray::<_, StateCounter>::try_from(map)
            .map_err(|e| format!("map {MAP_STATE_COUNTS} has an unexpected type: {e:?}"))?;
        (0..STATE_SLOTS)
            .map(|slot| {
                let per_cpu = array
                    .get(&slot, 0)
                    .map_err(|e| format!("reading {MAP_STATE_COUNTS}[{slot}] failed: {e:?}"))?;
                Ok(per_cpu
                    .iter()
                    .fold(StateCounter::default(), |acc, c| acc.merge(*c)))
            })
            .collect()
    }
}

/// The eBPF object produced by `build.rs` (aya-build), embedded 8-byte aligned.
#[cfg(not(flowtop_no_ebpf))]
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flowtop-ebpf"));

/// Why this binary has no eBPF object (set by `build.rs`).
#[cfg(flowtop_no_ebpf)]
const NO_OBJECT_REASON: &str = env!("FLOWTOP_NO_EBPF_REASON");

/// Loads and attaches the eBPF programs once per process and keeps them
/// attached until the process exits. Later calls return the first result.
pub fn probe() -> EbpfStatus {
    static PROBED: OnceLock<Mutex<(EbpfStatus, Option<EbpfAttachment>)>> = OnceLock::new();
    let probed = PROBED.get_or_init(|| Mutex::new(attach()));
    probed.lock().unwrap_or_else(PoisonError::into_inner).0.clone()
}

/// Loads and attaches the eBPF programs; the returned attachment (present
/// exactly when the status is available) keeps them attached.
pub fn attach() -> (EbpfStatus, Option<EbpfAttachment>) {
    #[cfg(flowtop_no_ebpf)]
    {
        (EbpfStatus::unavailable(NO_OBJECT_REASON.to_owned()), None)
    }
    #[cfg(not(flowtop_no_ebpf))]
    {
        attach_object(OBJECT)
    }
}

/// [`attach`] for a given object file image.
fn attach_object(object: &[u8]) -> (EbpfStatus, Option<EbpfAttachment>) {
    match load_and_attach(object) {
        Ok(attachment) => (
            EbpfStatus::attached(attachment.programs.clone()),
            Some(attachment),
        ),
        Err(reason) => (EbpfStatus::unavailable(with_privilege_hint(reason)), None),
    }
}

fn load_and_attach(object: &[u8]) -> Result<EbpfAttachment, String> {
    // Quietly first: a verifier log buffer costs ~16 MB of peak memory. Only
    // when the kernel refuses is the load repeated with the log, so that the
    // reason carries the verifier's explanation.
    match load_and_attach_with(object, aya::VerifierLogLevel::DISABLE) {
        Ok(attachment) => Ok(attachment),
        Err(_) => load_and_attach_with(object, aya::VerifierLogLevel::default()),
    }
}

fn load_and_attach_with(object: &[u8], log: aya::VerifierLogLevel) -> Result<EbpfAttachment, String> {
    use aya::programs::TracePoint;

    // aya's Display of these errors hides the cause (errno, verifier log,
    // missing file): keep the Debug form in the reason.
    // No kernel BTF: the program reads a tracepoint record, whose layout is
    // stable, and has no CO-RE relocations; parsing vmlinux BTF would cost
    // ~0.3 s and ~36 MB of peak memory for nothing.
    let mut ebpf = aya::EbpfLoader::new()
        .btf(None)
        .verifier_log_level(log)
        .load(object)
        .map_err(|e| format!("loading the eBPF object failed: {e:?}"))?;
    let program: &mut TracePoint = ebpf
        .program_mut(PROG_INET_SOCK_SET_STATE)
        .ok_or_else(|| format!("the eBPF object has no program {PROG_INET_SOCK_SET_STATE}"))?
        .try_into()
        .map_err(|e| format!("{PROG_INET_SOCK_SET_STATE} is not a tracepoint program: {e:?}"))?;
    program
        .load()
        .map_err(|e| format!("loading program {PROG_INET_SOCK_SET_STATE} failed: {e:?}"))?;
    let mounted_here = ensure_tracefs()?;
    let attached = program.attach(TRACEPOINT_CATEGORY, TRACEPOINT_NAME);
    // The attachment holds a perf event fd; tracefs was only needed to look
    // up the tracepoint id, so a mount flowtop made is undone at once.
    if mounted_here {
        unmount_tracefs();
    }
    attached.map_err(|e| {
        format!("attaching to tracepoint {TRACEPOINT_CATEGORY}/{TRACEPOINT_NAME} failed: {e:?}")
    })?;
    let programs = vec![format!("tracepoint/{TRACEPOINT_CATEGORY}/{TRACEPOINT_NAME}")];
    Ok(EbpfAttachment { ebpf, programs })
}

fn with_privilege_hint(reason: String) -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        reason
    } else {
        format!("{reason} (not running as root: loading eBPF needs root or CAP_BPF+CAP_PERFMON)")
    }
}

const TRACEFS: &str = "/sys/kernel/tracing";

fn unmount_tracefs() {
    // SAFETY: a valid NUL-terminated path; MNT_DETACH never blocks.
    unsafe {
        libc::umount2(c"/sys/kernel/tracing".as_ptr(), libc::MNT_DETACH);
    }
}

fn tracefs_mounted() -> bool {
    [TRACEFS, "/sys/kernel/debug/tracing"]
        .iter()
        .any(|dir| Path::new(dir).join("events").is_dir())
}

/// Tracepoint attachment reads the event id from tracefs, which is not always
/// mounted (it is not on the reference machine). Mount it at its standard
/// place if needed; returns whether flowtop mounted it, so the caller can
/// unmount it once attached (flowtop leaves no kernel state behind).
fn ensure_tracefs() -> Result<bool, String> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    if tracefs_mounted() {
        return Ok(false);
    }
    // SAFETY: all pointers are valid NUL-terminated strings; data may be NULL.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(format!(
            "tracefs is not mounted and mounting it at {TRACEFS} failed: {err:?} \
             (try `mount -t tracefs nodev {TRACEFS}`)"
        ));
    }
    if tracefs_mounted() {
        Ok(true)
    } else {
        unmount_tracefs();
        Err(format!(
            "tracefs mounted at {TRACEFS} but it has no events directory"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_unavailable(status: &EbpfStatus, attachment: Option<&EbpfAttachment>) -> String {
        assert!(!status.available, "{status:?}");
        assert_eq!(status.mode, MODE_UNAVAILABLE);
        assert!(status.programs.is_empty(), "{status:?}");
        assert!(attachment.is_none());
        let reason = status.reason.clone().expect("an unavailable status has a reason");
        assert!(!reason.is_empty());
        reason
    }

    #[test]
    fn a_corrupt_object_is_reported_unavailable_with_the_aya_error() {
        // Starts like an ELF file but is not one: aya's parser must reject it
        // before any syscall, so this behaves the same as root or not.
        let mut bogus = vec![0u8; 256];
        bogus[..4].copy_from_slice(b"\x7fELF");
        let (status, attachment) = attach_object(&bogus);
        let reason = assert_unavailable(&status, attachment.as_ref());
        assert!(reason.starts_with("loading the eBPF object failed: "), "{reason}");
        // The Debug form of the aya error is kept, not just its Display.
        assert!(reason.contains("ParseError"), "{reason}");
    }

    #[test]
    fn an_empty_object_is_reported_unavailable() {
        let (status, attachment) = attach_object(&[]);
        let reason = assert_unavailable(&status, attachment.as_ref());
        assert!(reason.contains("eBPF object"), "{reason}");
    }

    #[test]
    fn the_privilege_hint_is_added_only_for_non_root() {
        let reason = with_privilege_hint("boom".to_owned());
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(reason, "boom");
        } else {
            assert!(reason.starts_with("boom (not running as root"), "{reason}");
        }
    }

    /// Built without the toolchain: the status must say so and how to fix it.
    #[cfg(flowtop_no_ebpf)]
    #[test]
    fn without_the_object_the_status_explains_how_to_get_it() {
        let (status, attachment) = attach();
        let reason = assert_unavailable(&status, attachment.as_ref());
        assert!(reason.contains("built without the eBPF object"), "{reason}");
        assert!(
            reason.contains("FLOWTOP_NO_EBPF") || reason.contains("cargo xtask setup"),
            "{reason}"
        );
        assert_eq!(probe(), status);
    }

    /// Built with the toolchain: the embedded object is a BPF ELF holding the
    /// tracepoint program and its map (checked without loading it).
    #[cfg(not(flowtop_no_ebpf))]
    #[test]
    fn the_embedded_object_holds_the_tracepoint_program_and_map() {
        assert_eq!(&OBJECT[..4], b"\x7fELF", "not an ELF file");
        assert_eq!(OBJECT[4], 2, "not ELF64");
        assert_eq!(OBJECT[5], 1, "not little-endian");
        let e_machine = u16::from_le_bytes([OBJECT[18], OBJECT[19]]);
        assert_eq!(e_machine, 247, "e_machine is not EM_BPF");
        let contains = |needle: &[u8]| OBJECT.windows(needle.len()).any(|w| w == needle);
        let section = format!("tracepoint/{TRACEPOINT_CATEGORY}/{TRACEPOINT_NAME}");
        assert!(contains(section.as_bytes()), "no section {section}");
        assert!(contains(MAP_STATE_COUNTS.as_bytes()), "no map {MAP_STATE_COUNTS}");
        assert!(contains(PROG_INET_SOCK_SET_STATE.as_bytes()), "no program symbol");
    }

    /// Makes TCP state transitions on loopback: LISTEN, SYN_SENT,
    /// ESTABLISHED (both ends), then the close states.
    fn tcp_round_trip() {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let mut client = std::net::TcpStream::connect(addr).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        client.write_all(b"x").expect("write");
        let mut buf = [0u8; 1];
        server.read_exact(&mut buf).expect("read");
        drop(client);
        drop(server);
        drop(listener);
    }

    #[test]
    #[ignore = "needs root: run by cargo xtask test"]
    fn the_tracepoint_attaches_and_counts_transitions() {
        use flowtop_common::tcp_state;

        let (status, attachment) = attach();
        assert!(status.available, "eBPF unavailable: {:?}", status.reason);
        assert_eq!(status.mode, MODE_EBPF);
        assert_eq!(status.programs, ["tracepoint/sock/inet_sock_set_state"]);
        assert_eq!(status.reason, None);
        let attachment = attachment.expect("attachment");
        assert_eq!(attachment.programs(), status.programs.as_slice());

        let before = attachment.state_counts().expect("read counters");
        assert_eq!(before.len(), STATE_SLOTS as usize);
        tcp_round_trip();
        let after = attachment.state_counts().expect("read counters");
        let grew = |state: i32| {
            let i = usize::try_from(state).expect("state");
            after[i].transitions > before[i].transitions
        };
        // Process-context transitions of our own connection: these must have
        // been counted on some CPU.
        assert!(grew(tcp_state::LISTEN), "LISTEN not counted: {after:?}");
        assert!(grew(tcp_state::SYN_SENT), "SYN_SENT not counted: {after:?}");
        assert!(grew(tcp_state::ESTABLISHED), "ESTABLISHED not counted: {after:?}");
        assert!(grew(tcp_state::CLOSE), "CLOSE not counted: {after:?}");

        // Detaching: a second, independent attachment still works.
        drop(attachment);
        let (again, attachment) = attach();
        assert!(again.available, "{again:?}");
        assert!(attachment.is_some());
    }

    #[test]
    #[ignore = "needs root: run by cargo xtask test"]
    fn the_record_layout_matches_the_kernel_format_file() {
        let mounted_here = ensure_tracefs().expect("tracefs");
        let dir = [TRACEFS, "/sys/kernel/debug/tracing"]
            .into_iter()
            .map(|d| {
                Path::new(d)
                    .join("events")
                    .join(TRACEPOINT_CATEGORY)
                    .join(TRACEPOINT_NAME)
            })
            .find(|d| d.is_dir())
            .expect("tracepoint directory");
        let format = std::fs::read_to_string(dir.join("format")).expect("format file");
        if mounted_here {
            unmount_tracefs();
        }
        // Lines look like: "field:__u16 sport;	offset:24;	size:2;	signed:0;"
        let field = |name: &str| -> Option<(usize, usize)> {
            format.lines().find_map(|line| {
                let mut parts = line.trim().split(';').map(str::trim);
                let decl = parts.next()?.strip_prefix("field:")?;
                let ident = decl.rsplit(' ').next()?;
                let ident = ident.split('[').next()?;
                if ident != name {
                    return None;
                }
                let offset = parts.next()?.strip_prefix("offset:")?.parse().ok()?;
                let size = parts.next()?.strip_prefix("size:")?.parse().ok()?;
                Some((offset, size))
            })
        };
        for (name, offset, size) in flowtop_common::record_offsets::FIELDS {
            assert_eq!(field(name), Some((offset, size)), "field {name} in:\n{format}");
        }
    }
}
