//! A PTR server for tests and benchmarks of flowtop's reverse DNS.
//!
//! ```text
//! ptr_server --listen 198.51.100.1:53 --ptr 192.0.2.1=host.example [--ptr IP=NAME ...]
//!            [--ptr-file FILE] [--ttl N] [--silent | --garbage | --wrong-type] [--delay-ms N]
//! ```
//!
//! Answers PTR queries (IPv4 and IPv6 reverse names) for the given addresses,
//! NXDOMAIN for others. NAME's labels are used byte for byte, so a name may
//! hold control characters (`--ptr "192.0.2.66=$(printf 'evil\033[2J.example')"`).
//! Prints `listening on ADDR` once bound; runs until SIGINT or SIGTERM.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use flowtop_testkit::dns::{raw_name, Mode, PtrServer, ServerConfig};

#[derive(Parser)]
#[command(about = "Answers PTR queries for tests and benchmarks")]
struct Args {
    /// Address and port to listen on (UDP).
    #[arg(long)]
    listen: SocketAddr,
    /// An address and the name its PTR record points to.
    #[arg(long = "ptr", value_name = "IP=NAME", value_parser = parse_ptr)]
    ptr: Vec<(IpAddr, String)>,
    /// A file of `IP=NAME` lines (for thousands of names, as benchmarks use).
    #[arg(long = "ptr-file", value_name = "FILE")]
    ptr_file: Option<std::path::PathBuf>,
    /// TTL of the answers, seconds.
    #[arg(long, default_value_t = 300)]
    ttl: u32,
    /// Never answer.
    #[arg(long, conflicts_with_all = ["garbage", "wrong_type"])]
    silent: bool,
    /// Answer with malformed packets.
    #[arg(long, conflicts_with = "wrong_type")]
    garbage: bool,
    /// Answer with an A record instead of a PTR.
    #[arg(long)]
    wrong_type: bool,
    /// Wait this long before each answer.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
}

fn parse_ptr(s: &str) -> Result<(IpAddr, String), String> {
    let (ip, name) = s.split_once('=').ok_or("expected IP=NAME")?;
    let ip: IpAddr = ip.parse().map_err(|e| format!("{ip}: {e}"))?;
    raw_name(name)?;
    Ok((ip, name.to_owned()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mode = if args.silent {
        Mode::Silent
    } else if args.garbage {
        Mode::Garbage
    } else if args.wrong_type {
        Mode::WrongType
    } else {
        Mode::Answer
    };
    let mut ptr = args.ptr.into_iter().collect::<HashMap<_, _>>();
    if let Some(path) = &args.ptr_file {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("ptr_server: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        };
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            match parse_ptr(line.trim()) {
                Ok((ip, name)) => {
                    ptr.insert(ip, name);
                }
                Err(e) => {
                    eprintln!("ptr_server: {}:{}: {e}", path.display(), n + 1);
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let cfg = ServerConfig {
        ptr,
        ttl: args.ttl,
        mode,
        delay: Duration::from_millis(args.delay_ms),
    };
    let server = match PtrServer::start(args.listen, cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ptr_server: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", server.local_addr());
    let _ = std::io::stdout().flush();
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        eprintln!("ptr_server: cannot handle SIGTERM");
        return ExitCode::FAILURE;
    };
    tokio::select! {
        _ = server.wait() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    ExitCode::SUCCESS
}
