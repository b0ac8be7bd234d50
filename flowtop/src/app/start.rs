//! The start-up every mode shares, in its required order:
//!
//! 1. signal handlers (live runs): from then on SIGINT/SIGTERM/SIGHUP/SIGQUIT
//!    end the run through the normal path, which restores the kernel settings;
//! 2. privileged work: netlink sockets and their buffers, the sysctl guard,
//!    eBPF load and attach, its ring buffer taken (its map fds stay open);
//! 3. the drop of the capabilities start-up needed: one call, made while
//!    this is the process's only thread (see privileges.rs);
//! 4. then what needs no privileges starts its threads, which inherit the
//!    reduced sets: the eBPF ring reader, enrichment (the DNS resolver), the
//!    conntrack sources and /proc scanner (the engine), the screen.

use super::{map_socket_error, RunError};
use crate::attribution::{self, ebpf_owners, Decision};
use crate::config::{Config, Paths};
use crate::conntrack::socket::CtSocket;
use crate::conntrack::source::REFRESH_RCVBUF;
use crate::engine::{self, Inbox, InboxChannel, Signals, StreamConfig};
use crate::enrich::start::Enrichment;
use crate::{ebpf, enrich, privileges, sysctl};

/// What a live run (`--json` or the screen) holds once started. Dropping
/// it detaches eBPF and puts the kernel settings back.
pub struct Live {
    pub runtime: tokio::runtime::Runtime,
    pub engine: engine::Inputs,
    pub attribution: AttributionStart,
    /// Reverse DNS for the meta line: "on", "off" or why it is unavailable.
    pub dns: String,
    /// The GeoIP database files in use.
    pub geoip: Vec<String>,
    /// Names and geography per address, filled by the enrichment.
    pub book: std::sync::Arc<enrich::book::AddressBook>,
    /// Puts the conntrack settings back when dropped.
    pub sysctls: Option<sysctl::SysctlGuard>,
}

impl Live {
    /// Starts a live run whose engine keeps `sel` (the screen keeps
    /// everything and selects while drawing).
    pub fn start(config: &Config, sel: crate::flow::Selection) -> Result<Live, RunError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RunError::Other(e.into()))?;
        let signals = {
            let _ctx = runtime.enter();
            Signals::install().map_err(|e| RunError::Other(e.into()))?
        };
        let events = CtSocket::open().map_err(map_socket_error)?;
        events.subscribe_events().map_err(map_socket_error)?;
        if let Err(e) = events.set_kernel_rcvbuf(config.rcvbuf) {
            eprintln!("flowtop: could not set the event receive buffer: {e}");
        }
        let dumper = CtSocket::open().map_err(map_socket_error)?;
        // The hot refresh's answers (one skb of ~4 KiB each) queue up here
        // while one sendmsg asks for hundreds; set while CAP_NET_ADMIN allows
        // going beyond rmem_max. A smaller buffer only means smaller batches.
        let _ = dumper.set_kernel_rcvbuf(REFRESH_RCVBUF);
        let sysctls = if config.no_sysctl {
            None
        } else {
            engage_sysctls(&config.paths)?
        };
        let inbox = engine::channel();
        let (mut attribution, attached) = attach_ebpf(config.attribution, !config.enrich.no_inspect)?;
        // Loading the eBPF objects and reading the kernel's BTF left megabytes
        // of freed heap behind: give them back before the table grows.
        // SAFETY: malloc_trim only releases free memory of the allocator.
        unsafe {
            libc::malloc_trim(0);
        }
        // Privileged start-up is over: keep only what the run needs.
        drop_privileges(!attribution.decision.is_off());
        if !attribution.decision.is_off() {
            // Its thread starts after the drop, like the others.
            attribution::exe_hash::enable();
        }
        if let Some(attached) = attached {
            attribution.handle = Some(start_ebpf_reader(attached, &inbox)?);
        }
        // Notices about missing GeoIP databases or DNS go to stderr here,
        // before any screen, and stay readable after it.
        let Enrichment {
            enricher, dns, geoip, ..
        } = enrich::start::start(&config.enrich, config.paths.geoip_dir.as_deref());
        let book = enricher.book().clone();
        let cfg = StreamConfig {
            sel,
            interval: config.interval(),
            full_refresh: config.full_refresh,
            attribution: !attribution.decision.is_off(),
            socket_events: attribution.handle.is_some(),
        };
        Ok(Live {
            runtime,
            engine: engine::Inputs {
                cfg,
                events,
                dumper,
                signals,
                inbox,
                enricher: Some(enricher),
                export: crate::export::Exporters::start(&config.export).map_err(RunError::Other)?,
            },
            attribution,
            dns,
            geoip,
            book,
            sysctls,
        })
    }
}

