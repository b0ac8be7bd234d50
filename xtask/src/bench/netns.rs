//! xtask's network namespace: `ip netns add`, commands run inside it
//! (setns before exec), deleted on drop. Kept small on purpose: the shared
//! harness of `flowtop-testkit` is meant to replace it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use super::{log, run_cmd};

// ---------------------------------------------------------------- guards

/// A network namespace `ftbench-<pid>`, deleted on drop.
pub(crate) struct Netns {
    pub(crate) name: String,
    fd: Option<File>,
}

impl Netns {
    pub(crate) fn create(name: &str) -> Result<Self> {
        run_cmd(Command::new("ip").args(["netns", "add", name]))?;
        let mut ns = Netns {
            name: name.to_string(),
            fd: None,
        };
        ns.fd = Some(
            File::open(format!("/run/netns/{name}"))
                .with_context(|| format!("cannot open /run/netns/{name}"))?,
        );
        Ok(ns)
    }

    /// A command that runs inside the namespace (setns in the child before
    /// exec) and is killed if this process dies.
    pub(crate) fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        let fd = self.fd.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
        // SAFETY: only async-signal-safe syscalls between fork and exec.
        unsafe {
            c.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
                Ok(())
            });
        }
        c
    }

    pub(crate) fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        run_cmd(self.cmd("sysctl").args(["-q", "-w", &format!("{key}={value}")])).map(|_| ())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.fd = None;
        let ok = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            log(format!("deleted network namespace {}", self.name));
        } else {
            eprintln!(
                "[bench] WARNING: could not delete network namespace {}: run `ip netns del {}`",
                self.name, self.name
            );
        }
    }
}
