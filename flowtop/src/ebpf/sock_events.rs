//! Socket ownership events: the cgroup programs (`cgroup/sock_create`,
//! `cgroup_skb/egress`, and for name captures `cgroup_skb/ingress`) on a
//! cgroup2 root (mounted for the moment of attaching when the namespace has
//! none), and the ring-buffer reader.

#![cfg_attr(flowtop_no_ebpf, allow(dead_code))]

use super::*;
use crate::names::capture::{parse_name_event, NameCapture};
use flowtop_common::{
    MAP_NAME_EVENTS, MAP_NAME_EVENTS_LOST, PROG_NAME_INGRESS, PROG_SOCK_POST_BIND4, PROG_SOCK_POST_BIND6,
};

// ---------------------------------------------------------------------------
// Socket ownership events
// ---------------------------------------------------------------------------

/// Most events handed to `deliver` in one call.
const SOCK_EVENTS_BATCH: usize = 4096;
/// Most process records handed over in one call (more than the exec ring
/// buffer holds: a drain stops only if a storm of forks outpaces it).
const EXEC_EVENTS_BATCH: usize = 32768;
/// Most name captures handed over in one call (up to ~8 MiB of payload).
const NAME_EVENTS_BATCH: usize = 2048;
/// How long the reader thread waits for the ring buffer before it checks
/// whether it should stop.
const SOCK_EVENTS_POLL: Duration = Duration::from_millis(100);

/// Running socket ownership events (see [`AttachedSockEvents::start_reader`]).
/// The programs stay attached while this lives; dropping it stops the reader
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
        per_cpu_sum(&self.ebpf, MAP_SOCK_EVENTS_LOST)
    }

    /// Name events the programs dropped because their ring buffer was full
    /// (summed over CPUs): those names are missing.
    pub fn lost_name_events(&self) -> Result<u64, String> {
        per_cpu_sum(&self.ebpf, MAP_NAME_EVENTS_LOST)
    }

    /// Exec and fork records the programs dropped because their ring
    /// buffer was full (summed over CPUs): those processes are then known
    /// only from /proc, while they live.
    pub fn lost_exec_events(&self) -> Result<u64, String> {
        per_cpu_sum(&self.ebpf, MAP_EXEC_EVENTS_LOST)
    }
}

/// Slot 0 of a per-CPU `u64` array, summed over CPUs.
fn per_cpu_sum(ebpf: &aya::Ebpf, name: &str) -> Result<u64, String> {
    let map = ebpf
        .map(name)
        .ok_or_else(|| format!("eBPF object has no map {name}"))?;
    let array = aya::maps::PerCpuArray::<_, u64>::try_from(map)
        .map_err(|e| format!("map {name} has an unexpected type: {e:?}"))?;
    let per_cpu = array
        .get(&0, 0)
        .map_err(|e| format!("reading {name} failed: {e:?}"))?;
    Ok(per_cpu.iter().copied().fold(0u64, u64::wrapping_add))
}

