//! The kprobe programs: load, attach, report; the sock_events path that
//! prefers them where the kernel attaches them all.

#![cfg_attr(flowtop_no_ebpf, allow(dead_code))]

use super::*;

// ---------------------------------------------------------------------------
// kprobe programs: load, attach, report
// ---------------------------------------------------------------------------

/// [`KprobeReport::chosen`] when every kprobe attached.
pub const SOCK_PATH_KPROBES: &str = "kprobes";
/// [`KprobeReport::chosen`] when they did not: the cgroup programs
/// ([`attach_sock_events`]) are the socket-ownership path.
pub const SOCK_PATH_CGROUP: &str = "cgroup (fallback)";

/// What happened to one kprobe program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KprobeProgramReport {
    /// Program name (see `flowtop_common::KPROBE_PROGRAMS`).
    pub program: &'static str,
    /// `kprobe/<function>` or `kretprobe/<function>`.
    pub attach_point: String,
    /// Ok when the kernel accepted the program (the verifier passed it).
    pub loaded: Result<(), String>,
    /// Ok when it attached; else why not (aya's error in `{:?}` form).
    pub attached: Result<(), String>,
}

/// What [`probe_kprobes`] / [`attach_kprobes`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KprobeReport {
    /// The offsets given to the programs, or why the kernel's BTF could not
    /// provide them (then the programs are loaded, inert, but not attached).
    pub offsets: Result<SockOffsets, String>,
    /// One entry per program of `KPROBE_PROGRAMS`, in that order (empty when
    /// the object could not be loaded at all: see `reason`).
    pub programs: Vec<KprobeProgramReport>,
    /// Why nothing could be loaded (no eBPF object, map creation failed ...).
    pub reason: Option<String>,
    /// [`SOCK_PATH_KPROBES`] or [`SOCK_PATH_CGROUP`].
    pub chosen: &'static str,
}

impl KprobeReport {
    fn failed(reason: String, offsets: Result<SockOffsets, String>) -> Self {
        Self {
            offsets,
            programs: Vec::new(),
            reason: Some(reason),
            chosen: SOCK_PATH_CGROUP,
        }
    }

    /// Every program loaded.
    pub fn all_loaded(&self) -> bool {
        !self.programs.is_empty() && self.programs.iter().all(|p| p.loaded.is_ok())
    }

    /// Every program attached (the kprobe path is usable).
    pub fn all_attached(&self) -> bool {
        !self.programs.is_empty() && self.programs.iter().all(|p| p.attached.is_ok())
    }

    /// One line per program plus the choice, for logs and `--status`-like output.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        if let Some(reason) = &self.reason {
            out.push_str(&format!("kprobes unavailable: {reason}\n"));
        }
        if let Err(e) = &self.offsets {
            out.push_str(&format!("kprobe offsets: {e}\n"));
        }
        for p in &self.programs {
            let status = |r: &Result<(), String>| match r {
                Ok(()) => "yes".to_owned(),
                Err(e) => format!("no ({e})"),
            };
            out.push_str(&format!(
                "{} {}: loaded {}, attached {}\n",
                p.attach_point,
                p.program,
                status(&p.loaded),
                status(&p.attached)
            ));
        }
        out.push_str(&format!("socket ownership path: {}", self.chosen));
        out
    }
}

/// Attached kprobe programs (present only when all of them attached); they
/// stay attached while this lives.
pub struct KprobeAttachment {
    ebpf: aya::Ebpf,
    programs: Vec<String>,
}

impl std::fmt::Debug for KprobeAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KprobeAttachment")
            .field("programs", &self.programs)
            .finish_non_exhaustive()
    }
}

impl KprobeAttachment {
    /// Attached programs, as `kprobe/<function>` / `kretprobe/<function>`.
    pub fn programs(&self) -> &[String] {
        &self.programs
    }
}

