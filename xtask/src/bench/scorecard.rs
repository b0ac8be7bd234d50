//! `cargo xtask bench scorecard`: the attribution scenario suite of
//! `flowtop_testkit::scenarios` run against the release build, its table
//! printed and written to bench/scorecard.md.

use anyhow::{Context, Result};

use super::markdown::header;
use super::{log, prepare, require_root, require_tools, write_report, Prepared};
use flowtop_testkit::scenarios::{self, BYTES_TOLERANCE_PCT};

pub(crate) const USAGE: &str = "\
usage: cargo xtask bench scorecard [--peer PATH]

  The attribution scenario suite: 34 real programs (one C program compiled
  with gcc, copied as sc-<scenario>) talking from flowtop's namespace to a
  peer namespace or over loopback: TCP bulk, UDP, ICMP and ICMPv6 echo from
  raw sockets, SCTP and protocol 253 from raw sockets, AF_PACKET, io_uring,
  sendfile, splice, sendmmsg/recvmmsg, short-lived processes, many
  connections, and a container behind flowtop's namespace (masquerade out
  over IPv4 and IPv6, ICMP, sendto, short-lived processes inside, a server
  on a published port: attributed \"netns\"). Each is scored on
  attribution (flowtop --json in eBPF mode shows its flows with its pid
  and comm) and on conntrack's bytes against
  an nft counter in the peer (within 10%). Needs root, gcc, nft, python3.
  Writes bench/scorecard.md.

  --peer PATH  also run the suite with another flowtop binary (e.g. the
               previous release, built from an older commit) in the same
               run, and add a column of its verdicts.";

pub(crate) fn run(args: &[String]) -> Result<()> {
    let peer = match args {
        [] => None,
        [flag, path] if flag == "--peer" => Some(std::path::PathBuf::from(path)),
        _ => anyhow::bail!("{USAGE}"),
    };
    if let Some(p) = &peer {
        anyhow::ensure!(p.is_file(), "--peer {}: no such file", p.display());
    }
    require_root("bench scorecard", "network namespaces, eBPF, raw sockets")?;
    require_tools(&["gcc", "nft", "ip", "conntrack"])?;
    let Prepared {
        root,
        flowtop,
        started,
        ..
    } = prepare()?;
    log("running the scenarios");
    let report = scenarios::run(&flowtop, &|l| log(l)).context("the scenario suite")?;
    let failures = report.failures();
    let peer_report = match &peer {
        Some(p) => {
            log(format!("running the scenarios with the peer {}", p.display()));
            Some((
                p,
                scenarios::run(p, &|l| log(l)).context("the scenario suite with the peer")?,
            ))
        }
        None => None,
    };
    let mut md = header(
        "flowtop attribution scorecard",
        &root,
        &match &peer {
            Some(p) => format!(
                "flock /tmp/flowtop-root.lock cargo xtask bench scorecard --peer {}",
                p.display()
            ),
            None => "flock /tmp/flowtop-root.lock cargo xtask bench scorecard".to_owned(),
        },
        started.elapsed(),
    );
    md.push_str(&format!(
        "\nOne `flowtop --json -t 1 --all-protocols --attribution ebpf` in the client namespace \
         watches every scenario (run one after the other, {:.0} s in all). **attributed**: flows shown \
         with a pid the scenario's program printed and its comm `sc-<scenario>`. **conntrack bytes**: \
         orig + reply bytes of the scenario's flows from flowtop's JSON; **nft bytes**: the L3 bytes \
         an nft counter in the peer namespace counted for the scenario (both directions; on `lo` in \
         flowtop's namespace for loopback); **diff %**: conntrack against nft, at most ±{BYTES_TOLERANCE_PCT:.0}%.\n\n",
        report.took.as_secs_f64()
    ));
    md.push_str(&report.table());
    md.push('\n');
    if let Some((path, peer)) = &peer_report {
        md.push_str(&peer_comparison(path, &report, peer));
    }
    if failures.is_empty() {
        md.push_str("Every scenario conntrack can see is attributed, with its bytes within the tolerance.\n");
    } else {
        md.push_str("Failures:\n\n");
        for f in &failures {
            md.push_str(&format!("- {f}\n"));
        }
    }
    write_report(&root, "scorecard.md", &md)
}

/// This build's verdicts beside the peer's, measured in the same run.
fn peer_comparison(path: &std::path::Path, this: &scenarios::Report, peer: &scenarios::Report) -> String {
    let passed = |r: &scenarios::Report| {
        let visible: Vec<_> = r.scores.iter().filter(|s| s.scenario.visible).collect();
        let ok = visible.iter().filter(|s| s.failure().is_none()).count();
        (ok, visible.len())
    };
    let ((a, n), (b, m)) = (passed(this), passed(peer));
    let mut o = format!(
        "The same suite with the peer `{}` in the same run: this build passes {a} of {n} scenarios \
         conntrack can see, the peer {b} of {m}.\n\n| scenario | this build | peer |\n|---|---|---|\n",
        path.display()
    );
    for (s, p) in this.scores.iter().zip(&peer.scores) {
        o.push_str(&format!(
            "| {} | {} | {} |\n",
            s.scenario.name,
            s.verdict().replace('|', "/"),
            p.verdict().replace('|', "/")
        ));
    }
    o.push('\n');
    o
}
