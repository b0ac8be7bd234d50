//! Command line, compatible with netsniff-ng's flowtop, plus flowtop's own
//! options.

use clap::{ArgAction, Parser};
use std::path::PathBuf;

use crate::flow::model::proto;
use crate::flow::Selection;

/// top-like view of the connections the kernel's netfilter conntrack tracks.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "flowtop",
    version,
    disable_version_flag = true,
    about = "top-like view of the connections the kernel's netfilter conntrack tracks",
    after_help = "Selection: by default IPv4 and IPv6 TCP flows are shown. Any of -T -U -D -I -S selects \
exactly those protocols; any of -4 -6 selects exactly those families.\n\n\
Examples:\n  flowtop -46TUI              the screen, every family and common protocol (? for keys)\n  \
flowtop --once              the TCP table, once, as text\n  \
flowtop -46TUIS --json      every flow and its changes as JSON lines\n\n\
Needs CAP_NET_ADMIN (run as root). If conntrack tracks nothing in this network namespace, enable it with \
e.g.: nft add table inet t; nft add chain inet t c '{ type filter hook input priority 0; }'; \
nft add rule inet t c ct state established accept"
)]
pub struct Args {
    /// Show IPv4 flows (default: both families)
    #[arg(global = true, short = '4', long = "ipv4")]
    pub ipv4: bool,
    /// Show IPv6 flows (default: both families)
    #[arg(global = true, short = '6', long = "ipv6")]
    pub ipv6: bool,
    /// Show TCP flows (the default protocol)
    #[arg(global = true, short = 'T', long = "tcp")]
    pub tcp: bool,
    /// Show UDP and UDP-lite flows
    #[arg(global = true, short = 'U', long = "udp")]
    pub udp: bool,
    /// Show DCCP flows
    #[arg(global = true, short = 'D', long = "dccp")]
    pub dccp: bool,
    /// Show ICMP and ICMPv6 flows
    #[arg(global = true, short = 'I', long = "icmp")]
    pub icmp: bool,
    /// Show SCTP flows
    #[arg(global = true, short = 'S', long = "sctp")]
    pub sctp: bool,
    /// Show every protocol, including ones flowtop has no name for (shown by number)
    #[arg(global = true, long = "all-protocols")]
    pub all_protocols: bool,
    /// Do not look up host names
    #[arg(global = true, short = 'n', long = "no-dns")]
    pub no_dns: bool,
    /// Do not look at payloads at all: no DNS answers, TLS ClientHellos, HTTP Host headers or QUIC
    /// Initials are read, so flows get no asked-for name (dst_name); the header says so
    #[arg(global = true, long = "no-inspect")]
    pub no_inspect: bool,
    /// Do not look up GeoIP locations
    #[arg(global = true, short = 'G', long = "no-geoip")]
    pub no_geoip: bool,
    /// Also show the source address and port, not only the destination
    #[arg(short = 's', long = "show-src")]
    pub show_src: bool,
    /// Show rates in bits/s instead of bytes/s
    #[arg(short = 'b', long = "bits")]
    pub bits: bool,
    /// Update the GeoIP databases from the mirrors in geoip.conf (see --conf-dir) into --geoip-dir
    /// (default /var/lib/flowtop), and exit
    #[arg(short = 'u', long = "update")]
    pub update: bool,
    /// Refresh interval in seconds: counters and rates of active flows are re-read this often
    #[arg(global = true, short = 't', long = "interval", value_name = "SECONDS", default_value = "1", value_parser = parse_interval)]
    pub interval: f64,
    /// Re-read the whole table every SECONDS (never more often than -t); in between, only flows
    /// active in the last few intervals are re-read. Default: automatic, so that whole-table
    /// re-reads take at most a tenth of the time (every interval on small tables)
    #[arg(global = true, long = "full-refresh", value_name = "SECONDS", value_parser = parse_interval)]
    pub full_refresh: Option<f64>,
    /// Print the version and exit
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,
    /// Print newline-delimited JSON (one object per flow event) instead of the screen (with
    /// `history`: one object per recorded flow, or per summary row)
    #[arg(long, global = true)]
    pub json: bool,
    /// Print the table once, after the initial dump, and exit
    #[arg(long)]
    pub once: bool,
    /// Leave net.netfilter.nf_conntrack_acct and nf_conntrack_timestamp alone
    #[arg(global = true, long = "no-sysctl")]
    pub no_sysctl: bool,
    /// Initial kernel receive buffer of the event socket, in bytes (it grows on overruns)
    #[arg(global = true, long, value_name = "BYTES", default_value_t = 8 << 20)]
    pub rcvbuf: usize,
    /// How flows get their process: auto (best available), ebpf, procfs (periodic /proc scans), off
    #[arg(global = true, long, value_enum, value_name = "MODE", default_value = "auto")]
    pub attribution: crate::attribution::Mode,
    /// Directory searched first for tcp.conf, udp.conf, sctp.conf, dccp.conf (service names) and
    /// geoip.conf (the mirrors of -u), before /etc/flowtop and /etc/netsniff-ng
    #[arg(global = true, long = "conf-dir", value_name = "DIR")]
    pub conf_dir: Option<PathBuf>,
    /// Directory searched first for GeoIP databases (GeoLite2-City.mmdb, dbip-city-lite.mmdb, ...),
    /// before /usr/share/GeoIP, /var/lib/GeoIP, /usr/local/share/GeoIP and /var/lib/flowtop; with -u,
    /// where the databases are installed (default /var/lib/flowtop)
    #[arg(global = true, long = "geoip-dir", value_name = "DIR")]
    pub geoip_dir: Option<PathBuf>,
    /// Directory of the state file that remembers the sysctl values to restore
    #[arg(global = true, long = "state-dir", value_name = "DIR", default_value = crate::sysctl::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// The journal of ended flows (SQLite) that `record` writes and `history` reads
    #[arg(global = true, long, value_name = "PATH", default_value = DEFAULT_JOURNAL)]
    pub journal: PathBuf,
    /// Export every flow as IPFIX records (two per flow, with the process) to a collector:
    /// HOST:PORT over UDP, or tcp://HOST:PORT (screen, --json and record)
    #[arg(global = true, long, value_name = "HOST:PORT")]
    pub ipfix: Option<String>,
    /// With --ipfix: a flow that lasts gets a record of what it did every SECONDS (active timeout)
    #[arg(global = true, long = "ipfix-active", value_name = "SECONDS", default_value = "60", value_parser = parse_interval)]
    pub ipfix_active: f64,
    /// Serve Prometheus metrics (per-process bytes, flow counts, flowtop's own counters) at
    /// http://ADDR:PORT/metrics (screen, --json and record)
    #[arg(global = true, long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Where the journal lives unless `--journal` says otherwise.
pub const DEFAULT_JOURNAL: &str = "/var/lib/flowtop/journal.sqlite";

/// flowtop's commands beyond the screen and `--json`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Run headless and write every flow that ends (and checkpoints of long-lived ones) to the
    /// journal (--journal) until SIGINT or SIGTERM
    Record(RecordArgs),
    /// Query the journal: the flows that ended, as a table, as JSON lines (--json), or per
    /// executable and destination (--summary)
    History(HistoryArgs),
    /// Run CMD in a cgroup of its own and, when it exits, print a manifest of every destination its
    /// process tree contacted (to stderr, or --manifest FILE); exits with CMD's status
    Run(RunArgs),
}