/// The kernel struct offsets the kprobe programs would be given: from the
/// running kernel's BTF (needs no privileges; `/sys/kernel/btf/vmlinux` is
/// world-readable).
pub fn kernel_sock_offsets() -> Result<SockOffsets, String> {
    KernelBtf::from_sys_fs()?.sock_offsets()
}

/// Loads every kprobe program (which proves it passes the verifier on this
/// kernel), tries to attach each, and reports. Nothing stays attached: use
/// [`attach_kprobes`] to keep them.
pub fn probe_kprobes() -> KprobeReport {
    attach_kprobes().0
}

/// Loads and attaches the kprobe programs. When every one attaches they are
/// kept in the returned attachment (`chosen` = [`SOCK_PATH_KPROBES`]); when
/// any fails, all are detached and unloaded (`chosen` = [`SOCK_PATH_CGROUP`]).
pub fn attach_kprobes() -> (KprobeReport, Option<KprobeAttachment>) {
    #[cfg(flowtop_no_ebpf)]
    {
        (
            KprobeReport::failed(NO_OBJECT_REASON.to_owned(), Err(NO_OBJECT_REASON.to_owned())),
            None,
        )
    }
    #[cfg(not(flowtop_no_ebpf))]
    {
        attach_kprobes_object(OBJECT)
    }
}

fn attach_kprobes_object(object: &[u8]) -> (KprobeReport, Option<KprobeAttachment>) {
    let offsets = kernel_sock_offsets();
    // Quietly first; when the kernel refuses a program, once more with the
    // verifier log so that its reason carries the verifier's explanation.
    let (report, attachment) = attach_kprobes_with(object, &offsets, aya::VerifierLogLevel::DISABLE);
    if report.reason.is_none() && !report.all_loaded() {
        return attach_kprobes_with(object, &offsets, aya::VerifierLogLevel::default());
    }
    (report, attachment)
}

fn attach_kprobes_with(
    object: &[u8],
    offsets: &Result<SockOffsets, String>,
    log: aya::VerifierLogLevel,
) -> (KprobeReport, Option<KprobeAttachment>) {
    use aya::programs::KProbe;

    // Inert offsets when BTF failed: the programs still load (and so are
    // verified), but are not attached.
    let globals = offsets.clone().unwrap_or(SockOffsets::ABSENT);
    let mut ebpf = match load_object(
        object,
        log,
        LoadFor::Kprobes(&globals),
        // The kprobe path loads the object once, so no second try without
        // the netns cookie: asked for only where cgroup_skb programs may
        // (the helper came to them in Linux 6.18).
        NameGlobals {
            inspect: true,
            netns_cookie: aya::util::KernelVersion::current()
                .is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 18, 0)),
        },
    ) {
        Ok(ebpf) => ebpf,
        Err(reason) => {
            return (
                KprobeReport::failed(with_privilege_hint(reason), offsets.clone()),
                None,
            )
        }
    };
    let mut programs = Vec::new();
    let mut attached_names = Vec::new();
    for (name, function, ret) in KPROBE_PROGRAMS {
        let attach_point = format!("{}/{function}", if ret { "kretprobe" } else { "kprobe" });
        let mut report = KprobeProgramReport {
            program: name,
            attach_point: attach_point.clone(),
            loaded: Ok(()),
            attached: Err("not loaded".to_owned()),
        };
        let program: Result<&mut KProbe, String> = ebpf
            .program_mut(name)
            .ok_or_else(|| format!("the eBPF object has no program {name}"))
            .and_then(|p| {
                p.try_into()
                    .map_err(|e| format!("{name} is not a kprobe program: {e:?}"))
            });
        match program {
            Err(e) => report.loaded = Err(e),
            Ok(program) => match program.load() {
                Err(e) => report.loaded = Err(with_privilege_hint(format!("{e:?}"))),
                Ok(()) => {
                    report.attached = match offsets {
                        Err(e) => Err(format!("not attached: no kernel struct offsets: {e}")),
                        // The program ran for every call of a busy kernel
                        // function: keep its link only if all attach (below).
                        Ok(_) => program
                            .attach(function, 0)
                            .map(drop)
                            .map_err(|e| format!("attaching {attach_point} failed: {e:?}")),
                    };
                    if report.attached.is_ok() {
                        attached_names.push(attach_point);
                    }
                }
            },
        }
        programs.push(report);
    }
    let mut report = KprobeReport {
        offsets: offsets.clone(),
        programs,
        reason: None,
        chosen: SOCK_PATH_CGROUP,
    };
    if report.all_attached() {
        report.chosen = SOCK_PATH_KPROBES;
        let attachment = KprobeAttachment {
            ebpf,
            programs: attached_names,
        };
        (report, Some(attachment))
    } else {
        // Dropping the object detaches whatever did attach.
        drop(ebpf);
        (report, None)
    }
}

