//! The run's configuration: the command line read once, typed and checked,
//! so that no later step reads `Args` (or re-derives a field from it).

use std::path::PathBuf;
use std::time::Duration;

use crate::attribution;
use crate::cli::{Args, Command};
use crate::flow::Selection;

/// What the process does; one entry point of `app` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// `--once`: one dump, printed as a text table.
    OnceText,
    /// `--once --json`: one dump, printed as JSON lines.
    OnceJson,
    /// `--json`: the live stream of flow events.
    JsonStream,
    /// The interactive screen (the default).
    Screen,
    /// `-u`: download the GeoIP databases and exit.
    Update,
    /// `flowtop record`: headless, writing the journal.
    Record,
    /// `flowtop history`: reads the journal and exits.
    History,
    /// `flowtop run -- CMD`: runs a command and prints its manifest.
    Run,
}

impl RunMode {
    /// Whether the run writes to stdout in batches (JSON or `--once`), for
    /// the allocator tuning that suits those and not the screen.
    pub fn is_batch_output(self) -> bool {
        !matches!(self, RunMode::Screen)
    }
}

/// Names and geography for the addresses of flows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrichOptions {
    /// `-n`: no reverse DNS.
    pub no_dns: bool,
    /// `-G`: no GeoIP (scope labels remain).
    pub no_geoip: bool,
    /// `--no-inspect`: no payload is looked at (no asked-for names).
    pub no_inspect: bool,
}

/// How flows are shown (text table and screen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShowOptions {
    /// `-s`: show the source end too.
    pub show_src: bool,
    /// `-b`: rates in bits per second.
    pub bits: bool,
}

/// Directories the run reads or writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `--conf-dir`: searched first for service names and geoip.conf.
    pub conf_dir: Option<PathBuf>,
    /// `--geoip-dir`: searched first for GeoIP databases (and `-u`'s target).
    pub geoip_dir: Option<PathBuf>,
    /// `--state-dir`: where the sysctl state file lives.
    pub state_dir: PathBuf,
}

/// Everything a run needs from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: RunMode,
    /// Families and protocols selected (`-4 -6 -T -U -D -I -S`, `--all-protocols`).
    pub selection: Selection,
    /// Whether any of those flags was given (`history` reads every flow
    /// unless one was).
    pub selection_given: bool,
    /// `--json` (for the commands; the other modes have it in `mode`).
    pub json: bool,
    /// `-t` as given, in seconds (the meta line reports it as given).
    pub interval_s: f64,
    /// `--full-refresh`: spacing of full re-dumps (None: automatic).
    pub full_refresh: Option<Duration>,
    /// `--attribution` as asked for.
    pub attribution: attribution::Mode,
    pub enrich: EnrichOptions,
    pub show: ShowOptions,
    pub paths: Paths,
    /// `--no-sysctl`: leave the conntrack settings alone.
    pub no_sysctl: bool,
    /// `--rcvbuf`: initial kernel receive buffer of the event socket.
    pub rcvbuf: usize,
    /// `--journal`: the journal file.
    pub journal: PathBuf,
    /// The subcommand's own arguments (`record`, `history`).
    pub command: Option<Command>,
    /// `--ipfix`, `--ipfix-active`, `--metrics`.
    pub export: crate::export::ExportConfig,
}

/// A command line that parses but asks for something impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// `dir` must be a directory the caller may list (`must_exist`: and be
/// there at all).
fn readable_dir(flag: &str, dir: &std::path::Path, must_exist: bool) -> Result<(), UsageError> {
    let why = match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => "not a directory".to_owned(),
        Ok(_) => match std::fs::read_dir(dir) {
            Ok(_) => return Ok(()),
            Err(e) => e.to_string(),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => return Ok(()),
        Err(e) => e.to_string(),
    };
    Err(UsageError(format!(
        "{flag} {}: {why}",
        crate::output::safe::terminal_safe(&dir.display().to_string())
    )))
}

