//! Reverse-resolves addresses the way flowtop does and prints the result:
//! `IP NAME` (escaped for the terminal), `IP -` for no name, `IP ?` when no
//! answer came in time; then one `own PROTO LOCAL SERVER` line per resolver
//! socket (what `is_own_query` hides from the flow table).
//!
//! ```text
//! rdns [--server ADDR:PORT ...] [--timeout-ms N] IP...
//! ```
//!
//! Without `--server` it reads /etc/resolv.conf and /etc/hosts, so
//! `ip netns exec NS rdns IP` uses /etc/netns/NS/resolv.conf.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use flowtop::enrich::dns::{DnsConfig, Lookup, ReverseDns};
use flowtop::output::safe::terminal_safe;

#[derive(Parser)]
#[command(about = "Reverse-resolves addresses with flowtop's resolver")]
struct Args {
    /// Name server to ask instead of those of /etc/resolv.conf.
    #[arg(long = "server")]
    servers: Vec<SocketAddr>,
    /// Time-out of one lookup, milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// Addresses to resolve.
    #[arg(required = true)]
    ips: Vec<IpAddr>,
}

fn show(l: &Lookup) -> String {
    match l {
        Lookup::Name(n) => terminal_safe(n).into_owned(),
        Lookup::NoName => "-".into(),
        Lookup::Pending => "?".into(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let timeout = Duration::from_millis(args.timeout_ms);
    let cfg = DnsConfig {
        timeout,
        ..DnsConfig::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let deliver = move |ip, l| {
        let _ = tx.send((ip, l));
    };
    let started = if args.servers.is_empty() {
        ReverseDns::start(cfg, deliver)
    } else {
        ReverseDns::start_with_servers(cfg, &args.servers, deliver)
    };
    let dns = match started {
        Ok(d) => d,
        Err(e) => {
            eprintln!("rdns: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut results: HashMap<IpAddr, Lookup> = HashMap::new();
    for &ip in &args.ips {
        let l = dns.request(ip);
        if l != Lookup::Pending {
            results.insert(ip, l);
        }
    }
    // Every lookup ends within the time-out; the margin is for scheduling.
    let deadline = tokio::time::Instant::now() + timeout * 2 + Duration::from_secs(1);
    while args.ips.iter().any(|ip| !results.contains_key(ip)) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((ip, l))) => {
                results.insert(ip, l);
            }
            Ok(None) | Err(_) => break,
        }
    }
    for ip in &args.ips {
        println!("{ip} {}", show(results.get(ip).unwrap_or(&Lookup::Pending)));
    }
    let mut own = dns.own_sockets();
    own.sort();
    for (proto, local, server, _open) in own {
        let name = flowtop::flow::model::proto::name(proto).unwrap_or("?");
        println!("own {name} {local} {server}");
    }
    ExitCode::SUCCESS
}
