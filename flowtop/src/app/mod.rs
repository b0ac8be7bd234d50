//! The modes of the binary, one entry point each, over one start-up
//! ([`start`]): `--once` ([`once`]), `--json` ([`stream`]), the screen
//! ([`screen`]) and `-u` ([`update`](crate::update)).

pub mod history;
pub mod once;
pub mod record;
pub mod run;
pub mod screen;
pub mod start;
pub mod stream;

use std::process::ExitCode;
use std::sync::Arc;

use crate::config::{Config, Paths, RunMode};
use crate::conntrack::socket::SocketError;
use crate::enrich::services::Services;
use crate::{sysctl, ui, update};

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

impl From<crate::config::UsageError> for RunError {
    fn from(e: crate::config::UsageError) -> Self {
        RunError::Usage(e.0)
    }
}

/// Runs the mode `config` asks for; the process's exit status.
pub fn run(config: &Config) -> ExitCode {
    if config.mode.is_batch_output() {
        pin_malloc_thresholds();
    } else if config.mode == RunMode::Screen {
        screen_malloc_threshold();
    }
    install_panic_hook();
    if config.mode == RunMode::Run {
        // The command's exit status is flowtop's.
        return run::main(config);
    }
    exit_code(run_mode(config))
}

/// The exit status (and the message on stderr) for the outcome of a run.
pub fn exit_code(ran: Result<(), RunError>) -> ExitCode {
    match ran {
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

fn run_mode(config: &Config) -> Result<(), RunError> {
    match config.mode {
        // Downloads and exits: no conntrack, no privileges beyond writing
        // the database directory.
        RunMode::Update => update::run(
            config.paths.conf_dir.as_deref(),
            config.paths.geoip_dir.as_deref(),
        )
        .map_err(|e| match e {
            update::UpdateError::Config(m) => RunError::Usage(m),
            update::UpdateError::Failed(m) => RunError::Other(anyhow::anyhow!(m)),
        }),
        RunMode::OnceText | RunMode::OnceJson => once::run(config),
        RunMode::JsonStream => stream::run(config),
        RunMode::Screen => screen::run(config),
        RunMode::Record => record::run(config),
        RunMode::History => history::run(config),
        // Dispatched in `run` (its exit status is the command's).
        RunMode::Run => unreachable!("flowtop run is dispatched before run_mode"),
    }
}

/// glibc's malloc raises its mmap threshold (up to 32 MiB), and its trim
/// threshold to twice that, each time a mapped block is freed. flowtop
/// frees such blocks early (the flow index's arrays as it grows during the
/// first dump), and from then on the blocks it allocates and frees by the
/// hundred (dump batches, per-interval buffers) would stay in malloc's
/// arenas, resident after they are freed. Pinning the threshold at its
/// default keeps big blocks mapped on their own and returned when freed,
/// and arenas trimmed.
///
/// Not for the screen: its snapshot and rows (tens of MB, every interval)
/// would then be fresh mappings each time, page-faulted in as they are
/// written and unmapped when freed, which costs more time to build rows
/// than reusing them from the heap (see `cargo xtask bench ui`); the
/// screen trades that for more resident memory.
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

/// A warning about a configuration file, as printed: a file's bytes (a
/// port, a scheme, a path) are escaped, never sent raw to the terminal.
pub(crate) fn conf_warning(w: &str) -> String {
    format!("flowtop: {}", crate::output::safe::terminal_safe(w))
}

/// Service names: built-ins under /etc/netsniff-ng, /etc/flowtop and
/// --conf-dir; malformed lines are reported, not fatal.
fn load_services(paths: &Paths) -> Arc<Services> {
    let dirs = Services::search_path(paths.conf_dir.as_deref());
    let (services, warnings) = Services::load(&dirs);
    for w in warnings {
        eprintln!("{}", conf_warning(&w));
    }
    Arc::new(services)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A malformed line's text goes into its warning: printed escaped.
    #[test]
    fn conf_file_warnings_are_escaped() {
        let (_, warnings) = crate::enrich::services::parse("8\x1b[2J0, http\n", "tcp\x07.conf");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains('\x1b'), "the parser keeps the bytes");
        let line = conf_warning(&warnings[0]);
        assert!(!line.contains('\x1b') && !line.contains('\x07'), "{line}");
        assert!(
            line.contains("8\\x1b[2J0") && line.contains("tcp\\x07.conf"),
            "{line}"
        );
    }
}
