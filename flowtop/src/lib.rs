//! flowtop: a top-like view of the connections netfilter conntrack tracks.
//!
//! Layers, each with one owner: `conntrack` reads the kernel (sockets,
//! decoding, source threads), `flow` is the pure model and table, `engine`
//! wires sources to the table and the output, `output` formats, `sysctl`
//! guards the kernel settings flowtop changes.

pub mod attribution;
pub mod cli;
pub mod conntrack;
pub mod docs;
pub mod ebpf;
pub mod engine;
pub mod enrich;
pub mod flow;
#[doc(hidden)]
pub mod fuzzing;
pub mod once;
pub mod output;
pub mod privileges;
pub mod sysctl;
pub mod ui;
pub mod update;

use std::io::{self, BufWriter, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use cli::Args;
use conntrack::socket::{CtSocket, SocketError};
use output::json::{now_ts, JsonWriter};

/// flowtop's version, as `-v` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the process should exit with, and why.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Privileges(String),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Entry point of the binary.
pub fn run() -> ExitCode {
    // `flowtop --generate man|bash|zsh|fish` (for `cargo xtask dist`): outside
    // the clap definition, so that neither the help, the man page nor the
    // completions offer it.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "--generate") {
        return docs::main(argv.get(2).and_then(|a| a.to_str()));
    }
    let args = Args::parse();
    if args.json || args.once {
        pin_malloc_thresholds();
    } else {
        screen_malloc_threshold();
    }
    install_panic_hook();
    match run_with(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError::Usage(msg)) => {
            eprintln!("flowtop: {msg}");
            ExitCode::from(2)
        }
        Err(RunError::Privileges(msg)) => {
            eprintln!("{msg}");
            ExitCode::from(1)
        }
        Err(RunError::Other(e)) => {
            eprintln!("flowtop: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// glibc's malloc raises its mmap threshold (up to 32 MiB), and its trim
/// threshold to twice that, each time a mapped block is freed. flowtop
/// frees such blocks early (the flow index's arrays as it grows during the
/// first dump), and from then on the blocks it allocates and frees by the
/// hundred (dump batches, per-interval buffers) stay in malloc's arenas,
/// resident after they are freed (15 MB at a million flows, more when
/// entries were bigger). Pinning the threshold at its default keeps big
/// blocks mapped on their own and returned when freed, and arenas trimmed.
///
/// Not for the screen: its snapshot and rows (tens of MB, every interval)
/// would then be fresh mappings each time, page-faulted in as they are
/// written and unmapped when freed, which doubled the time to build rows
/// and pushed the frame p99 from 11 to 17 ms in `cargo xtask bench ui`;
/// reused from the heap they cost less time, for more resident memory.
fn pin_malloc_thresholds() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; called before
    // any thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// The screen's blocks: the table's chunks and the rows of a large table
/// are mapped on their own and returned when freed (a chunk the table
/// copied because a snapshot held it is given back once the snapshot goes,
/// instead of staying resident in an arena), while the rows of tables up
/// to a few hundred thousand flows are still reused from the heap (see
/// above: fresh mappings each interval cost frame time).
fn screen_malloc_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; called before
    // any thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

/// Restores the terminal (so the message is readable) and the kernel
/// settings before the default hook reports the panic, then ends the
/// process: a panic in any thread (a source, the DNS runtime, the eBPF
/// reader) would otherwise leave flowtop running with a part missing, e.g. a
/// table that stops updating. Fail-stop, status 101.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        ui::term::restore();
        sysctl::restore_active();
        default(info);
        std::process::exit(101);
    }));
}

/// The one-paragraph message for a missing CAP_NET_ADMIN.
pub fn privileges_message(what: &str) -> String {
    format!(
        "flowtop: permission denied while {what}.\n\n\
         flowtop reads the kernel's connection tracking table over netlink (ctnetlink), which needs the \
         CAP_NET_ADMIN capability in this network namespace. Run it as root (for example `sudo flowtop`), \
         or give the binary the capability: `sudo setcap cap_net_admin+ep \"$(command -v flowtop)\"` \
         (then it also needs --no-sysctl, or root, to turn on conntrack accounting)."
    )
}

