//! The man page and shell completions, generated from the clap definition
//! (`flowtop --generate man|bash|zsh|fish`, used by `cargo xtask dist`), so
//! they can never disagree with the flags.

use std::io::{self, Write};

use clap::CommandFactory;

use crate::cli::Args;
use crate::ui::keys::HELP;

/// What `--generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generate {
    Man,
    Bash,
    Zsh,
    Fish,
}

/// The Flows tab's columns and what they show.
pub const COLUMNS: &[(&str, &str)] = &[
    (
        "PROCESS, PID",
        "the process owning the local socket (- when unknown)",
    ),
    ("PROTO, STATE", "protocol and its conntrack state"),
    ("TIME", "age of the flow (needs nf_conntrack_timestamp)"),
    ("SOURCE", "source address and port (with -s or s)"),
    ("ADDRESS", "destination: its reverse DNS name, or the number"),
    ("PORT", "destination port and its service name"),
    (
        "GEO",
        "country and city of the destination, or its scope (private, loopback...)",
    ),
    (
        "BYTES",
        "bytes sent by the initiator / sent back (needs nf_conntrack_acct)",
    ),
    (
        "RATE",
        "the same per second over the last interval (bits with -b or b)",
    ),
];

/// Escapes text for roff: backslashes, hyphens (so they stay minus signs
/// and copy-paste as flags), and a leading control character.
fn roff(text: &str) -> String {
    let s = text.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

fn tagged(out: &mut Vec<u8>, tag: &str, body: &str) {
    let _ = writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff(tag), roff(body));
}

/// The screen's sections: keys, tabs, filter, columns; then environment and
/// exit status.
fn screen_sections(out: &mut Vec<u8>) {
    let _ = writeln!(out, ".SH \"THE SCREEN\"");
    let _ = writeln!(
        out,
        "{}",
        roff(
            "Without --once or --json, flowtop shows a screen that refreshes every interval (-t). \
             The header shows the version, the flow counts of the shown families and protocols, \
             what is shown, the attribution mode and the lost-event and resync counts. \
             Three tabs: Flows (one row per flow), Processes (one row per process: flows, bytes \
             and rates sent and received) and Countries (the same per country of the destination)."
        )
    );
    let _ = writeln!(out, ".SS Keys");
    for (k, v) in HELP {
        tagged(out, k, v);
    }
    let _ = writeln!(out, ".SS Filter");
    let _ = writeln!(
        out,
        "{}",
        roff(
            "/ opens the filter; the rows shown are those that match every term. A term is \
             pid:N, comm:TEXT (process name contains), port:N or port:NAME (either port, or its \
             service), host:TEXT (address or name contains), cc:CODE (country of either end), \
             state:TEXT, proto:NAME or proto:N, or any other text, matched against the process, \
             addresses, names, ports, services, country, city and state. Enter keeps the filter, \
             Esc clears it."
        )
    );
    let _ = writeln!(out, ".SS Columns");
    for (k, v) in COLUMNS {
        tagged(out, k, v);
    }
    let _ = writeln!(out, ".SH ENVIRONMENT");
    tagged(
        out,
        "NO_COLOR",
        "when set and not empty, the screen uses no colours",
    );
    tagged(
        out,
        "FLOWTOP_FRAME_LOG",
        "a file to write, per frame of the screen, the microseconds spent building rows on the screen's \
         thread, drawing, and building rows on the deriver thread",
    );
    let _ = writeln!(out, ".SH \"EXIT STATUS\"");
    tagged(
        out,
        "0",
        "success, or a signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT) ended the run",
    );
    tagged(out, "1", "an error, or missing privileges (CAP_NET_ADMIN)");
    tagged(out, "2", "bad usage, or the screen asked for without a terminal");
}

/// The man page, section 8.
pub fn man_page() -> io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(Args::command()).section("8");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    screen_sections(&mut out);
    man.render_extra_section(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// `flowtop --generate WHAT`: prints it, exit 0; an unknown WHAT exits 2.
pub fn main(what: Option<&str>) -> std::process::ExitCode {
    let what = match what {
        Some("man") => Generate::Man,
        Some("bash") => Generate::Bash,
        Some("zsh") => Generate::Zsh,
        Some("fish") => Generate::Fish,
        other => {
            eprintln!("flowtop: --generate wants man, bash, zsh or fish, not {other:?}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut out = io::stdout().lock();
    match generate(what, &mut out).and_then(|()| out.flush()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flowtop: --generate: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Writes what `--generate` asks for.
pub fn generate(what: Generate, out: &mut dyn Write) -> io::Result<()> {
    use clap_complete::Shell;
    let shell = match what {
        Generate::Man => return out.write_all(&man_page()?),
        Generate::Bash => Shell::Bash,
        Generate::Zsh => Shell::Zsh,
        Generate::Fish => Shell::Fish,
    };
    clap_complete::generate(shell, &mut Args::command(), "flowtop", out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_mentions_every_flag_and_key() {
        let page = String::from_utf8(man_page().expect("renders")).expect("utf-8");
        let plain = page.replace("\\-", "-");
        assert!(
            plain.starts_with(".ie") || plain.contains(".TH flowtop 8"),
            "{plain}"
        );
        for arg in Args::command().get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(l) = arg.get_long() {
                assert!(plain.contains(&format!("--{l}")), "--{l} missing");
            }
            if let Some(s) = arg.get_short() {
                assert!(plain.contains(&format!("-{s}")), "-{s} missing");
            }
        }
        assert!(!plain.contains("--generate"), "the hidden flag is documented");
        for (k, _) in HELP {
            assert!(plain.contains(&k.replace('\\', "\\e")), "key {k} missing");
        }
        assert!(plain.contains("THE SCREEN") && plain.contains("NO_COLOR"));
    }

    #[test]
    fn completions_know_the_flags() {
        for (what, long) in [
            (Generate::Bash, "--"),
            (Generate::Zsh, "--"),
            (Generate::Fish, "-l "),
        ] {
            let mut out = Vec::new();
            generate(what, &mut out).expect("generates");
            let text = String::from_utf8(out).expect("utf-8");
            for arg in Args::command().get_arguments() {
                if let Some(l) = arg.get_long() {
                    assert!(text.contains(&format!("{long}{l}")), "{what:?}: --{l}");
                }
            }
            assert!(!text.contains("generate"), "{what:?} completes --generate");
        }
    }
}
