//! The first line of every JSON output: what this run is and what it can
//! see. Its fields and their order are part of the public contract (see
//! README, "JSON schema"): add, never rename or reorder.

use serde::Serialize;

use crate::attribution;
use crate::ebpf::{EbpfStatus, KprobeReport};
use crate::flow::Selection;

/// The `meta` line.
#[derive(Debug, Serialize)]
pub struct Meta<'a> {
    event: &'static str,
    ts: &'a str,
    version: &'static str,
    kernel: Option<String>,
    attribution: attribution::Active,
    attribution_reason: &'a str,
    /// None when eBPF was not probed (`--once`: loading the kernel's BTF
    /// costs more than the whole dump of a small table).
    ebpf: Option<EbpfMeta<'a>>,
    families: Vec<&'static str>,
    protocols: Vec<String>,
    interval_s: f64,
    dns: &'a str,
    geoip: &'a [String],
    /// Payloads are looked at for asked-for names (false: `--no-inspect`).
    inspect: bool,
}

/// The `ebpf` object of the meta line.
#[derive(Debug, Serialize)]
struct EbpfMeta<'a> {
    available: bool,
    programs: &'a [String],
    reason: Option<&'a str>,
    /// Which kprobe programs the verifier took and which attached.
    kprobes: Option<Vec<KprobeMeta<'a>>>,
}

/// One kprobe program in `ebpf.kprobes`.
#[derive(Debug, Serialize)]
struct KprobeMeta<'a> {
    program: &'a str,
    loaded: bool,
    attached: bool,
    error: Option<&'a str>,
}

/// What the meta line says about the run, besides its time.
pub struct MetaInputs<'a> {
    pub version: &'static str,
    pub attribution: &'a attribution::Decision,
    pub ebpf: Option<&'a EbpfStatus>,
    pub kprobes: Option<&'a KprobeReport>,
    pub selection: &'a Selection,
    pub interval_s: f64,
    /// Reverse DNS: "on", "off" or why it is unavailable.
    pub dns: &'a str,
    /// The GeoIP database files in use.
    pub geoip: &'a [String],
    /// Not `--no-inspect`.
    pub inspect: bool,
}

impl<'a> Meta<'a> {
    /// The meta line for `inputs`, stamped `ts`.
    pub fn new(ts: &'a str, inputs: &MetaInputs<'a>) -> Meta<'a> {
        let sel = inputs.selection;
        let families = [(sel.ipv4, "ipv4"), (sel.ipv6, "ipv6")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        Meta {
            event: "meta",
            ts,
            version: inputs.version,
            kernel: kernel_release(),
            attribution: inputs.attribution.active,
            attribution_reason: &inputs.attribution.reason,
            ebpf: inputs.ebpf.map(|e| EbpfMeta {
                available: e.available,
                programs: &e.programs,
                reason: e.reason.as_deref(),
                kprobes: inputs.kprobes.map(|k| {
                    k.programs
                        .iter()
                        .map(|p| KprobeMeta {
                            program: &p.attach_point,
                            loaded: p.loaded.is_ok(),
                            attached: p.attached.is_ok(),
                            error: p
                                .loaded
                                .as_ref()
                                .err()
                                .or(p.attached.as_ref().err())
                                .map(String::as_str),
                        })
                        .collect()
                }),
            }),
            families,
            protocols: sel.proto_names(),
            interval_s: inputs.interval_s,
            dns: inputs.dns,
            geoip: inputs.geoip,
            inspect: inputs.inspect,
        }
    }
}

fn kernel_release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_their_names_and_order() {
        let decision = attribution::Decision::off();
        let sel = Selection::everything();
        let geoip = vec!["/x.mmdb".to_owned()];
        let status = EbpfStatus {
            available: false,
            mode: crate::ebpf::MODE_UNAVAILABLE,
            programs: Vec::new(),
            reason: Some("no".into()),
        };
        let inputs = MetaInputs {
            version: "9",
            attribution: &decision,
            ebpf: Some(&status),
            kprobes: None,
            selection: &sel,
            interval_s: 1.0,
            dns: "off",
            geoip: &geoip,
            inspect: false,
        };
        let v = serde_json::to_value(Meta::new("T", &inputs)).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "event",
                "ts",
                "version",
                "kernel",
                "attribution",
                "attribution_reason",
                "ebpf",
                "families",
                "protocols",
                "interval_s",
                "dns",
                "geoip",
                "inspect"
            ]
        );
        assert_eq!(v["attribution"], "off");
        assert_eq!(v["interval_s"], 1.0);
        assert_eq!(v["ebpf"]["reason"], "no");
        assert!(v["ebpf"]["kprobes"].is_null());
        assert_eq!(v["geoip"][0], "/x.mmdb");
        assert_eq!(v["inspect"], false);
    }
}