pub(crate) fn map_socket_error(e: SocketError) -> RunError {
    match e {
        SocketError::PermissionDenied(what) => RunError::Privileges(privileges_message(what)),
        other => RunError::Other(other.into()),
    }
}

fn kernel_release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The first JSON line. `ebpf` is None when it was not probed (`--once`:
/// loading the kernel's BTF costs more than the whole dump of a small table).
pub(crate) fn meta_line(
    args: &Args,
    ts: &str,
    ebpf: Option<&ebpf::EbpfStatus>,
    attribution: &Attribution,
    kprobes: Option<&ebpf::KprobeReport>,
) -> serde_json::Value {
    let sel = args.selection();
    let mut families = Vec::new();
    if sel.ipv4 {
        families.push("ipv4");
    }
    if sel.ipv6 {
        families.push("ipv6");
    }
    serde_json::json!({
        "event": "meta",
        "ts": ts,
        "version": VERSION,
        "kernel": kernel_release(),
        "attribution": attribution.mode,
        "attribution_reason": attribution.reason,
        "ebpf": ebpf.map(|e| serde_json::json!({
            "available": e.available,
            "programs": e.programs,
            "reason": e.reason,
            // Which kprobe programs the verifier took and which attached.
            "kprobes": kprobes.map(|k| k.programs.iter().map(|p| serde_json::json!({
                "program": p.attach_point,
                "loaded": p.loaded.is_ok(),
                "attached": p.attached.is_ok(),
                "error": p.loaded.as_ref().err().or(p.attached.as_ref().err()),
            })).collect::<Vec<_>>()),
        })),
        "families": families,
        "protocols": sel.proto_names(),
        "interval_s": args.interval,
    })
}

/// The attribution in use and why (the meta line's `attribution` and
/// `attribution_reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attribution {
    pub(crate) mode: &'static str,
    pub(crate) reason: String,
    /// Why eBPF is not in use, when it was wanted or tried.
    pub(crate) ebpf_unavailable: Option<String>,
}

impl Attribution {
    pub(crate) fn is_off(&self) -> bool {
        self.mode == "off"
    }

    fn off() -> Self {
        Attribution {
            mode: "off",
            reason: "--attribution off".into(),
            ebpf_unavailable: None,
        }
    }

    /// `--once`: one /proc scan (eBPF only sees sockets made while it runs).
    pub(crate) fn for_once(args: &Args) -> Self {
        match args.attribution {
            attribution::Mode::Off => Attribution::off(),
            _ => Attribution {
                mode: "procfs",
                reason: "--once: one /proc scan (eBPF only sees sockets created while flowtop runs)".into(),
                ebpf_unavailable: None,
            },
        }
    }
}

fn run_with(args: &Args) -> Result<(), RunError> {
    if args.update {
        // Downloads and exits: no conntrack, no privileges beyond writing
        // the database directory.
        return update::run(args.conf_dir.as_deref(), args.geoip_dir.as_deref()).map_err(|e| match e {
            update::UpdateError::Config(m) => RunError::Usage(m),
            update::UpdateError::Failed(m) => RunError::Other(anyhow::anyhow!(m)),
        });
    }
    if args.attribution == attribution::Mode::Ebpf && args.once {
        return Err(RunError::Usage(
            "--attribution ebpf needs a running flowtop (--json): eBPF only sees sockets created while it runs"
                .into(),
        ));
    }
    if args.once {
        once::run(args)
    } else if args.json {
        run_json_stream(args)
    } else {
        run_screen(args)
    }
}