/// Gives up the capabilities start-up needed; a failure is reported, not
/// fatal (flowtop then runs with what it had).
pub fn drop_privileges(procfs: bool) {
    if let Err(e) = privileges::drop_after_startup(privileges::Keep { procfs }) {
        eprintln!("flowtop: could not drop capabilities: {e}");
    }
}

/// What attribution runs with: the decision, the eBPF handle that keeps its
/// programs attached, and what the kprobe probe found (when it ran).
pub struct AttributionStart {
    pub decision: Decision,
    pub handle: Option<ebpf::SockEventsHandle>,
    pub kprobes: Option<ebpf::KprobeReport>,
}

impl AttributionStart {
    /// The meta line's `ebpf` object.
    pub fn ebpf_status(&self) -> ebpf::EbpfStatus {
        let handle = self.handle.as_ref();
        ebpf::EbpfStatus {
            available: handle.is_some(),
            mode: if handle.is_some() {
                ebpf::MODE_EBPF
            } else {
                ebpf::MODE_UNAVAILABLE
            },
            programs: handle.map(|h| h.programs().to_vec()).unwrap_or_default(),
            reason: self.decision.ebpf_unavailable.clone(),
        }
    }
}

/// Attaches the eBPF socket programs when asked for (or in auto mode, when
/// they load here): kprobes where the kernel attaches them all, else the
/// cgroup programs. /proc scans always complement them (sockets made before
/// flowtop started, listeners). Privileged; the reader starts after the
/// drop ([`start_ebpf_reader`]), which fills in the handle. `inspect`: the
/// name captures too (false: `--no-inspect`).
fn attach_ebpf(
    asked: attribution::Mode,
    inspect: bool,
) -> Result<(AttributionStart, Option<ebpf::AttachedSockEvents>), RunError> {
    use attribution::Mode;
    let without_ebpf = |decision: Decision| AttributionStart {
        decision,
        handle: None,
        kprobes: None,
    };
    match asked {
        Mode::Off => return Ok((without_ebpf(Decision::off()), None)),
        Mode::Procfs => return Ok((without_ebpf(Decision::procfs()), None)),
        Mode::Auto | Mode::Ebpf => {}
    }
    let (kprobes, attached) = ebpf::attach_sock_events_preferring_kprobes(inspect);
    match attached {
        Ok(attached) => {
            let reason = format!(
                "eBPF socket events ({}), with /proc scans for sockets made before flowtop started and for listeners",
                attached.programs().join(", ")
            );
            let start = AttributionStart {
                decision: Decision {
                    active: attribution::Active::Ebpf,
                    reason,
                    ebpf_unavailable: None,
                },
                handle: None,
                kprobes: Some(kprobes),
            };
            Ok((start, Some(attached)))
        }
        Err(why) if asked == Mode::Ebpf => Err(RunError::Other(anyhow::anyhow!(
            "--attribution ebpf: the eBPF programs are unavailable: {why}"
        ))),
        Err(why) => {
            let reason = format!(
                "eBPF unavailable ({why}): periodic /proc scans (short-lived processes can be missed)"
            );
            let start = AttributionStart {
                decision: Decision {
                    active: attribution::Active::Procfs,
                    reason,
                    ebpf_unavailable: Some(why),
                },
                handle: None,
                kprobes: Some(kprobes),
            };
            Ok((start, None))
        }
    }
}

