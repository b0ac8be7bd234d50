//! What every report shares: its header (commit, command to reproduce,
//! machine) and the cell formatters.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;

use super::guards::read_trim;
use super::{run_cmd, NETSNIFF_FLOWTOP};

/// The machine and the tools a report was made with, as `- key: value` pairs.
pub(crate) fn machine_info(root: &Path) -> Vec<(String, String)> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "?".into());
    let nproc = thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".into());
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .map(|l| l.to_string())
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|k| k.parse::<f64>().ok()))
        .map(|kib| format!("{:.1} GiB", kib / 1048576.0))
        .unwrap_or_else(|| "?".into());
    let kernel = read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(|_| "?".into());
    let date = run_cmd(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M:%S UTC"]))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let conntrack = run_cmd(Command::new("conntrack").arg("--version"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    // flowtop 0.6.8 -v exits with status 1.
    let old = Command::new(NETSNIFF_FLOWTOP)
        .arg("-v")
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "not installed".into());
    vec![
        ("date".into(), date),
        ("machine".into(), format!("{nproc} CPUs, {model}, {mem} RAM")),
        ("kernel".into(), kernel),
        ("flowtop commit".into(), commit(root)),
        ("conntrack".into(), conntrack),
        ("netsniff-ng flowtop".into(), old),
    ]
}

pub(crate) fn secs(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.3} s")
    } else {
        format!("{v:.1} s")
    }
}

/// Milliseconds for a table: two decimals below 10, "—" for none (NaN).
pub(crate) fn ms(v: f64) -> String {
    if v.is_nan() {
        "—".into()
    } else if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.0} ms")
    }
}

pub(crate) fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

/// `git rev-parse --short HEAD`, plus `-dirty` when a tracked file other
/// than the reports under bench/ differs from it (a run rewrites those, so
/// they would make every later run of the same code "dirty").
pub(crate) fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        run_cmd(Command::new("git").arg("-C").arg(root).args(args)).map(|s| s.trim().to_string())
    };
    let head = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|_| "?".into());
    let dirty = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        ":(exclude)bench",
    ])
    .map(|s| !s.is_empty())
    .unwrap_or(false);
    if dirty {
        format!("{head}-dirty")
    } else {
        head
    }
}

/// The start of every report: title, the command that reproduces it and the
/// commit it ran at, how long it took, then the machine.
pub(crate) fn header(title: &str, root: &Path, command: &str, took: std::time::Duration) -> String {
    let mut o = format!(
        "# {title}

"
    );
    let _ = writeln!(
        o,
        "Reproduce: `{command}` at commit `{}` (this run took {:.0} s).\n",
        commit(root),
        took.as_secs_f64()
    );
    for (k, v) in machine_info(root) {
        let _ = writeln!(o, "- {k}: {v}");
    }
    let _ = writeln!(
        o,
        "- load average at the end: {}",
        fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    o
}

pub(crate) fn pct(v: f64) -> String {
    format!("{v:.1} %")
}

/// `a / b` as "0.42×", or "—" when either is missing.
pub(crate) fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}×", a / b)
    } else {
        "—".into()
    }
}

/// The values of a sample, in order, for a "runs" cell.
pub(crate) fn list(vals: &[f64], f: fn(f64) -> String) -> String {
    vals.iter().map(|&v| f(v)).collect::<Vec<_>>().join(", ")
}

/// A markdown table: a header row, an alignment per column, rows of cells.
pub(crate) struct Table {
    head: Vec<String>,
    align: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// `cols`: (title, alignment) with alignment "---", "---:" or ":---".
    pub(crate) fn new(cols: &[(&str, &'static str)]) -> Self {
        Table {
            head: cols.iter().map(|c| c.0.to_string()).collect(),
            align: cols.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    pub(crate) fn render(&self, out: &mut String) {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out.push_str(&line(&self.head));
        out.push_str(&format!("|{}|\n", self.align.join("|")));
        for r in &self.rows {
            // Pipes inside a cell would split it.
            let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
            out.push_str(&line(&cells));
        }
    }
}