/// Service names: built-ins under /etc/netsniff-ng, /etc/flowtop and
/// --conf-dir; malformed lines are reported, not fatal.
pub(crate) fn load_services(args: &Args) -> std::sync::Arc<enrich::services::Services> {
    let dirs = enrich::services::Services::search_path(args.conf_dir.as_deref());
    let (services, warnings) = enrich::services::Services::load(&dirs);
    for w in warnings {
        eprintln!("flowtop: {w}");
    }
    std::sync::Arc::new(services)
}

pub(crate) fn state_paths(args: &Args) -> Result<sysctl::Paths, RunError> {
    sysctl::Paths::system(&args.state_dir)
        .map_err(|e| RunError::Other(anyhow::anyhow!("reading the network namespace: {e}")))
}

pub(crate) fn interval(args: &Args) -> Duration {
    Duration::from_secs_f64(args.interval)
}

/// The engine's configuration from the command line; `sel` is what it
/// keeps (the screen keeps everything and selects while drawing).
fn stream_config(args: &Args, sel: flow::Selection, attribution: &Attribution) -> engine::StreamConfig {
    engine::StreamConfig {
        sel,
        interval: interval(args),
        full_refresh: args.full_refresh.map(Duration::from_secs_f64),
        procfs_attribution: !attribution.is_off(),
    }
}

/// What a live run (`--json` or the screen) holds once started. Dropping
/// it detaches eBPF and puts the kernel settings back.
struct Live {
    runtime: tokio::runtime::Runtime,
    signals: engine::Signals,
    events: CtSocket,
    dumper: CtSocket,
    channel: (
        tokio::sync::mpsc::Sender<conntrack::source::SourceMsg>,
        tokio::sync::mpsc::Receiver<conntrack::source::SourceMsg>,
    ),
    /// `attribution.handle` keeps the eBPF programs attached.
    attribution: Started,
    enrichment: enrich::start::Started,
    _sysctls: Option<sysctl::SysctlGuard>,
}

/// The start-up of a live run, in its required order: signal handlers
/// first (from then on SIGINT/SIGTERM/SIGHUP/SIGQUIT end the run through
/// the normal path, which restores the kernel settings), netlink sockets,
/// kernel settings, attribution, enrichment; then the capabilities start-up
/// needed are given up.
fn start_live(args: &Args) -> Result<Live, RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Other(e.into()))?;
    let signals = {
        let _ctx = runtime.enter();
        engine::Signals::install().map_err(|e| RunError::Other(e.into()))?
    };
    let events = CtSocket::open().map_err(map_socket_error)?;
    events.subscribe_events().map_err(map_socket_error)?;
    if let Err(e) = events.set_kernel_rcvbuf(args.rcvbuf) {
        eprintln!("flowtop: could not set the event receive buffer: {e}");
    }
    let dumper = CtSocket::open().map_err(map_socket_error)?;
    // The hot refresh's answers (one skb of ~4 KiB each) queue up here
    // while one sendmsg asks for hundreds; set while CAP_NET_ADMIN allows
    // going beyond rmem_max. A smaller buffer only means smaller batches.
    let _ = dumper.set_kernel_rcvbuf(conntrack::source::REFRESH_RCVBUF);
    let sysctls = if args.no_sysctl {
        None
    } else {
        engage_sysctls(args)?
    };
    let channel = engine::channel();
    let attribution = start_attribution(args, &channel.0)?;
    // Loading the eBPF objects and reading the kernel's BTF left megabytes
    // of freed heap behind: give them back before the table grows.
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
    // Notices about missing GeoIP databases or DNS go to stderr here, before
    // any screen, and stay readable after it.
    let enrichment = enrich::start::start(args);
    // Start-up is over: keep only what the run needs (see privileges.rs).
    drop_privileges(!attribution.attribution.is_off());
    Ok(Live {
        runtime,
        signals,
        events,
        dumper,
        channel,
        attribution,
        enrichment,
        _sysctls: sysctls,
    })
}