#[cfg(test)]
impl SockEventsHandle {
    /// The egress program's `SOCK_STATE` value for `socket` (None before
    /// the program stored one): lets tests see the per-socket fast path.
    pub(crate) fn sock_state(
        &self,
        socket: &impl std::os::fd::AsRawFd,
    ) -> Result<Option<flowtop_common::SockState>, String> {
        use flowtop_common::MAP_SOCK_STATE;
        let map = self
            .ebpf
            .map(MAP_SOCK_STATE)
            .ok_or_else(|| format!("eBPF object has no map {MAP_SOCK_STATE}"))?;
        let storage = aya::maps::SkStorage::<_, flowtop_common::SockState>::try_from(map)
            .map_err(|e| format!("map {MAP_SOCK_STATE} has an unexpected type: {e:?}"))?;
        match storage.get(socket, 0) {
            Ok(value) => Ok(Some(value)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(format!("reading {MAP_SOCK_STATE} failed: {e:?}")),
        }
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

pub(super) fn cgroup2_root_in(mounts: &str) -> Option<PathBuf> {
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

/// The name-capture ingress program as listed in `programs()`.
pub const PROGRAM_NAME_INGRESS: &str = "cgroup_skb/ingress";

/// What the reader thread hands over in one call: a batch of socket events,
/// then every process record that was in the exec ring buffer when that
/// batch had been read (as a process execs before it makes sockets, the
/// records of every process behind a socket event of the batch are in the
/// same call or an earlier one: apply them first), then the name captures
/// read after both (a capture's socket was created, and its CREATED event
/// written, before its first packet: its owner is known by then too).
#[derive(Debug, Default)]
pub struct ReaderBatch {
    pub processes: Vec<ProcEvent>,
    pub sockets: Vec<SockEvent>,
    pub names: Vec<NameCapture>,
    /// When draining the socket ring for this batch began, if the drain
    /// emptied it: every socket event submitted before then is in this
    /// batch or an earlier one (what lets held DESTROYs go, see
    /// `engine::held`). None when the batch was cut at its size limit.
    pub drained_from: Option<std::time::Instant>,
}

impl ReaderBatch {
    fn is_empty(&self) -> bool {
        self.processes.is_empty() && self.sockets.is_empty() && self.names.is_empty()
    }
}

/// Loaded and attached socket-event programs (cgroup or kprobes) whose
/// ring buffer has been taken but not read yet: what start-up does with
/// root's privileges. The programs stay attached while this lives (events
/// wait in the ring buffer, or are counted lost when it fills);
/// [`start_reader`](Self::start_reader) then starts the reader thread, which
/// needs no privileges, so that it can start after the capability drop.
pub struct AttachedSockEvents {
    ebpf: aya::Ebpf,
    ring: aya::maps::RingBuf<aya::maps::MapData>,
    /// The exec/fork programs' ring buffer (None when they did not attach:
    /// see `exec_unavailable`).
    exec_ring: Option<aya::maps::RingBuf<aya::maps::MapData>>,
    /// The name captures' ring buffer (read even when no name program is
    /// attached: then it stays empty, which the tests check).
    name_ring: Option<aya::maps::RingBuf<aya::maps::MapData>>,
    exec_unavailable: Option<String>,
    programs: Vec<String>,
    cgroup: PathBuf,
}

impl std::fmt::Debug for AttachedSockEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedSockEvents")
            .field("programs", &self.programs)
            .field("cgroup", &self.cgroup)
            .finish_non_exhaustive()
    }
}

impl AttachedSockEvents {
    /// Takes the ring buffer of a loaded and attached object (cgroup
    /// programs or kprobes), and attaches the exec/fork programs of the same
    /// object next to them (best effort: without them, owners lack what
    /// only /proc of a live process tells).
    pub(crate) fn new(
        mut ebpf: aya::Ebpf,
        mut programs: Vec<String>,
        cgroup: PathBuf,
    ) -> Result<Self, String> {
        let map = ebpf
            .take_map(MAP_SOCK_EVENTS)
            .ok_or_else(|| format!("the eBPF object has no map {MAP_SOCK_EVENTS}"))?;
        let ring = aya::maps::RingBuf::try_from(map)
            .map_err(|e| format!("map {MAP_SOCK_EVENTS} is not a ring buffer: {e:?}"))?;
        let name_ring = match ebpf.take_map(MAP_NAME_EVENTS) {
            Some(map) => Some(
                aya::maps::RingBuf::try_from(map)
                    .map_err(|e| format!("map {MAP_NAME_EVENTS} is not a ring buffer: {e:?}"))?,
            ),
            None => None,
        };
        let (exec_ring, exec_unavailable) = match super::exec::attach_exec_programs(&mut ebpf) {
            Ok(exec) => {
                programs.extend(exec.programs);
                (Some(exec.ring), None)
            }
            Err(why) => (None, Some(with_privilege_hint(why))),
        };
        Ok(AttachedSockEvents {
            ebpf,
            ring,
            exec_ring,
            name_ring,
            exec_unavailable,
            programs,
            cgroup,
        })
    }

    /// Why the exec/fork programs are not attached (None when they are).
    pub fn exec_unavailable(&self) -> Option<&str> {
        self.exec_unavailable.as_deref()
    }

    /// Attached programs, as `type/attach point` (e.g. `cgroup/sock_create`).
    pub fn programs(&self) -> &[String] {
        &self.programs
    }

    /// Starts the thread that hands batches of events to `deliver` as they
    /// arrive, until `deliver` returns false or the handle is dropped. It
    /// only polls the already mapped ring buffer: no privileges needed.
    pub fn start_reader(
        self,
        mut deliver: impl FnMut(Vec<SockEvent>) -> bool + Send + 'static,
    ) -> Result<SockEventsHandle, String> {
        self.start_batch_reader(move |batch| batch.sockets.is_empty() || deliver(batch.sockets))
    }

    /// Whether the name-capture ingress program runs (and feeds the
    /// reader's [`ReaderBatch::names`]).
    pub fn inspecting(&self) -> bool {
        self.programs.iter().any(|p| p == PROGRAM_NAME_INGRESS)
    }

    /// [`start_reader`](Self::start_reader), also handing over the exec and
    /// fork records and the name captures, as one [`ReaderBatch`] per call
    /// (see there for the order).
    pub fn start_batch_reader(
        self,
        deliver: impl FnMut(ReaderBatch) -> bool + Send + 'static,
    ) -> Result<SockEventsHandle, String> {
        let AttachedSockEvents {
            ebpf,
            ring,
            exec_ring,
            name_ring,
            programs,
            cgroup,
            ..
        } = self;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("flowtop-sockev".to_owned())
            .spawn({
                let stop = Arc::clone(&stop);
                move || read_sock_events(ring, exec_ring, name_ring, &stop, deliver)
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
}

/// Loads the socket-event programs and attaches them to the cgroup2 root
/// (so they see every socket of the machine, in every network namespace);
/// needs root. No thread is started: see [`AttachedSockEvents::start_reader`].
/// Name captures are on: [`attach_sock_events_inspecting`]`(true)`.
///
/// Event semantics are documented on [`SockEvent`]: join CREATED (who) and
/// TUPLE (what) events by `cookie`.
pub fn attach_sock_events() -> Result<AttachedSockEvents, String> {
    attach_sock_events_inspecting(true)
}

/// [`attach_sock_events`], with the name captures on (`inspect`: the
/// ingress program attached, the egress program's captures on) or off
/// (`--no-inspect`: no ingress program, and the egress program's capture
/// code is dead for the verifier).
pub fn attach_sock_events_inspecting(inspect: bool) -> Result<AttachedSockEvents, String> {
    #[cfg(flowtop_no_ebpf)]
    {
        let _ = inspect;
        Err(NO_OBJECT_REASON.to_owned())
    }
    #[cfg(not(flowtop_no_ebpf))]
    {
        attach_sock_events_object_inspecting(OBJECT, inspect)
    }
}

/// [`attach_sock_events`] and [`AttachedSockEvents::start_reader`] in one
/// call, for callers that do not drop privileges in between (tests, examples).
pub fn start_sock_events(
    deliver: impl FnMut(Vec<SockEvent>) -> bool + Send + 'static,
) -> Result<SockEventsHandle, String> {
    attach_sock_events()?.start_reader(deliver)
}

#[cfg(test)]
pub(super) fn attach_sock_events_object(object: &[u8]) -> Result<AttachedSockEvents, String> {
    attach_sock_events_object_inspecting(object, true)
}

fn attach_sock_events_object_inspecting(object: &[u8], inspect: bool) -> Result<AttachedSockEvents, String> {
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
    // Quietly first: a verifier log buffer costs ~16 MB of peak memory. Only
    // when the kernel refuses is the load repeated with the log, so that the
    // reason carries the verifier's explanation.
    // Name events carry the netns cookie where the kernel lets cgroup_skb
    // programs ask for it (Linux 6.15 on): tried first, then without.
    let with_cookie = NameGlobals {
        inspect,
        netns_cookie: true,
    };
    let without_cookie = NameGlobals {
        inspect,
        netns_cookie: false,
    };
    let quiet = aya::VerifierLogLevel::DISABLE;
    let attached = attach_sock_programs(object, &cgroup, quiet, with_cookie)
        .or_else(|_| attach_sock_programs(object, &cgroup, quiet, without_cookie))
        .or_else(|_| attach_sock_programs(object, &cgroup, aya::VerifierLogLevel::default(), without_cookie));
    // The links hold the cgroup itself, not the mount: undo ours at once.
    drop(temporary);
    let (ebpf, programs) = attached.map_err(with_privilege_hint)?;
    AttachedSockEvents::new(ebpf, programs, cgroup)
}

/// How cgroup programs are attached here. Ours must run next to programs
/// that systemd or others attach further down the tree (and not stop them
/// from attaching). From 5.7 aya attaches through a bpf_link, which always
/// has multi-attach semantics and takes no flags (BPF_F_ALLOW_MULTI there
/// is EINVAL); before, through BPF_PROG_ATTACH, which needs the flag.
fn cgroup_attach_mode() -> aya::programs::CgroupAttachMode {
    use aya::programs::CgroupAttachMode;
    let links =
        aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(5, 7, 0));
    if links {
        CgroupAttachMode::Single
    } else {
        CgroupAttachMode::AllowMultiple
    }
}

/// Loads the name-capture ingress program of `ebpf` and attaches it to
/// `cgroup_dir` (the egress half is part of the egress program).
pub(super) fn attach_name_ingress(
    ebpf: &mut aya::Ebpf,
    cgroup_dir: &std::fs::File,
    cgroup: &Path,
) -> Result<(), String> {
    use aya::programs::{CgroupSkb, CgroupSkbAttachType};
    let ingress: &mut CgroupSkb = ebpf
        .program_mut(PROG_NAME_INGRESS)
        .ok_or_else(|| format!("the eBPF object has no program {PROG_NAME_INGRESS}"))?
        .try_into()
        .map_err(|e| format!("{PROG_NAME_INGRESS} is not a cgroup_skb program: {e:?}"))?;
    ingress
        .load()
        .map_err(|e| format!("loading program {PROG_NAME_INGRESS} failed: {e:?}"))?;
    ingress
        .attach(cgroup_dir, CgroupSkbAttachType::Ingress, cgroup_attach_mode())
        .map_err(|e| {
            format!(
                "attaching {PROG_NAME_INGRESS} (cgroup_skb/ingress) to {} failed: {e:?}",
                cgroup.display()
            )
        })?;
    Ok(())
}

fn attach_sock_programs(
    object: &[u8],
    cgroup: &Path,
    log: aya::VerifierLogLevel,
    names: NameGlobals,
) -> Result<(aya::Ebpf, Vec<String>), String> {
    use aya::programs::{CgroupSkb, CgroupSkbAttachType, CgroupSock};

    let mut ebpf = load_object(object, log, LoadFor::Cgroup, names)?;
    let cgroup_dir = std::fs::File::open(cgroup)
        .map_err(|e| format!("opening the cgroup2 root {} failed: {e}", cgroup.display()))?;
    let mode = cgroup_attach_mode();

    // socket(2), then bind(2) of IPv4 and IPv6 sockets: the listeners of
    // other namespaces (see PROG_SOCK_POST_BIND4).
    for (name, section) in [
        (PROG_SOCK_CREATE, "cgroup/sock_create"),
        (PROG_SOCK_POST_BIND4, "cgroup/post_bind4"),
        (PROG_SOCK_POST_BIND6, "cgroup/post_bind6"),
    ] {
        let program: &mut CgroupSock = ebpf
            .program_mut(name)
            .ok_or_else(|| format!("the eBPF object has no program {name}"))?
            .try_into()
            .map_err(|e| format!("{name} is not a cgroup/sock program: {e:?}"))?;
        program
            .load()
            .map_err(|e| format!("loading program {name} failed: {e:?}"))?;
        program.attach(&cgroup_dir, mode).map_err(|e| {
            format!(
                "attaching {name} ({section}) to {} failed: {e:?}",
                cgroup.display()
            )
        })?;
    }

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
    let mut programs = vec![
        "cgroup/sock_create".to_owned(),
        "cgroup/post_bind4".to_owned(),
        "cgroup/post_bind6".to_owned(),
        "cgroup_skb/egress".to_owned(),
    ];
    if names.inspect {
        attach_name_ingress(&mut ebpf, &cgroup_dir, cgroup)?;
        programs.push(PROGRAM_NAME_INGRESS.to_owned());
    }
    Ok((ebpf, programs))
}

/// The reader thread: waits for any ring buffer, drains them in batches
/// (socket events first, then the process records, then the name captures:
/// see [`ReaderBatch`]).
fn read_sock_events(
    mut ring: aya::maps::RingBuf<aya::maps::MapData>,
    mut exec_ring: Option<aya::maps::RingBuf<aya::maps::MapData>>,
    mut name_ring: Option<aya::maps::RingBuf<aya::maps::MapData>>,
    stop: &AtomicBool,
    mut deliver: impl FnMut(ReaderBatch) -> bool,
) {
    use std::os::fd::AsRawFd as _;

    let fd = ring.as_raw_fd();
    // -1: poll ignores the entry.
    let exec_fd = exec_ring.as_ref().map_or(-1, |r| r.as_raw_fd());
    let name_fd = name_ring.as_ref().map_or(-1, |r| r.as_raw_fd());
    let timeout_ms = i32::try_from(SOCK_EVENTS_POLL.as_millis()).unwrap_or(100);
    let mut batch = Vec::new();
    let mut processes = Vec::new();
    let mut names = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut pfds = [fd, exec_fd, name_fd].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: three valid pollfds; the fds live as long as the rings.
        let rc = unsafe { libc::poll(pfds.as_mut_ptr(), 3, timeout_ms) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            eprintln!("flowtop: waiting for socket events failed: {err}");
            return;
        }
        loop {
            let drain_began = std::time::Instant::now();
            while batch.len() < SOCK_EVENTS_BATCH {
                let Some(item) = ring.next() else { break };
                if let Some(event) = parse_sock_event(&item) {
                    batch.push(event);
                }
            }
            // After the socket batch: a process's exec record is committed
            // before it can make a socket, so every process behind the
            // batch is in the exec ring by now.
            if let Some(exec_ring) = exec_ring.as_mut() {
                while processes.len() < EXEC_EVENTS_BATCH {
                    let Some(item) = exec_ring.next() else { break };
                    if let Some(event) = parse_proc_event(&item) {
                        processes.push(event);
                    }
                }
            }
            // Last: the owners of the captures' sockets are in the batches
            // read before (see ReaderBatch).
            if let Some(name_ring) = name_ring.as_mut() {
                while names.len() < NAME_EVENTS_BATCH {
                    let Some(item) = name_ring.next() else { break };
                    if let Some(capture) = parse_name_event(&item) {
                        names.push(capture);
                    }
                }
            }
            let emptied = batch.len() < SOCK_EVENTS_BATCH;
            let out = ReaderBatch {
                processes: std::mem::take(&mut processes),
                sockets: std::mem::take(&mut batch),
                names: std::mem::take(&mut names),
                drained_from: emptied.then_some(drain_began),
            };
            if out.is_empty() {
                break;
            }
            let full = out.sockets.len() == SOCK_EVENTS_BATCH || out.names.len() == NAME_EVENTS_BATCH;
            if !deliver(out) {
                return;
            }
            if !full {
                break;
            }
        }
    }
}