/// Socket ownership events from the kprobes where they all attach, else
/// from the cgroup programs ([`attach_sock_events`]): the fallback is chosen
/// here and reported (`report.chosen`; the attachment's
/// [`programs`](AttachedSockEvents::programs) say which ones run). Needs
/// root; the reader starts later, with
/// [`start_reader`](AttachedSockEvents::start_reader).
///
/// The kprobe path sends KPROBE events (`flowtop_common::SOCK_EVENT_KPROBE`),
/// the cgroup path CREATED and TUPLE events: `deliver` must handle both. The
/// kprobe handle's [`cgroup`](SockEventsHandle::cgroup) is empty.
///
/// `inspect`: name captures (see [`attach_sock_events_inspecting`]). On the
/// kprobe path only the DNS half runs: the `cgroup_skb/ingress` program is
/// attached to the cgroup2 root next to the kprobes (best effort: if it
/// cannot be, the kprobes run without it, and a notice says why). The
/// first bytes of TCP streams and QUIC datagrams are captured by the
/// cgroup egress program, which this path does not attach: there are no
/// stream or datagram captures here. Its captures' cookies join no owner
/// either (kprobe events carry no cookie): consumers join them by tuple.
/// (Not testable on kernels without kprobes.)
pub fn attach_sock_events_preferring_kprobes(
    inspect: bool,
) -> (KprobeReport, Result<AttachedSockEvents, String>) {
    let (report, attachment) = attach_kprobes();
    match attachment {
        Some(KprobeAttachment {
            mut ebpf,
            mut programs,
        }) => {
            if inspect {
                match attach_kprobe_path_name_ingress(&mut ebpf) {
                    Ok(()) => programs.push(PROGRAM_NAME_INGRESS.to_owned()),
                    Err(why) => eprintln!("flowtop: DNS name captures unavailable: {why}"),
                }
            }
            (report, AttachedSockEvents::new(ebpf, programs, PathBuf::new()))
        }
        None => (report, attach_sock_events_inspecting(inspect)),
    }
}

/// The ingress program of the kprobe load, on the cgroup2 root (which must
/// be mounted: no temporary mount on this path).
fn attach_kprobe_path_name_ingress(ebpf: &mut aya::Ebpf) -> Result<(), String> {
    let cgroup = cgroup2_root().ok_or_else(|| "no cgroup2 hierarchy is mounted".to_owned())?;
    let dir = std::fs::File::open(&cgroup)
        .map_err(|e| format!("opening the cgroup2 root {} failed: {e}", cgroup.display()))?;
    attach_name_ingress(ebpf, &dir, &cgroup)
}

/// [`attach_sock_events_preferring_kprobes`] (name captures on) and the
/// reader in one call, for callers that do not drop privileges in between
/// (tests).
pub fn start_sock_events_preferring_kprobes(
    deliver: impl FnMut(Vec<SockEvent>) -> bool + Send + 'static,
) -> (KprobeReport, Result<SockEventsHandle, String>) {
    let (report, attached) = attach_sock_events_preferring_kprobes(true);
    (report, attached.and_then(|a| a.start_reader(deliver)))
}