/// `--json`: live stream until a signal.
fn run_json_stream(args: &Args) -> Result<(), RunError> {
    let Live {
        runtime,
        signals,
        events,
        dumper,
        channel,
        attribution:
            Started {
                attribution,
                handle: ebpf_events,
                kprobes,
            },
        enrichment,
        _sysctls,
    } = start_live(args)?;
    let ebpf_status = ebpf::EbpfStatus {
        available: ebpf_events.is_some(),
        mode: if ebpf_events.is_some() {
            ebpf::MODE_EBPF
        } else {
            ebpf::MODE_UNAVAILABLE
        },
        programs: ebpf_events
            .as_ref()
            .map(|h| h.programs().to_vec())
            .unwrap_or_default(),
        reason: attribution.ebpf_unavailable.clone(),
    };
    let (ts, _) = now_ts();
    let mut out = JsonWriter::new(BufWriter::with_capacity(1 << 16, io::stdout().lock()))
        .with_services(load_services(args))
        .with_book(enrichment.enricher.book().clone());
    let mut meta = meta_line(args, &ts, Some(&ebpf_status), &attribution, kprobes.as_ref());
    enrichment.describe(&mut meta);
    match out.value(&meta).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(RunError::Other(e.into())),
    }
    let cfg = stream_config(args, args.selection(), &attribution);
    runtime.block_on(engine::run_stream(
        cfg,
        events,
        dumper,
        signals,
        channel,
        Some(enrichment.enricher),
        &mut out,
    ))?;
    Ok(())
}

/// Gives up the capabilities start-up needed; a failure is reported, not
/// fatal (flowtop then runs with what it had).
pub(crate) fn drop_privileges(procfs: bool) {
    if let Err(e) = privileges::drop_after_startup(privileges::Keep { procfs }) {
        eprintln!("flowtop: could not drop capabilities: {e}");
    }
}

/// What attribution runs with: the mode, the eBPF handle that keeps its
/// programs attached, and what the kprobe probe found (when it ran).
struct Started {
    attribution: Attribution,
    handle: Option<ebpf::SockEventsHandle>,
    kprobes: Option<ebpf::KprobeReport>,
}

/// Starts eBPF socket events when asked for (or in auto mode, when they load
/// here): kprobes where the kernel attaches them all, else the cgroup
/// programs. /proc scans always complement them (sockets made before
/// flowtop started, listeners).
fn start_attribution(
    args: &Args,
    tx: &tokio::sync::mpsc::Sender<conntrack::source::SourceMsg>,
) -> Result<Started, RunError> {
    use attribution::Mode;
    let without_ebpf = |mode: &'static str, reason: String, ebpf_unavailable: Option<String>| Started {
        attribution: Attribution {
            mode,
            reason,
            ebpf_unavailable,
        },
        handle: None,
        kprobes: None,
    };
    match args.attribution {
        Mode::Off => {
            return Ok(Started {
                attribution: Attribution::off(),
                handle: None,
                kprobes: None,
            })
        }
        Mode::Procfs => {
            return Ok(without_ebpf(
                "procfs",
                "--attribution procfs: periodic /proc scans".into(),
                None,
            ));
        }
        Mode::Auto | Mode::Ebpf => {}
    }
    let tx = tx.clone();
    let mut owners = attribution::ebpf_owners::EbpfOwners::new(sysctl::netns_cookie(), 1 << 18);
    let (kprobes, started) = ebpf::start_sock_events_preferring_kprobes(move |events| {
        let sockets: Vec<_> = events
            .iter()
            .filter_map(|ev| owners.apply(ev, attribution::ebpf_owners::proc_info))
            .collect();
        sockets.is_empty()
            || tx
                .blocking_send(conntrack::source::SourceMsg::EbpfSockets(sockets))
                .is_ok()
    });
    match started {
        Ok(handle) => {
            let reason = format!(
                "eBPF socket events ({}), with /proc scans for sockets made before flowtop started and for listeners",
                handle.programs().join(", ")
            );
            let attribution = Attribution {
                mode: "ebpf",
                reason,
                ebpf_unavailable: None,
            };
            Ok(Started {
                attribution,
                handle: Some(handle),
                kprobes: Some(kprobes),
            })
        }
        Err(why) if args.attribution == Mode::Ebpf => Err(RunError::Other(anyhow::anyhow!(
            "--attribution ebpf: the eBPF programs are unavailable: {why}"
        ))),
        Err(why) => {
            let reason = format!(
                "eBPF unavailable ({why}): periodic /proc scans (short-lived processes can be missed)"
            );
            Ok(Started {
                kprobes: Some(kprobes),
                ..without_ebpf("procfs", reason, Some(why))
            })
        }
    }
}

