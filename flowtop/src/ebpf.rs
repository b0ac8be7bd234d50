//! eBPF side of flowtop: loads the object built by `build.rs` from
//! `flowtop-ebpf` and attaches its programs.
//!
//! Programs:
//! - `tracepoint/sock/inet_sock_set_state`, which counts socket state
//!   transitions (see [`EbpfAttachment::state_counts`]). Use [`probe`] once at
//!   start-up: it attaches it, keeps it attached for the rest of the process
//!   and reports an [`EbpfStatus`]. Use [`attach`] to own the attachment
//!   instead (dropping it detaches).
//! - socket ownership events: `cgroup/sock_create` and `cgroup_skb/egress`
//!   on the cgroup2 root, feeding a ring buffer of
//!   [`SockEvent`](flowtop_common::SockEvent)s; see [`start_sock_events`].
//! - kprobes on `tcp_connect`, `inet_csk_accept` (return), `udp_sendmsg`,
//!   `udpv6_sendmsg`, `ping_v4_sendmsg`, `ping_v6_sendmsg`, feeding the same
//!   ring buffer with KPROBE events (tuple and owner in one), used where the
//!   kernel can attach them; see [`probe_kprobes`], [`attach_kprobes`] and
//!   [`start_sock_events_preferring_kprobes`]. They read `struct sock` at
//!   offsets taken from the running kernel's BTF at load time
//!   ([`KernelBtf`]). Kernels without `CONFIG_KPROBES` load them (the
//!   verifier passes them) but cannot attach them: then the cgroup programs
//!   are the path, and the report says why.
//!
//! When flowtop was built without the eBPF toolchain (`cfg(flowtop_no_ebpf)`,
//! see `build.rs`), or loading/attaching fails (not root, lockdown, no
//! tracefs ...), the status says `available: false` with a human reason.

// Without the object the loading code is only reached by the unit tests.
#![cfg_attr(flowtop_no_ebpf, allow(dead_code))]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use flowtop_common::{
    SockEvent, SockOffsets, StateCounter, GLOBAL_SOCK_OFFSETS, KPROBE_PROGRAMS, MAP_KPROBE_SEEN,
    MAP_SOCK_EVENTS, MAP_SOCK_EVENTS_LOST, MAP_SOCK_SEEN, MAP_STATE_COUNTS, OFFSET_ABSENT,
    PROG_INET_SOCK_SET_STATE, PROG_SOCK_CREATE, PROG_SOCK_EGRESS, STATE_SLOTS, TRACEPOINT_CATEGORY,
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

/// Which programs of the object a load is for: the maps only the other
/// programs use are created at their smallest size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoadFor {
    StateCounts,
    SockEvents,
}

/// Parses the object and creates its maps (programs are loaded separately).
fn load_object(object: &[u8], log: aya::VerifierLogLevel, purpose: LoadFor) -> Result<aya::Ebpf, String> {
    // No kernel BTF: the programs read a tracepoint record, whose layout is
    // stable, and UAPI context structs the kernel rewrites itself; they have
    // no CO-RE relocations, and parsing vmlinux BTF would cost ~0.3 s and
    // ~36 MB of peak memory for nothing.
    let mut loader = aya::EbpfLoader::new();
    loader.btf(None).verifier_log_level(log);
    // The kprobes' dedupe map is only used when they are attached (see
    // attach_kprobes, which loads its own copy of the object).
    loader.map_max_entries(MAP_KPROBE_SEEN, 64);
    if purpose == LoadFor::StateCounts {
        // Every map of the object is created: keep the socket-event maps
        // (1 MiB ring buffer, 64 Ki-entry LRU) at a token size.
        loader
            .map_max_entries(MAP_SOCK_EVENTS, page_size())
            .map_max_entries(MAP_SOCK_SEEN, 64);
    }
    // aya's Display of these errors hides the cause (errno, verifier log,
    // missing file): keep the Debug form in the reason.
    loader
        .load(object)
        .map_err(|e| format!("loading the eBPF object failed: {e:?}"))
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096)
}

fn load_and_attach_with(object: &[u8], log: aya::VerifierLogLevel) -> Result<EbpfAttachment, String> {
    use aya::programs::TracePoint;

    let mut ebpf = load_object(object, log, LoadFor::StateCounts)?;
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

// ---------------------------------------------------------------------------
// Socket ownership events
// ---------------------------------------------------------------------------

/// Most events handed to `deliver` in one call.
const SOCK_EVENTS_BATCH: usize = 4096;
/// How long the reader thread waits for the ring buffer before it checks
/// whether it should stop.
const SOCK_EVENTS_POLL: Duration = Duration::from_millis(100);

/// Running socket ownership events (see [`start_sock_events`]). The cgroup
/// programs stay attached while this lives; dropping it stops the reader
/// thread (waiting for a `deliver` call in progress) and detaches them.
pub struct SockEventsHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Holds the programs and their links (dropped after the thread).
    ebpf: aya::Ebpf,
    programs: Vec<String>,
    cgroup: PathBuf,
}

impl std::fmt::Debug for SockEventsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SockEventsHandle")
            .field("programs", &self.programs)
            .field("cgroup", &self.cgroup)
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl SockEventsHandle {
    /// Attached programs, as `type/attach point` (e.g. `cgroup/sock_create`).
    pub fn programs(&self) -> &[String] {
        &self.programs
    }

    /// The cgroup2 directory the programs are attached to.
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// False once the reader thread has ended (`deliver` returned false, or
    /// polling the ring buffer failed).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Events the programs dropped because the ring buffer was full (summed
    /// over CPUs). A dropped TUPLE is retried by the socket's next packet; a
    /// dropped CREATED is lost.
    pub fn lost_events(&self) -> Result<u64, String> {
        let map = self
            .ebpf
            .map(MAP_SOCK_EVENTS_LOST)
            .ok_or_else(|| format!("eBPF object has no map {MAP_SOCK_EVENTS_LOST}"))?;
        let array = aya::maps::PerCpuArray::<_, u64>::try_from(map)
            .map_err(|e| format!("map {MAP_SOCK_EVENTS_LOST} has an unexpected type: {e:?}"))?;
        let per_cpu = array
            .get(&0, 0)
            .map_err(|e| format!("reading {MAP_SOCK_EVENTS_LOST} failed: {e:?}"))?;
        Ok(per_cpu.iter().copied().fold(0u64, u64::wrapping_add))
    }
}

impl Drop for SockEventsHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // `ebpf` drops next: its programs detach from the cgroup.
    }
}

/// The cookie of this process's network namespace (to tell own CREATED
/// events from other namespaces'), when the kernel has netns cookies.
pub fn own_netns_cookie() -> Option<u64> {
    crate::sysctl::netns_cookie()
}

/// The cgroup2 directory to attach to: `/sys/fs/cgroup/unified` (hybrid
/// hierarchy) or `/sys/fs/cgroup` when that is a cgroup2 mount, else the
/// first cgroup2 mount in `/proc/self/mounts`.
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    cgroup2_root_in(&mounts)
}