/// Starts the thread that reads the attached programs' events into the
/// engine's inbox. Needs no privileges: called after the drop.
///
/// Name captures go to the inbox after the socket batch of the same call,
/// each with the owner of its local socket by cookie when the CREATED event
/// of that socket was seen. Captures of sockets of other network namespaces
/// are dropped when the kernel says (a netns cookie in the capture, Linux
/// 6.18 on); on older kernels they are kept, and those sockets simply have
/// no owner (their CREATED events are not kept).
fn start_ebpf_reader(
    attached: ebpf::AttachedSockEvents,
    inbox: &InboxChannel,
) -> Result<ebpf::SockEventsHandle, RunError> {
    let tx = inbox.0.clone();
    let own_netns = sysctl::netns_cookie();
    let mut owners = ebpf_owners::EbpfOwners::new(own_netns, 1 << 18);
    if let Some(why) = attached.exec_unavailable() {
        eprintln!("flowtop: exec/fork records unavailable (executables of short-lived processes may be missing): {why}");
    }
    // The processes older than the exec records (the records, drained
    // after this, are newer and win).
    owners.processes.bootstrap(std::path::Path::new("/proc"));
    attached
        .start_batch_reader(move |batch| {
            // A batch's processes first: their sockets may be in it.
            for p in &batch.processes {
                owners.apply_process(p);
            }
            let sockets: Vec<_> = batch
                .sockets
                .iter()
                .filter_map(|ev| owners.apply(ev, ebpf_owners::proc_info))
                .collect();
            // The batch's name captures (drained after its socket events,
            // so they include the DNS answers a process received before it
            // connected) reach the engine before the sockets: when a flow
            // gets its owner, that owner's answers are already in the book,
            // and the owner and its name come in one update.
            let names: Vec<_> = batch
                .names
                .into_iter()
                .filter(|c| c.netns_cookie == 0 || own_netns.is_none_or(|own| own == c.netns_cookie))
                .map(|c| {
                    let owner = owners.owner_of_cookie(c.cookie);
                    (c, owner)
                })
                .collect();
            if !names.is_empty() && tx.blocking_send(Inbox::Names(names)).is_err() {
                return false;
            }
            sockets.is_empty()
                || tx
                    .blocking_send(Inbox::EbpfSockets(sockets, batch.drained_from))
                    .is_ok()
        })
        .map_err(|e| RunError::Other(anyhow::anyhow!(e)))
}

/// The state file's location in this network namespace.
pub fn state_paths(paths: &Paths) -> Result<sysctl::Paths, RunError> {
    sysctl::Paths::system(&paths.state_dir)
        .map_err(|e| RunError::Other(anyhow::anyhow!("reading the network namespace: {e}")))
}

/// Turns the conntrack settings on for the run; the guard restores them.
fn engage_sysctls(paths: &Paths) -> Result<Option<sysctl::SysctlGuard>, RunError> {
    let paths = state_paths(paths)?;
    match sysctl::SysctlGuard::engage(paths) {
        Ok((guard, report)) => {
            if !report.repaired.is_empty() {
                eprintln!(
                    "flowtop: restored conntrack settings left changed by a killed flowtop: {:?}",
                    report.repaired
                );
            }
            for f in &report.failed {
                eprintln!("flowtop: could not turn on {f}; counters or start times may be missing");
            }
            Ok(Some(guard))
        }
        Err(e) => {
            eprintln!("flowtop: not changing conntrack settings (state file unavailable: {e})");
            Ok(None)
        }
    }
}