impl Config {
    /// Types and checks the parsed command line.
    pub fn from_args(args: &Args) -> Result<Config, UsageError> {
        let mode = if args.update {
            // Checked first: `-u` downloads and exits whatever else is given.
            RunMode::Update
        } else if let Some(command) = &args.command {
            match command {
                Command::Record(_) => RunMode::Record,
                Command::History(_) => RunMode::History,
                Command::Run(_) => RunMode::Run,
            }
        } else if args.once {
            if args.attribution == attribution::Mode::Ebpf {
                return Err(UsageError(
                    "--attribution ebpf needs a running flowtop (--json): eBPF only sees sockets created while it runs"
                        .into(),
                ));
            }
            if args.json {
                RunMode::OnceJson
            } else {
                RunMode::OnceText
            }
        } else if args.json {
            RunMode::JsonStream
        } else {
            RunMode::Screen
        };
        // A directory to read from that is not there is a typo: said now,
        // rather than silently searching the default places only. One the
        // user may not read (run with file capabilities, a user's rights
        // are all flowtop has for paths it is given) is said now too.
        if let Some(dir) = &args.conf_dir {
            readable_dir("--conf-dir", dir, true)?;
        }
        if let Some(dir) = &args.geoip_dir {
            // A missing one is searched in vain, as before (and `-u`
            // creates it); one that is there must be readable.
            readable_dir("--geoip-dir", dir, false)?;
        }
        let export = crate::export::ExportConfig::from_args(args, mode).map_err(UsageError)?;
        Ok(Config {
            export,
            mode,
            selection: args.selection(),
            selection_given: args.ipv4
                || args.ipv6
                || args.tcp
                || args.udp
                || args.dccp
                || args.icmp
                || args.sctp
                || args.all_protocols,
            json: args.json,
            interval_s: args.interval,
            full_refresh: args.full_refresh.map(Duration::from_secs_f64),
            attribution: args.attribution,
            enrich: EnrichOptions {
                no_dns: args.no_dns,
                no_geoip: args.no_geoip,
                no_inspect: args.no_inspect,
            },
            show: ShowOptions {
                show_src: args.show_src,
                bits: args.bits,
            },
            // A user other than root gets XDG defaults (user_dirs.rs);
            // root's are unchanged.
            paths: Paths {
                conf_dir: args.conf_dir.clone(),
                geoip_dir: args.geoip_dir.clone().or_else(|| {
                    crate::user_dirs::applies()
                        .then(crate::user_dirs::geoip_dir)
                        .flatten()
                }),
                state_dir: crate::user_dirs::or_user_default(
                    &args.state_dir,
                    crate::sysctl::DEFAULT_STATE_DIR,
                    crate::user_dirs::state_dir(),
                ),
            },
            no_sysctl: args.no_sysctl,
            rcvbuf: args.rcvbuf,
            journal: crate::user_dirs::or_user_default(
                &args.journal,
                crate::cli::DEFAULT_JOURNAL,
                crate::user_dirs::journal(),
            ),
            command: args.command.clone(),
        })
    }

    /// The refresh interval.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.interval_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> Result<Config, UsageError> {
        let args =
            Args::try_parse_from(std::iter::once("flowtop").chain(args.iter().copied())).expect("parses");
        Config::from_args(&args)
    }

    #[test]
    fn the_mode_follows_the_flags() {
        assert_eq!(config(&[]).unwrap().mode, RunMode::Screen);
        assert_eq!(config(&["--json"]).unwrap().mode, RunMode::JsonStream);
        assert_eq!(config(&["--once"]).unwrap().mode, RunMode::OnceText);
        assert_eq!(config(&["--once", "--json"]).unwrap().mode, RunMode::OnceJson);
        assert_eq!(config(&["-u", "--once"]).unwrap().mode, RunMode::Update);
    }

    #[test]
    fn ebpf_attribution_is_refused_for_one_dump_only() {
        assert!(config(&["--once", "--attribution", "ebpf"]).is_err());
        assert!(config(&["--json", "--attribution", "ebpf"]).is_ok());
        // -u is checked first: it ignores the rest.
        assert!(config(&["-u", "--once", "--attribution", "ebpf"]).is_ok());
    }

    #[test]
    fn a_conf_dir_that_is_not_a_directory_is_a_usage_error() {
        let e = config(&["--conf-dir", "/nonexistent/flowtop-conf"]).unwrap_err();
        assert!(e.0.starts_with("--conf-dir /nonexistent/flowtop-conf: "), "{e}");
        let e = config(&["--conf-dir", "/proc/self/status"]).unwrap_err();
        assert!(e.0.ends_with("not a directory"), "{e}");
        let e = config(&["--conf-dir", "/nonexistent/\x1b[2J"]).unwrap_err();
        assert!(!e.0.contains('\x1b'), "escaped: {e}");
        assert!(config(&["--conf-dir", "/"]).is_ok());
    }

    #[test]
    fn interval_and_full_refresh_are_durations() {
        let c = config(&["-t", "2.5", "--full-refresh", "10"]).unwrap();
        assert_eq!(c.interval(), Duration::from_millis(2500));
        assert_eq!(c.full_refresh, Some(Duration::from_secs(10)));
    }
}