/// `flowtop run`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Run")]
pub struct RunArgs {
    /// Write the manifest to FILE instead of stderr
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Compare with an earlier manifest (written with --json): mark destinations new (+) or
    /// gone (-)
    #[arg(long, value_name = "OLD")]
    pub diff: Option<PathBuf>,
    /// Run CMD as this user (name or uid; default: the user sudo was called by, SUDO_UID and
    /// SUDO_GID, else flowtop's own)
    #[arg(long, value_name = "NAME|UID")]
    pub user: Option<String>,
    /// The command and its arguments (after --)
    #[arg(required = true, last = true, value_name = "CMD")]
    pub cmd: Vec<std::ffi::OsString>,
}

/// `flowtop record`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Recording")]
pub struct RecordArgs {
    /// Remove flows that ended longer ago than this (e.g. 30d, 12h)
    #[arg(long, value_name = "AGE", default_value = "30d")]
    pub retain: String,
    /// Keep the journal under this size, removing the oldest flows first (e.g. 1G, 500M)
    #[arg(long = "retain-size", value_name = "SIZE", default_value = "1G")]
    pub retain_size: String,
}

/// `flowtop history`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Query")]
pub struct HistoryArgs {
    /// Only flows of this executable (full path, e.g. /usr/bin/curl)
    #[arg(long, value_name = "PATH")]
    pub exe: Option<String>,
    /// Only flows of processes with this name (comm)
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,
    /// Only flows of this process id
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Only flows to this address, or to this name (asked-for or reverse DNS)
    #[arg(long, value_name = "ADDR_OR_NAME")]
    pub dst: Option<String>,
    /// Only flows to this port
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Only flows that ended at or after WHEN: an RFC 3339 time, or a duration ago (90s, 10m,
    /// 2h, 3d)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only flows that ended before WHEN (same forms as --since)
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// One row per executable, destination, port and protocol: where does each program connect
    #[arg(long)]
    pub summary: bool,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(0.1..=86_400.0).contains(&v) {
        return Err("the interval must be between 0.1 and 86400 seconds".into());
    }
    Ok(v)
}

impl Args {
    /// The families and protocols selected, with the original's defaults.
    pub fn selection(&self) -> Selection {
        if self.all_protocols {
            let mut sel = Selection::everything();
            self.apply_families(&mut sel);
            return sel;
        }
        let mut sel = Selection::none();
        let any_proto = self.tcp || self.udp || self.dccp || self.icmp || self.sctp;
        if self.tcp || !any_proto {
            sel = sel.with_proto(proto::TCP);
        }
        if self.udp {
            sel = sel.with_proto(proto::UDP).with_proto(proto::UDPLITE);
        }
        if self.dccp {
            sel = sel.with_proto(proto::DCCP);
        }
        if self.icmp {
            sel = sel.with_proto(proto::ICMP).with_proto(proto::ICMPV6);
        }
        if self.sctp {
            sel = sel.with_proto(proto::SCTP);
        }
        self.apply_families(&mut sel);
        sel
    }