fn cgroup2_root_in(mounts: &str) -> Option<PathBuf> {
    let cgroup2: Vec<&str> = mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            (fstype == "cgroup2").then_some(target)
        })
        .collect();
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .find(|p| cgroup2.contains(p))
        .or_else(|| cgroup2.first().copied())
        .map(PathBuf::from)
}

/// A cgroup2 mount flowtop made for attaching, removed when dropped.
struct TemporaryCgroup2 {
    dir: PathBuf,
}

impl TemporaryCgroup2 {
    fn mount() -> Result<Self, String> {
        use std::os::unix::fs::DirBuilderExt as _;
        let dir = PathBuf::from(format!("/run/flowtop/cgroup2-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("no cgroup2 mount, and creating {} failed: {e}", dir.display()))?;
        let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| "bad cgroup2 mount path".to_owned())?;
        // SAFETY: valid NUL-terminated strings; data may be NULL.
        let rc = unsafe {
            libc::mount(
                c"cgroup2".as_ptr(),
                target.as_ptr(),
                c"cgroup2".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            let _ = std::fs::remove_dir(&dir);
            return Err(format!(
                "no cgroup2 mount, and mounting one at {} failed: {err}",
                dir.display()
            ));
        }
        Ok(TemporaryCgroup2 { dir })
    }
}

impl Drop for TemporaryCgroup2 {
    fn drop(&mut self) {
        if let Ok(target) = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()) {
            // SAFETY: a valid NUL-terminated path; MNT_DETACH never blocks.
            unsafe {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Decodes one ring buffer record (None if it is too short).
#[doc(hidden)]
pub fn parse_sock_event(record: &[u8]) -> Option<SockEvent> {
    if record.len() < std::mem::size_of::<SockEvent>() {
        return None;
    }
    // SAFETY: the record holds at least size_of::<SockEvent>() bytes, the
    // read is unaligned, and SockEvent is plain integers (any bit pattern is
    // valid).
    Some(unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<SockEvent>()) })
}

/// Loads the socket-event programs, attaches them to the cgroup2 root (so
/// they see every socket of the machine, in every network namespace) and
/// starts a thread that hands batches of events to `deliver` as they
/// arrive, until `deliver` returns false or the handle is dropped.
///
/// Event semantics are documented on [`SockEvent`]: join CREATED (who) and
/// TUPLE (what) events by `cookie`.
pub fn start_sock_events(
    deliver: impl FnMut(Vec<SockEvent>) -> bool + Send + 'static,
) -> Result<SockEventsHandle, String> {
    #[cfg(flowtop_no_ebpf)]
    {
        drop(deliver);
        Err(NO_OBJECT_REASON.to_owned())
    }
    #[cfg(not(flowtop_no_ebpf))]
    {
        start_sock_events_object(OBJECT, deliver)
    }
}

fn start_sock_events_object(
    object: &[u8],
    deliver: impl FnMut(Vec<SockEvent>) -> bool + Send + 'static,
) -> Result<SockEventsHandle, String> {
    // `ip netns exec` gives its command a private /sys without the cgroup
    // mounts: then flowtop mounts cgroup2 itself, only for the attach.
    let temporary = match cgroup2_root() {
        Some(_) => None,
        None => Some(TemporaryCgroup2::mount()?),
    };
    let cgroup = match (&temporary, cgroup2_root()) {
        (Some(t), _) => t.dir.clone(),
        (None, Some(root)) => root,
        (None, None) => return Err("no cgroup2 hierarchy is mounted".to_owned()),
    };
    // Quietly first, then with the verifier log for the reason (as attach()).
    let attached = attach_sock_programs(object, &cgroup, aya::VerifierLogLevel::DISABLE)
        .or_else(|_| attach_sock_programs(object, &cgroup, aya::VerifierLogLevel::default()));
    // The links hold the cgroup itself, not the mount: undo ours at once.
    drop(temporary);
    let (ebpf, programs) = attached.map_err(with_privilege_hint)?;
    start_reader(ebpf, programs, cgroup, deliver)
}

/// Starts the thread that reads `SOCK_EVENTS` of a loaded and attached
/// object (cgroup programs or kprobes) and hands batches to `deliver`.
fn start_reader(
    mut ebpf: aya::Ebpf,
    programs: Vec<String>,
    cgroup: PathBuf,
    deliver: impl FnMut(Vec<SockEvent>) -> bool + Send + 'static,
) -> Result<SockEventsHandle, String> {
    let map = ebpf
        .take_map(MAP_SOCK_EVENTS)
        .ok_or_else(|| format!("the eBPF object has no map {MAP_SOCK_EVENTS}"))?;
    let ring = aya::maps::RingBuf::try_from(map)
        .map_err(|e| format!("map {MAP_SOCK_EVENTS} is not a ring buffer: {e:?}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::Builder::new()
        .name("flowtop-sockev".to_owned())
        .spawn({
            let stop = Arc::clone(&stop);
            move || read_sock_events(ring, &stop, deliver)
        })
        .map_err(|e| format!("starting the socket event thread failed: {e}"))?;
    Ok(SockEventsHandle {
        stop,
        thread: Some(thread),
        ebpf,
        programs,
        cgroup,
    })
}

fn attach_sock_programs(
    object: &[u8],
    cgroup: &Path,
    log: aya::VerifierLogLevel,
) -> Result<(aya::Ebpf, Vec<String>), String> {
    use aya::programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock};

    let mut ebpf = load_object(object, log, LoadFor::SockEvents)?;
    let cgroup_dir = std::fs::File::open(cgroup)
        .map_err(|e| format!("opening the cgroup2 root {} failed: {e}", cgroup.display()))?;
    // Ours must run next to programs that systemd or others attach further
    // down the tree (and not stop them from attaching). From 5.7 aya attaches
    // through a bpf_link, which always has multi-attach semantics and takes
    // no flags (BPF_F_ALLOW_MULTI there is EINVAL); before, through
    // BPF_PROG_ATTACH, which needs the flag.
    let links =
        aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(5, 7, 0));
    let mode = if links {
        CgroupAttachMode::Single
    } else {
        CgroupAttachMode::AllowMultiple
    };

    let create: &mut CgroupSock = ebpf
        .program_mut(PROG_SOCK_CREATE)
        .ok_or_else(|| format!("the eBPF object has no program {PROG_SOCK_CREATE}"))?
        .try_into()
        .map_err(|e| format!("{PROG_SOCK_CREATE} is not a cgroup/sock program: {e:?}"))?;
    create
        .load()
        .map_err(|e| format!("loading program {PROG_SOCK_CREATE} failed: {e:?}"))?;
    create.attach(&cgroup_dir, mode).map_err(|e| {
        format!(
            "attaching {PROG_SOCK_CREATE} (cgroup/sock_create) to {} failed: {e:?}",
            cgroup.display()
        )
    })?;

    let egress: &mut CgroupSkb = ebpf
        .program_mut(PROG_SOCK_EGRESS)
        .ok_or_else(|| format!("the eBPF object has no program {PROG_SOCK_EGRESS}"))?
        .try_into()
        .map_err(|e| format!("{PROG_SOCK_EGRESS} is not a cgroup_skb program: {e:?}"))?;
    egress
        .load()
        .map_err(|e| format!("loading program {PROG_SOCK_EGRESS} failed: {e:?}"))?;
    egress
        .attach(&cgroup_dir, CgroupSkbAttachType::Egress, mode)
        .map_err(|e| {
            format!(
                "attaching {PROG_SOCK_EGRESS} (cgroup_skb/egress) to {} failed: {e:?}",
                cgroup.display()
            )
        })?;
    let programs = vec!["cgroup/sock_create".to_owned(), "cgroup_skb/egress".to_owned()];
    Ok((ebpf, programs))
}

/// The reader thread: waits for the ring buffer, drains it in batches.
fn read_sock_events(
    mut ring: aya::maps::RingBuf<aya::maps::MapData>,
    stop: &AtomicBool,
    mut deliver: impl FnMut(Vec<SockEvent>) -> bool,
) {
    use std::os::fd::AsRawFd as _;

    let fd = ring.as_raw_fd();
    let timeout_ms = i32::try_from(SOCK_EVENTS_POLL.as_millis()).unwrap_or(100);
    let mut batch = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the fd lives as long as `ring`.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            eprintln!("flowtop: waiting for socket events failed: {err}");
            return;
        }
        loop {
            while batch.len() < SOCK_EVENTS_BATCH {
                let Some(item) = ring.next() else { break };
                if let Some(event) = parse_sock_event(&item) {
                    batch.push(event);
                }
            }
            if batch.is_empty() {
                break;
            }
            let full = batch.len() == SOCK_EVENTS_BATCH;
            if !deliver(std::mem::take(&mut batch)) {
                return;
            }
            if !full {
                break;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Kernel struct offsets from the running kernel's BTF
// ---------------------------------------------------------------------------

/// Where the running kernel publishes its BTF.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Byte offset and size of a (possibly nested) struct member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberOffset {
    /// From the start of the outermost struct.
    pub offset: u32,
    /// Size of the member's type (None when BTF gives it no size).
    pub size: Option<u32>,
}

/// A kernel BTF blob with its types indexed by id: enough to look struct
/// members up by name. (aya parses BTF too, but keeps struct members
/// crate-private.) Format: the kernel's Documentation/bpf/btf.rst.
pub struct KernelBtf {
    data: Vec<u8>,
    /// Byte position in `data` of type id `i + 1` (id 0 is `void`).
    types: Vec<usize>,
    /// Byte range of the string section in `data`.
    strings: std::ops::Range<usize>,
}

impl std::fmt::Debug for KernelBtf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelBtf")
            .field("bytes", &self.data.len())
            .field("types", &self.types.len())
            .finish()
    }
}

/// BTF kinds used here (`BTF_KIND_*`).
mod btf_kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FLOAT: u32 = 16;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

/// One `struct btf_type` header.
#[derive(Debug, Clone, Copy)]
struct BtfTypeHeader {
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    /// `size` or `type`, depending on the kind.
    size_or_type: u32,
    /// Position of the header in the blob (kind data follows at +12).
    pos: usize,
}

impl KernelBtf {
    /// Reads and indexes the running kernel's BTF ([`KERNEL_BTF`]).
    pub fn from_sys_fs() -> Result<Self, String> {
        let data =
            std::fs::read(KERNEL_BTF).map_err(|e| format!("reading kernel BTF {KERNEL_BTF} failed: {e}"))?;
        Self::parse(data).map_err(|e| format!("{KERNEL_BTF}: {e}"))
    }

    /// Indexes a BTF blob (little-endian, as on every target flowtop runs on).
    pub fn parse(data: Vec<u8>) -> Result<Self, String> {
        let u32_at = |pos: usize| -> Result<u32, String> {
            data.get(pos..pos + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| format!("BTF truncated at byte {pos}"))
        };
        let magic = data.get(..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        if magic != Some(0xeb9f) {
            return Err("not a little-endian BTF blob (bad magic)".to_owned());
        }
        let hdr_len = u32_at(4)? as usize;
        let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
        let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
        let type_start = hdr_len + type_off;
        let type_end = type_start + type_len;
        let strings = hdr_len + str_off..hdr_len + str_off + str_len;
        if type_end > data.len() || strings.end > data.len() {
            return Err("BTF sections reach past the end of the blob".to_owned());
        }
        let mut types = Vec::new();
        let mut pos = type_start;
        while pos < type_end {
            let info = u32_at(pos + 4)?;
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            let extra = match kind {
                1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
                2 | 7..=12 | 16 | 18 => 0,    // PTR, FWD..FUNC, FLOAT, TYPE_TAG
                3 => 12,                      // ARRAY
                4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
                6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
                other => return Err(format!("unknown BTF kind {other} at byte {pos}")),
            };
            types.push(pos);
            pos += 12 + extra;
        }
        if pos != type_end {
            return Err("BTF type section ends inside a type".to_owned());
        }
        Ok(Self { data, types, strings })
    }

    fn u32_at(&self, pos: usize) -> u32 {
        self.data
            .get(pos..pos + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn name(&self, name_off: u32) -> &str {
        let start = self.strings.start + name_off as usize;
        let Some(rest) = self.data.get(start..self.strings.end) else {
            return "";
        };
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn header(&self, id: u32) -> Option<BtfTypeHeader> {
        let pos = *self.types.get((id as usize).checked_sub(1)?)?;
        let info = self.u32_at(pos + 4);
        Some(BtfTypeHeader {
            name_off: self.u32_at(pos),
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 == 1,
            size_or_type: self.u32_at(pos + 8),
            pos,
        })
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> Option<BtfTypeHeader> {
        use btf_kind::*;
        for _ in 0..32 {
            let t = self.header(id)?;
            match t.kind {
                TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG => id = t.size_or_type,
                _ => return Some(t),
            }
        }
        None
    }

    fn type_size(&self, id: u32) -> Option<u32> {
        use btf_kind::*;
        let t = self.resolve(id)?;
        match t.kind {
            INT | ENUM | STRUCT | UNION | FLOAT | ENUM64 => Some(t.size_or_type),
            PTR => Some(8),
            ARRAY => {
                let (elem, nelems) = (self.u32_at(t.pos + 12), self.u32_at(t.pos + 20));
                self.type_size(elem)?.checked_mul(nelems)
            }
            _ => None,
        }
    }

    /// The id of the struct (or union) called `name`.
    fn composite_by_name(&self, name: &str) -> Option<u32> {
        (1..=self.types.len() as u32).find(|&id| {
            self.header(id).is_some_and(|t| {
                (t.kind == btf_kind::STRUCT || t.kind == btf_kind::UNION) && self.name(t.name_off) == name
            })
        })
    }

    /// Member `name` of the struct/union `t`, also inside its anonymous
    /// struct/union members: `(bit offset, bitfield size, type id)`.
    fn member(&self, t: BtfTypeHeader, name: &str, depth: u32) -> Option<(u32, u32, u32)> {
        if depth > 8 {
            return None;
        }
        for i in 0..t.vlen {
            let m = t.pos + 12 + 12 * i;
            let (name_off, ty, raw) = (self.u32_at(m), self.u32_at(m + 4), self.u32_at(m + 8));
            let (bit_offset, bitfield) = if t.kind_flag {
                (raw & 0x00ff_ffff, raw >> 24)
            } else {
                (raw, 0)
            };
            let member_name = self.name(name_off);
            if member_name == name {
                return Some((bit_offset, bitfield, ty));
            }
            if member_name.is_empty() {
                let inner = self.resolve(ty)?;
                if inner.kind == btf_kind::STRUCT || inner.kind == btf_kind::UNION {
                    if let Some((off, bits, ty)) = self.member(inner, name, depth + 1) {
                        return Some((bit_offset + off, bits, ty));
                    }
                }
            }
        }
        None
    }

    /// Offset of a member path such as `sock.__sk_common.skc_family`: the
    /// first part names a struct, each further part a member of the previous
    /// one (members of anonymous structs/unions are found directly, as in C).
    pub fn member_offset(&self, path: &str) -> Result<MemberOffset, String> {
        let mut parts = path.split('.');
        let root = parts.next().unwrap_or_default();
        let mut id = self
            .composite_by_name(root)
            .ok_or_else(|| format!("kernel BTF has no struct {root} (looking up {path})"))?;
        let mut bits = 0u32;
        let mut within = root.to_owned();
        let mut any = false;
        for part in parts {
            any = true;
            let t = self
                .resolve(id)
                .filter(|t| t.kind == btf_kind::STRUCT || t.kind == btf_kind::UNION)
                .ok_or_else(|| {
                    format!("kernel BTF: {within} is not a struct or union (looking up {path})")
                })?;
            let (offset, bitfield, ty) = self
                .member(t, part, 0)
                .ok_or_else(|| format!("kernel BTF: {within} has no member {part} (looking up {path})"))?;
            if bitfield != 0 {
                return Err(format!(
                    "kernel BTF: {within}.{part} is a {bitfield}-bit bitfield"
                ));
            }
            bits += offset;
            id = ty;
            within = format!("{within}.{part}");
        }
        if !any {
            return Err(format!("{path}: no member named (want struct.member)"));
        }
        if !bits.is_multiple_of(8) {
            return Err(format!("kernel BTF: {path} is not byte-aligned"));
        }
        Ok(MemberOffset {
            offset: bits / 8,
            size: self.type_size(id),
        })
    }

    /// [`member_offset`](Self::member_offset), also checking the member's
    /// size (what the eBPF programs read there).
    fn offset_sized(&self, path: &str, size: u32) -> Result<u32, String> {
        let m = self.member_offset(path)?;
        if m.size != Some(size) {
            return Err(format!(
                "kernel BTF: {path} has size {:?}, flowtop reads {size} bytes",
                m.size
            ));
        }
        Ok(m.offset)
    }

    /// The offsets the kprobe programs read, from this BTF. Required fields
    /// are errors when missing; the optional ones are left absent.
    pub fn sock_offsets(&self) -> Result<SockOffsets, String> {
        const SKC: &str = "sock.__sk_common";
        let sk = |field: &str, size: u32| self.offset_sized(&format!("{SKC}.{field}"), size);
        let optional = |r: Result<u32, String>| r.unwrap_or(OFFSET_ABSENT);
        Ok(SockOffsets {
            skc_family: sk("skc_family", 2)?,
            skc_num: sk("skc_num", 2)?,
            skc_dport: sk("skc_dport", 2)?,
            skc_rcv_saddr: sk("skc_rcv_saddr", 4)?,
            skc_daddr: sk("skc_daddr", 4)?,
            skc_v6_rcv_saddr: optional(sk("skc_v6_rcv_saddr", 16)),
            skc_v6_daddr: optional(sk("skc_v6_daddr", 16)),
            skc_cookie: optional(sk("skc_cookie", 8)),
            skc_net: optional(sk("skc_net.net", 8)),
            net_cookie: optional(self.offset_sized("net.net_cookie", 8)),
            sk_protocol: optional(self.offset_sized("sock.sk_protocol", 2)),
            msg_name: self.offset_sized("msghdr.msg_name", 8)?,
            msg_namelen: self.offset_sized("msghdr.msg_namelen", 4)?,
            _pad: 0,
        })
    }
}

// ---------------------------------------------------------------------------
// kprobe programs: load, attach, report
// ---------------------------------------------------------------------------

/// [`KprobeReport::chosen`] when every kprobe attached.
pub const SOCK_PATH_KPROBES: &str = "kprobes";
/// [`KprobeReport::chosen`] when they did not: the cgroup programs
/// ([`start_sock_events`]) are the socket-ownership path.
pub const SOCK_PATH_CGROUP: &str = "cgroup (fallback)";

/// What happened to one kprobe program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KprobeProgramReport {
    /// Program name (see `flowtop_common::KPROBE_PROGRAMS`).
    pub program: &'static str,
    /// `kprobe/<function>` or `kretprobe/<function>`.
    pub attach_point: String,
    /// Ok when the kernel accepted the program (the verifier passed it).
    pub loaded: Result<(), String>,
    /// Ok when it attached; else why not (aya's error in `{:?}` form).
    pub attached: Result<(), String>,
}

/// What [`probe_kprobes`] / [`attach_kprobes`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KprobeReport {
    /// The offsets given to the programs, or why the kernel's BTF could not
    /// provide them (then the programs are loaded, inert, but not attached).
    pub offsets: Result<SockOffsets, String>,
    /// One entry per program of `KPROBE_PROGRAMS`, in that order (empty when
    /// the object could not be loaded at all: see `reason`).
    pub programs: Vec<KprobeProgramReport>,
    /// Why nothing could be loaded (no eBPF object, map creation failed ...).
    pub reason: Option<String>,
    /// [`SOCK_PATH_KPROBES`] or [`SOCK_PATH_CGROUP`].
    pub chosen: &'static str,
}

impl KprobeReport {
    fn failed(reason: String, offsets: Result<SockOffsets, String>) -> Self {
        Self {
            offsets,
            programs: Vec::new(),
            reason: Some(reason),
            chosen: SOCK_PATH_CGROUP,
        }
    }

    /// Every program loaded.
    pub fn all_loaded(&self) -> bool {
        !self.programs.is_empty() && self.programs.iter().all(|p| p.loaded.is_ok())
    }

    /// Every program attached (the kprobe path is usable).
    pub fn all_attached(&self) -> bool {
        !self.programs.is_empty() && self.programs.iter().all(|p| p.attached.is_ok())
    }

    /// One line per program plus the choice, for logs and `--status`-like output.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        if let Some(reason) = &self.reason {
            out.push_str(&format!("kprobes unavailable: {reason}\n"));
        }
        if let Err(e) = &self.offsets {
            out.push_str(&format!("kprobe offsets: {e}\n"));
        }
        for p in &self.programs {
            let status = |r: &Result<(), String>| match r {
                Ok(()) => "yes".to_owned(),
                Err(e) => format!("no ({e})"),
            };
            out.push_str(&format!(
                "{} {}: loaded {}, attached {}\n",
                p.attach_point,
                p.program,
                status(&p.loaded),
                status(&p.attached)
            ));
        }
        out.push_str(&format!("socket ownership path: {}", self.chosen));
        out
    }
}

/// Attached kprobe programs (present only when all of them attached); they
/// stay attached while this lives.
pub struct KprobeAttachment {
    ebpf: aya::Ebpf,
    programs: Vec<String>,
}

impl std::fmt::Debug for KprobeAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KprobeAttachment")
            .field("programs", &self.programs)
            .finish_non_exhaustive()
    }
}

impl KprobeAttachment {
    /// Attached programs, as `kprobe/<function>` / `kretprobe/<function>`.
    pub fn programs(&self) -> &[String] {
        &self.programs
    }
}

/// The kernel struct offsets the kprobe programs would be given: from the
/// running kernel's BTF (needs no privileges; `/sys/kernel/btf/vmlinux` is
/// world-readable).
pub fn kernel_sock_offsets() -> Result<SockOffsets, String> {
    KernelBtf::from_sys_fs()?.sock_offsets()
}

/// Loads every kprobe program (which proves it passes the verifier on this
/// kernel), tries to attach each, and reports. Nothing stays attached: use
/// [`attach_kprobes`] to keep them.
pub fn probe_kprobes() -> KprobeReport {
    attach_kprobes().0
}

/// Loads and attaches the kprobe programs. When every one attaches they are
/// kept in the returned attachment (`chosen` = [`SOCK_PATH_KPROBES`]); when
/// any fails, all are detached and unloaded (`chosen` = [`SOCK_PATH_CGROUP`]).
pub fn attach_kprobes() -> (KprobeReport, Option<KprobeAttachment>) {
    #[cfg(flowtop_no_ebpf)]
    {
        (
            KprobeReport::failed(NO_OBJECT_REASON.to_owned(), Err(NO_OBJECT_REASON.to_owned())),
            None,
        )
    }
    #[cfg(not(flowtop_no_ebpf))]
    {
        attach_kprobes_object(OBJECT)
    }
}

fn attach_kprobes_object(object: &[u8]) -> (KprobeReport, Option<KprobeAttachment>) {
    let offsets = kernel_sock_offsets();
    // Quietly first; when the kernel refuses a program, once more with the
    // verifier log so that its reason carries the verifier's explanation.
    let (report, attachment) = attach_kprobes_with(object, &offsets, aya::VerifierLogLevel::DISABLE);
    if report.reason.is_none() && !report.all_loaded() {
        return attach_kprobes_with(object, &offsets, aya::VerifierLogLevel::default());
    }
    (report, attachment)
}

fn attach_kprobes_with(
    object: &[u8],
    offsets: &Result<SockOffsets, String>,
    log: aya::VerifierLogLevel,
) -> (KprobeReport, Option<KprobeAttachment>) {
    use aya::programs::KProbe;

    // Inert offsets when BTF failed: the programs still load (and so are
    // verified), but are not attached.
    let globals = offsets.clone().unwrap_or(SockOffsets::ABSENT);
    let mut loader = aya::EbpfLoader::new();
    loader
        .btf(None)
        .verifier_log_level(log)
        .override_global(GLOBAL_SOCK_OFFSETS, &globals, true)
        .map_max_entries(MAP_SOCK_SEEN, 64);
    let mut ebpf = match loader.load(object) {
        Ok(ebpf) => ebpf,
        Err(e) => {
            let reason = with_privilege_hint(format!("loading the eBPF object failed: {e:?}"));
            return (KprobeReport::failed(reason, offsets.clone()), None);
        }
    };
    let mut programs = Vec::new();
    let mut attached_names = Vec::new();
    for (name, function, ret) in KPROBE_PROGRAMS {
        let attach_point = format!("{}/{function}", if ret { "kretprobe" } else { "kprobe" });
        let mut report = KprobeProgramReport {
            program: name,
            attach_point: attach_point.clone(),
            loaded: Ok(()),
            attached: Err("not loaded".to_owned()),
        };
        let program: Result<&mut KProbe, String> = ebpf
            .program_mut(name)
            .ok_or_else(|| format!("the eBPF object has no program {name}"))
            .and_then(|p| {
                p.try_into()
                    .map_err(|e| format!("{name} is not a kprobe program: {e:?}"))
            });
        match program {
            Err(e) => report.loaded = Err(e),
            Ok(program) => match program.load() {
                Err(e) => report.loaded = Err(with_privilege_hint(format!("{e:?}"))),
                Ok(()) => {
                    report.attached = match offsets {
                        Err(e) => Err(format!("not attached: no kernel struct offsets: {e}")),
                        // The program ran for every call of a busy kernel
                        // function: keep its link only if all attach (below).
                        Ok(_) => program
                            .attach(function, 0)
                            .map(drop)
                            .map_err(|e| format!("attaching {attach_point} failed: {e:?}")),
                    };
                    if report.attached.is_ok() {
                        attached_names.push(attach_point);
                    }
                }
            },
        }
        programs.push(report);
    }
    let mut report = KprobeReport {
        offsets: offsets.clone(),
        programs,
        reason: None,
        chosen: SOCK_PATH_CGROUP,
    };
    if report.all_attached() {
        report.chosen = SOCK_PATH_KPROBES;
        let attachment = KprobeAttachment {
            ebpf,
            programs: attached_names,
        };
        (report, Some(attachment))
    } else {
        // Dropping the object detaches whatever did attach.
        drop(ebpf);
        (report, None)
    }
}

/// Socket ownership events from the kprobes where they all attach, else
/// from the cgroup programs ([`start_sock_events`]): the fallback is chosen
/// here and reported (`report.chosen`; the handle's
/// [`programs`](SockEventsHandle::programs) say which ones run).
///
/// The kprobe path sends KPROBE events (`flowtop_common::SOCK_EVENT_KPROBE`),
/// the cgroup path CREATED and TUPLE events: `deliver` must handle both. The
/// kprobe handle's [`cgroup`](SockEventsHandle::cgroup) is empty.
///
/// flowtop's engine currently calls [`start_sock_events`] directly (the
/// cgroup path, which attaches on every kernel flowtop supports); this is
/// the entry point for switching to kprobes where the kernel has them.
pub fn start_sock_events_preferring_kprobes(
    deliver: impl FnMut(Vec<SockEvent>) -> bool + Send + 'static,
) -> (KprobeReport, Result<SockEventsHandle, String>) {
    let (report, attachment) = attach_kprobes();
    match attachment {
        Some(attachment) => (report, start_kprobe_reader(attachment, deliver)),
        None => (report, start_sock_events(deliver)),
    }
}

/// Feeds the kprobes' ring buffer to `deliver` with the same reader thread
/// as the cgroup path.
fn start_kprobe_reader(
    attachment: KprobeAttachment,
    deliver: impl FnMut(Vec<SockEvent>) -> bool + Send + 'static,
) -> Result<SockEventsHandle, String> {
    let KprobeAttachment { ebpf, programs } = attachment;
    start_reader(ebpf, programs, PathBuf::new(), deliver)
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
        for needle in [
            "cgroup/sock_create",
            "cgroup_skb/egress",
            PROG_SOCK_CREATE,
            PROG_SOCK_EGRESS,
            MAP_SOCK_EVENTS,
            MAP_SOCK_SEEN,
            MAP_SOCK_EVENTS_LOST,
        ] {
            assert!(contains(needle.as_bytes()), "no {needle} in the object");
        }
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

    // -- socket ownership events -------------------------------------------

    #[test]
    fn the_sock_event_layout_is_fixed() {
        use flowtop_common::sock_event_offsets as off;
        assert_eq!(std::mem::size_of::<SockEvent>(), 88);
        assert_eq!(std::mem::align_of::<SockEvent>(), 8);
        assert_eq!(std::mem::size_of::<flowtop_common::SockTuple>(), 40);
        assert_eq!(std::mem::size_of::<flowtop_common::SockTupleKey>(), 48);
        assert_eq!(
            [
                off::KIND,
                off::TGID,
                off::UID,
                off::PROTOCOL,
                off::FAMILY,
                off::COOKIE
            ],
            [0, 4, 8, 12, 14, 16]
        );
        assert_eq!(
            [off::NETNS_COOKIE, off::COMM, off::LOCAL_PORT, off::REMOTE_PORT],
            [24, 32, 48, 50]
        );
        assert_eq!([off::LOCAL_ADDR, off::REMOTE_ADDR], [56, 72]);
    }

    #[test]
    fn a_ring_buffer_record_decodes_little_endian_fields() {
        let mut rec = vec![0u8; 88];
        rec[0..4].copy_from_slice(&2u32.to_le_bytes());
        rec[4..8].copy_from_slice(&4242u32.to_le_bytes());
        rec[12..14].copy_from_slice(&17u16.to_le_bytes());
        rec[14..16].copy_from_slice(&2u16.to_le_bytes());
        rec[16..24].copy_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        rec[32..39].copy_from_slice(b"python3");
        rec[48..50].copy_from_slice(&5353u16.to_le_bytes());
        rec[50..52].copy_from_slice(&53u16.to_le_bytes());
        rec[56..60].copy_from_slice(&[127, 0, 0, 1]);
        rec[72..76].copy_from_slice(&[192, 0, 2, 7]);
        // An odd start: the decoder must not assume alignment.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&rec);
        let ev = parse_sock_event(&shifted[1..]).expect("decodes");
        assert_eq!(ev.kind, flowtop_common::SOCK_EVENT_TUPLE);
        assert_eq!((ev.tgid, ev.protocol, ev.family), (4242, 17, 2));
        assert_eq!(ev.cookie, 0x0102_0304_0506_0708);
        assert_eq!(ev.comm_bytes(), b"python3");
        assert_eq!((ev.local_port, ev.remote_port), (5353, 53));
        assert_eq!(ev.local_addr[..4], [127, 0, 0, 1]);
        assert_eq!(ev.remote_addr[..4], [192, 0, 2, 7]);
        assert_eq!(parse_sock_event(&rec[..87]), None);
    }

    #[test]
    fn the_cgroup2_root_prefers_the_hybrid_unified_mount() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs ro 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nsdelegate 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n";
        assert_eq!(
            cgroup2_root_in(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n";
        assert_eq!(cgroup2_root_in(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        let elsewhere = "proc /proc proc rw 0 0\ncgroup2 /mnt/cg cgroup2 rw 0 0\n";
        assert_eq!(cgroup2_root_in(elsewhere), Some(PathBuf::from("/mnt/cg")));
        assert_eq!(cgroup2_root_in("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n"), None);
    }

    #[test]
    fn starting_sock_events_on_a_corrupt_object_fails_with_a_reason() {
        let mut bogus = vec![0u8; 256];
        bogus[..4].copy_from_slice(b"\x7fELF");
        match start_sock_events_object(&bogus, |_| true) {
            Ok(handle) => panic!("started on a corrupt object: {handle:?}"),
            // Either no cgroup2 mount here or aya's parse error.
            Err(reason) => assert!(
                reason.contains("ParseError") || reason.contains("cgroup2"),
                "{reason}"
            ),
        }
    }

    #[cfg(flowtop_no_ebpf)]
    #[test]
    fn without_the_object_sock_events_explain_how_to_get_it() {
        let reason = start_sock_events(|_| true).expect_err("no object");
        assert!(reason.contains("built without the eBPF object"), "{reason}");
    }

    /// Collects delivered events for the root-only tests.
    struct Events {
        handle: SockEventsHandle,
        rx: std::sync::mpsc::Receiver<Vec<SockEvent>>,
        seen: Vec<SockEvent>,
    }

    impl Events {
        fn start() -> Self {
            let (tx, rx) = std::sync::mpsc::channel();
            let handle = start_sock_events(move |batch| tx.send(batch).is_ok())
                .unwrap_or_else(|e| panic!("start_sock_events: {e}"));
            assert_eq!(handle.programs(), ["cgroup/sock_create", "cgroup_skb/egress"]);
            Self {
                handle,
                rx,
                seen: Vec::new(),
            }
        }

        /// Waits (up to 5 s) until `pred` holds for an event; returns it.
        fn wait_for(&mut self, what: &str, pred: impl Fn(&SockEvent) -> bool) -> SockEvent {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                if let Some(ev) = self.seen.iter().find(|e| pred(e)) {
                    return *ev;
                }
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match self.rx.recv_timeout(left) {
                    Ok(batch) => self.seen.extend(batch),
                    Err(_) => panic!(
                        "no {what} event within 5 s; {} events seen, lost {:?}",
                        self.seen.len(),
                        self.handle.lost_events()
                    ),
                }
            }
        }

        /// Takes whatever arrives within `d`.
        fn drain_for(&mut self, d: Duration) {
            let deadline = std::time::Instant::now() + d;
            while let Ok(batch) = self
                .rx
                .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            {
                self.seen.extend(batch);
            }
        }
    }

    fn socket_cookie(fd: &impl std::os::fd::AsRawFd) -> u64 {
        let mut cookie: u64 = 0;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        // SAFETY: valid fd, pointer and length.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_COOKIE,
                (&mut cookie as *mut u64).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "SO_COOKIE: {}", io::Error::last_os_error());
        cookie
    }

    fn thread_comm() -> Vec<u8> {
        let comm = std::fs::read("/proc/thread-self/comm").expect("comm");
        comm.strip_suffix(b"\n").unwrap_or(&comm).to_vec()
    }

    fn is_created(e: &SockEvent) -> bool {
        e.kind == flowtop_common::SOCK_EVENT_CREATED
    }

    fn is_tuple(e: &SockEvent) -> bool {
        e.kind == flowtop_common::SOCK_EVENT_TUPLE
    }

    const LOOPBACK4: [u8; 16] = [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    #[test]
    #[ignore = "needs root: run by cargo xtask test"]
    fn sock_events_attribute_a_tcp_connection_to_this_process() {
        use std::io::{Read as _, Write as _};

        let mut events = Events::start();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let mut client = std::net::TcpStream::connect(addr).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        client.write_all(b"x").expect("write");
        let mut buf = [0u8; 1];
        server.read_exact(&mut buf).expect("read");
        let cookie = socket_cookie(&client);
        let client_port = client.local_addr().expect("client addr").port();

        let created = events.wait_for("CREATED", |e| is_created(e) && e.cookie == cookie);
        assert_eq!(created.tgid, std::process::id(), "{created:?}");
        assert_eq!(created.comm_bytes(), thread_comm().as_slice(), "{created:?}");
        // SAFETY: getuid has no preconditions.
        assert_eq!(created.uid, unsafe { libc::getuid() });
        assert_eq!((created.protocol, created.family), (6, 2), "{created:?}");
        if let Some(netns) = own_netns_cookie() {
            assert_eq!(created.netns_cookie, netns, "{created:?}");
        }

        let tuple = events.wait_for("TUPLE", |e| is_tuple(e) && e.cookie == cookie);
        assert_eq!((tuple.local_port, tuple.remote_port), (client_port, addr.port()));
        assert_eq!((tuple.protocol, tuple.family), (6, 2), "{tuple:?}");
        assert_eq!((tuple.local_addr, tuple.remote_addr), (LOOPBACK4, LOOPBACK4));

        // The accepted socket reports nothing: it sends no SYN (TCP tuples
        // come from SYNs only) and was not made by socket(2); userspace
        // matches accepted connections to their listener.
        let server_cookie = socket_cookie(&server);
        events.drain_for(Duration::from_millis(300));
        assert!(
            !events.seen.iter().any(|e| e.cookie == server_cookie),
            "no event for the accepted socket"
        );

        // Steady traffic on a known tuple adds no events.
        for _ in 0..20 {
            client.write_all(b"y").expect("write");
            server.read_exact(&mut buf).expect("read");
        }
        events.drain_for(Duration::from_millis(300));
        let tuples = events
            .seen
            .iter()
            .filter(|e| is_tuple(e) && e.cookie == cookie)
            .count();
        assert_eq!(tuples, 1, "duplicate TUPLE events for one connection");
        assert!(events.handle.is_running());
    }

    #[test]
    #[ignore = "needs root: run by cargo xtask test"]
    fn sock_events_report_ipv6_tuples() {
        let mut events = Events::start();
        let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else {
            eprintln!("no ::1 here: skipped");
            return;
        };
        let addr = listener.local_addr().expect("local_addr");
        let client = std::net::TcpStream::connect(addr).expect("connect");
        let cookie = socket_cookie(&client);
        let tuple = events.wait_for("TUPLE", |e| is_tuple(e) && e.cookie == cookie);
        let mut lo6 = [0u8; 16];
        lo6[15] = 1;
        assert_eq!((tuple.protocol, tuple.family), (6, 10), "{tuple:?}");
        assert_eq!((tuple.local_addr, tuple.remote_addr), (lo6, lo6));
        assert_eq!(tuple.remote_port, addr.port());
        let created = events.wait_for("CREATED", |e| is_created(e) && e.cookie == cookie);
        assert_eq!((created.tgid, created.family), (std::process::id(), 10));
    }

    #[test]
    #[ignore = "needs root: run by cargo xtask test"]
    fn sock_events_report_each_destination_of_an_unconnected_udp_socket() {
        let mut events = Events::start();
        let sink1 = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind sink");
        let sink2 = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind sink");
        let (p1, p2) = (
            sink1.local_addr().expect("addr").port(),
            sink2.local_addr().expect("addr").port(),
        );
        // Bound to the wildcard address: the local address comes from the
        // packet too.
        let sender = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind sender");
        let sport = sender.local_addr().expect("addr").port();
        let cookie = socket_cookie(&sender);
        for port in [p1, p2, p1, p2, p1] {
            sender.send_to(b"x", ("127.0.0.1", port)).expect("send_to");
        }
        for port in [p1, p2] {
            let t = events.wait_for("UDP TUPLE", |e| {
                is_tuple(e) && e.cookie == cookie && e.remote_port == port
            });
            assert_eq!((t.protocol, t.family, t.local_port), (17, 2, sport), "{t:?}");
            assert_eq!((t.local_addr, t.remote_addr), (LOOPBACK4, LOOPBACK4), "{t:?}");
        }
        let created = events.wait_for("CREATED", |e| is_created(e) && e.cookie == cookie);
        assert_eq!((created.tgid, created.protocol), (std::process::id(), 17));
        // Alternating destinations are still one event per (socket, tuple).
        events.drain_for(Duration::from_millis(300));
        let tuples = events
            .seen
            .iter()
            .filter(|e| is_tuple(e) && e.cookie == cookie)
            .count();
        assert_eq!(tuples, 2, "{:?}", events.seen);
    }

    #[test]
    #[ignore = "needs root: run by cargo xtask test"]
    fn sock_events_attribute_a_short_lived_child_process() {
        let mut events = Events::start();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let script = format!(
            "import socket\n\
             s = socket.create_connection(('127.0.0.1', {port}))\n\
             s.sendall(b'x')\n\
             print(s.getsockname()[1], flush=True)\n\
             s.close()\n"
        );
        let child = std::process::Command::new("python3")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let pid = child.id();
        let out = child.wait_with_output().expect("python3 output");
        assert!(out.status.success(), "{out:?}");
        let child_port: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("port");
        // The process is gone; the events still name it.
        let tuple = events.wait_for("child TUPLE", |e| {
            is_tuple(e) && e.local_port == child_port && e.remote_port == port
        });
        let created = events.wait_for("child CREATED", |e| is_created(e) && e.cookie == tuple.cookie);
        assert_eq!(created.tgid, pid, "{created:?}");
        assert_eq!(created.comm_bytes(), b"python3", "{created:?}");
        drop(listener);
    }

    #[test]
    #[ignore = "needs root: run by cargo xtask test"]
    fn sock_events_stop_when_deliver_says_so_and_detach_on_drop() {
        let handle = start_sock_events(|_| false).expect("start");
        let _ = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while handle.is_running() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!handle.is_running(), "reader thread still running");
        drop(handle);
        // A second start after the drop works.
        let again = Events::start();
        drop(again);
    }

    // -----------------------------------------------------------------------
    // kprobes and kernel BTF offsets
    // -----------------------------------------------------------------------

    #[test]
    fn kernel_btf_gives_plausible_sock_common_offsets() {
        let btf = KernelBtf::from_sys_fs().expect("kernel BTF");
        // Direct members of sock_common (some inside anonymous unions).
        let family = btf.member_offset("sock_common.skc_family").expect("skc_family");
        let num = btf.member_offset("sock_common.skc_num").expect("skc_num");
        let dport = btf.member_offset("sock_common.skc_dport").expect("skc_dport");
        assert_eq!((family.size, num.size, dport.size), (Some(2), Some(2), Some(2)));
        // Layout since Linux 3.x: addresses (8 bytes), hash (4), then
        // dport/num at 12..16, family at 16.
        assert!(
            family.offset < 64 && num.offset < 64 && dport.offset < 64,
            "{family:?} {num:?} {dport:?}"
        );
        assert_eq!(num.offset, dport.offset + 2, "skc_num follows skc_dport");
        assert!(family.offset > num.offset, "{family:?} {num:?}");
        assert_eq!(family.offset % 2, 0);
        // Nested through `sock.__sk_common` (at offset 0 of struct sock).
        let nested = btf.member_offset("sock.__sk_common.skc_family").expect("nested");
        assert_eq!(nested, family);
        let daddr = btf.member_offset("sock_common.skc_daddr").expect("skc_daddr");
        assert_eq!(daddr.size, Some(4));
        let net = btf
            .member_offset("sock.__sk_common.skc_net.net")
            .expect("skc_net.net");
        assert_eq!(net.size, Some(8));

        let offsets = btf.sock_offsets().expect("sock offsets");
        eprintln!("{offsets:?}");
        assert_eq!(offsets.skc_family, family.offset);
        assert_eq!(offsets.skc_num, num.offset);
        assert_eq!(offsets.skc_dport, dport.offset);
        assert_eq!(offsets.msg_name, 0, "msghdr.msg_name is the first field");
        for (name, value) in [
            ("skc_rcv_saddr", offsets.skc_rcv_saddr),
            ("skc_daddr", offsets.skc_daddr),
            ("msg_namelen", offsets.msg_namelen),
        ] {
            assert_ne!(value, OFFSET_ABSENT, "{name}");
        }
        assert_eq!(kernel_sock_offsets(), Ok(offsets));
    }

    #[test]
    fn a_missing_btf_member_or_struct_is_a_clear_error() {
        let btf = KernelBtf::from_sys_fs().expect("kernel BTF");
        let err = btf
            .member_offset("sock_common.skc_no_such_field")
            .expect_err("no such member");
        assert!(
            err.contains("sock_common has no member skc_no_such_field"),
            "{err}"
        );
        let err = btf
            .member_offset("sock.__sk_common.skc_nope")
            .expect_err("no such nested member");
        assert!(err.contains("sock.__sk_common has no member skc_nope"), "{err}");
        let err = btf
            .member_offset("flowtop_no_such_struct.x")
            .expect_err("no such struct");
        assert!(err.contains("no struct flowtop_no_such_struct"), "{err}");
        let err = btf
            .member_offset("sock_common.skc_family.x")
            .expect_err("not a struct");
        assert!(err.contains("not a struct or union"), "{err}");
    }

    #[test]
    fn garbage_is_not_btf() {
        let err = KernelBtf::parse(vec![0u8; 64]).expect_err("bad magic");
        assert!(err.contains("magic"), "{err}");
        let mut truncated = vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0];
        truncated.extend_from_slice(&[0, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let err = KernelBtf::parse(truncated).expect_err("sections past the end");
        assert!(err.contains("past the end"), "{err}");
    }

    /// Built without the toolchain: the kprobe report gives the no-object reason.
    #[cfg(flowtop_no_ebpf)]
    #[test]
    fn without_the_object_the_kprobe_report_explains_how_to_get_it() {
        let report = probe_kprobes();
        assert!(report.programs.is_empty(), "{report:?}");
        let reason = report.reason.clone().expect("reason");
        assert!(reason.contains("built without the eBPF object"), "{reason}");
        assert_eq!(report.chosen, SOCK_PATH_CGROUP);
    }

    #[cfg(not(flowtop_no_ebpf))]
    #[test]
    fn the_embedded_object_holds_the_kprobe_programs() {
        let contains = |needle: &[u8]| OBJECT.windows(needle.len()).any(|w| w == needle);
        for (name, function, ret) in KPROBE_PROGRAMS {
            let section = format!("{}/{function}", if ret { "kretprobe" } else { "kprobe" });
            assert!(contains(section.as_bytes()), "no section {section}");
            assert!(contains(name.as_bytes()), "no program {name}");
        }
        assert!(
            contains(GLOBAL_SOCK_OFFSETS.as_bytes()),
            "no global {GLOBAL_SOCK_OFFSETS}"
        );
        assert!(contains(MAP_KPROBE_SEEN.as_bytes()), "no map {MAP_KPROBE_SEEN}");
    }

    #[test]
    #[ignore = "needs root: run by cargo xtask test"]
    fn every_kprobe_program_loads_and_the_fallback_is_reported() {
        let report = probe_kprobes();
        eprintln!("{}", report.summary());
        assert_eq!(report.reason, None, "{report:?}");
        assert!(report.offsets.is_ok(), "{:?}", report.offsets);
        assert_eq!(report.programs.len(), KPROBE_PROGRAMS.len());
        for p in &report.programs {
            assert_eq!(p.loaded, Ok(()), "{} did not pass the verifier", p.program);
        }
        assert!(report.all_loaded());
        if !Path::new("/sys/bus/event_source/devices/kprobe/type").exists() {
            // No CONFIG_KPROBES: nothing attaches, the cgroup path is chosen.
            for p in &report.programs {
                let err = p.attached.clone().expect_err("attached without kprobes?");
                assert!(err.contains("kprobe"), "{}: {err}", p.program);
                assert!(err.contains(&p.attach_point), "{}: {err}", p.program);
            }
            assert!(!report.all_attached());
            assert_eq!(report.chosen, SOCK_PATH_CGROUP);
            let (report2, attachment) = attach_kprobes();
            assert!(attachment.is_none());
            assert_eq!(report2.chosen, SOCK_PATH_CGROUP);
            // The fallback runs the cgroup programs.
            let (report3, handle) = start_sock_events_preferring_kprobes(|_| true);
            assert_eq!(report3.chosen, SOCK_PATH_CGROUP);
            let handle = handle.expect("cgroup fallback");
            assert_eq!(handle.programs(), ["cgroup/sock_create", "cgroup_skb/egress"]);
        } else if report.all_attached() {
            assert_eq!(report.chosen, SOCK_PATH_KPROBES);
        }
        assert!(report.summary().contains("socket ownership path: "));
    }

    /// Where kprobes attach: a TCP connect and a UDP send are reported with
    /// their owner. Skipped (passes) on kernels without kprobes.
    #[test]
    #[ignore = "needs root: run by cargo xtask test"]
    fn kprobe_events_carry_tuple_and_owner_where_kprobes_attach() {
        use flowtop_common::SOCK_EVENT_KPROBE;
        let (tx, rx) = std::sync::mpsc::channel();
        let (report, handle) = start_sock_events_preferring_kprobes(move |batch| tx.send(batch).is_ok());
        if report.chosen != SOCK_PATH_KPROBES {
            eprintln!(
                "SKIPPED kprobe event check: kprobes cannot attach on this kernel\n{}",
                report.summary()
            );
            return;
        }
        let _handle = handle.expect("kprobe handle");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let client_port = client.local_addr().expect("addr").port();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        udp.send_to(b"x", ("127.0.0.1", port)).expect("send_to");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        let found = |seen: &Vec<SockEvent>, proto: u16, rport: u16| {
            seen.iter().any(|e: &SockEvent| {
                e.kind == SOCK_EVENT_KPROBE
                    && e.protocol == proto
                    && e.remote_port == rport
                    && e.tgid == std::process::id()
            })
        };
        while std::time::Instant::now() < deadline && !(found(&seen, 6, port) && found(&seen, 17, port)) {
            if let Ok(batch) = rx.recv_timeout(Duration::from_millis(100)) {
                seen.extend(batch);
            }
        }
        assert!(found(&seen, 6, port), "no TCP connect event: {seen:?}");
        assert!(found(&seen, 17, port), "no UDP send event: {seen:?}");
        assert!(seen
            .iter()
            .any(|e| e.kind == SOCK_EVENT_KPROBE && e.local_port == client_port));
    }
}