/// Turns the conntrack settings on for the run; the guard restores them.
fn engage_sysctls(args: &Args) -> Result<Option<sysctl::SysctlGuard>, RunError> {
    let paths = state_paths(args)?;
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

/// The screen: like `--json` (same start-up order: signals, sockets,
/// sysctls, attribution), with the table published to the screen thread
/// instead of written. The engine ingests every family and protocol; the
/// screen shows the selection (`-4 -6 -T -U -D -I -S`) and toggles it live.
fn run_screen(args: &Args) -> Result<(), RunError> {
    use std::io::IsTerminal;
    if !io::stdout().is_terminal() {
        return Err(RunError::Usage(
            "the screen needs a terminal (stdout is not one): use --once for a table or --json for a live stream"
                .into(),
        ));
    }
    let frame_log = match std::env::var_os("FLOWTOP_FRAME_LOG") {
        Some(path) => Some(std::fs::File::create(&path).map_err(|e| {
            RunError::Other(anyhow::anyhow!(
                "FLOWTOP_FRAME_LOG {}: {e}",
                path.to_string_lossy()
            ))
        })?),
        None => None,
    };
    let Live {
        runtime,
        signals,
        events,
        dumper,
        channel,
        attribution:
            Started {
                attribution,
                handle: _ebpf_events,
                ..
            },
        enrichment,
        _sysctls,
    } = start_live(args)?;
    let mut everything = flow::Selection::everything();
    everything.ipv4 = true;
    everything.ipv6 = true;
    let cfg = stream_config(args, everything, &attribution);
    let (snap_tx, snap_rx) = tokio::sync::watch::channel(std::sync::Arc::new(flow::table::Snapshot {
        flows: Default::default(),
        stats: Default::default(),
        aggregates: Default::default(),
    }));
    let (quit_tx, quit_rx) = tokio::sync::watch::channel(false);
    let notes = engine::Notes::default();
    let input = ui::ScreenInput {
        snapshots: snap_rx,
        book: enrichment.enricher.book().clone(),
        services: load_services(args),
        header: ui::HeaderInfo {
            version: VERSION,
            attribution: attribution.mode.to_owned(),
            attribution_reason: attribution.reason.clone(),
            interval: interval(args),
        },
        view: ui::ViewOptions {
            selection: args.selection(),
            show_src: args.show_src,
            bits: args.bits,
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        },
        notes: notes.clone(),
        quit: quit_tx,
        frame_log,
    };
    let screen = std::thread::Builder::new()
        .name("screen".into())
        .spawn(move || ui::run(input))
        .map_err(|e| RunError::Other(e.into()))?;
    let sink = engine::ScreenSink {
        snapshots: snap_tx,
        notes: notes.clone(),
        quit: quit_rx,
    };
    let ran = runtime.block_on(engine::run_screen(
        cfg,
        events,
        dumper,
        signals,
        channel,
        Some(enrichment.enricher),
        sink,
    ));
    // The engine dropped the snapshot sender: the screen ends and restores
    // the terminal before anything more is printed.
    let shown = screen.join();
    ui::term::restore();
    // Not eprintln: after a hangup stderr may be gone, and that must not panic.
    for note in notes.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(io::stderr(), "{note}");
    }
    match shown {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(RunError::Other(anyhow::anyhow!("the screen failed: {e}"))),
        Err(_) => return Err(RunError::Other(anyhow::anyhow!("the screen panicked"))),
    }
    ran?;
    Ok(())
}