    fn apply_families(&self, sel: &mut Selection) {
        let any_family = self.ipv4 || self.ipv6;
        sel.ipv4 = self.ipv4 || !any_family;
        sel.ipv6 = self.ipv6 || !any_family;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Family;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("flowtop").chain(args.iter().copied())).expect("parses")
    }

    #[test]
    fn default_selection_is_tcp_on_both_families() {
        let s = parse(&[]).selection();
        assert!(s.family(Family::Ipv4) && s.family(Family::Ipv6));
        assert_eq!(s.proto_names(), vec!["tcp"]);
    }

    #[test]
    fn protocol_flags_select_exactly_those() {
        let s = parse(&["-U", "-I"]).selection();
        assert_eq!(s.proto_names(), vec!["icmp", "udp", "icmpv6", "udplite"]);
        let s = parse(&["-46TUDIS"]).selection();
        assert_eq!(s.proto_names().len(), 7);
    }

    #[test]
    fn a_family_flag_alone_keeps_the_tcp_default() {
        let s = parse(&["-6"]).selection();
        assert!(!s.family(Family::Ipv4) && s.family(Family::Ipv6));
        assert_eq!(s.proto_names(), vec!["tcp"]);
        assert_eq!(s.dump_family(), 10);
    }

    #[test]
    fn long_names_match_the_original() {
        let a = parse(&[
            "--ipv4",
            "--ipv6",
            "--tcp",
            "--udp",
            "--dccp",
            "--icmp",
            "--sctp",
            "--no-dns",
            "--no-geoip",
            "--show-src",
            "--bits",
            "--interval",
            "2",
        ]);
        assert!(a.ipv4 && a.ipv6 && a.tcp && a.udp && a.dccp && a.icmp && a.sctp);
        assert!(a.no_dns && a.no_geoip && a.show_src && a.bits);
        assert_eq!(a.interval, 2.0);
    }

    #[test]
    fn bad_interval_is_refused() {
        assert!(Args::try_parse_from(["flowtop", "-t", "0"]).is_err());
        assert!(Args::try_parse_from(["flowtop", "-t", "soon"]).is_err());
    }

    #[test]
    fn version_flag_is_lowercase_v() {
        let e = Args::try_parse_from(["flowtop", "-v"]).expect_err("version exits");
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
    }
}

#[cfg(test)]
mod help_snapshot {
    use super::Args;
    use clap::CommandFactory;

    #[test]
    fn help_text_snapshot() {
        let help = Args::command().term_width(100).render_help().to_string();
        insta::assert_snapshot!("help", help);
    }
}
