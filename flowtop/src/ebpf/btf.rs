//! Kernel struct offsets from the running kernel's BTF: a small reader of
//! `/sys/kernel/btf/vmlinux` (aya keeps member offsets private).

#![cfg_attr(flowtop_no_ebpf, allow(dead_code))]

use super::*;

// ---------------------------------------------------------------------------
// Kernel struct offsets from the running kernel's BTF
// ---------------------------------------------------------------------------

/// Where the running kernel publishes its BTF.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Byte offset and size of a (possibly nested) struct member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberOffset {
    /// From the start of the outermost struct.
    pub offset: u32,
    /// Size of the member's type (None when BTF gives it no size).
    pub size: Option<u32>,
}

/// A kernel BTF blob with its types indexed by id: enough to look struct
/// members up by name. (aya parses BTF too, but keeps struct members
/// crate-private.) Format: the kernel's Documentation/bpf/btf.rst.
pub struct KernelBtf {
    data: Vec<u8>,
    /// Byte position in `data` of type id `i + 1` (id 0 is `void`).
    types: Vec<usize>,
    /// Byte range of the string section in `data`.
    strings: std::ops::Range<usize>,
}

impl std::fmt::Debug for KernelBtf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelBtf")
            .field("bytes", &self.data.len())
            .field("types", &self.types.len())
            .finish()
    }
}

/// BTF kinds used here (`BTF_KIND_*`).
mod btf_kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FLOAT: u32 = 16;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

/// One `struct btf_type` header.
#[derive(Debug, Clone, Copy)]
struct BtfTypeHeader {
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    /// `size` or `type`, depending on the kind.
    size_or_type: u32,
    /// Position of the header in the blob (kind data follows at +12).
    pos: usize,
}

impl KernelBtf {
    /// Reads and indexes the running kernel's BTF ([`KERNEL_BTF`]).
    pub fn from_sys_fs() -> Result<Self, String> {
        let data =
            std::fs::read(KERNEL_BTF).map_err(|e| format!("reading kernel BTF {KERNEL_BTF} failed: {e}"))?;
        Self::parse(data).map_err(|e| format!("{KERNEL_BTF}: {e}"))
    }

    /// Indexes a BTF blob (little-endian, as on every target flowtop runs on).
    pub fn parse(data: Vec<u8>) -> Result<Self, String> {
        let u32_at = |pos: usize| -> Result<u32, String> {
            data.get(pos..pos + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| format!("BTF truncated at byte {pos}"))
        };
        let magic = data.get(..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        if magic != Some(0xeb9f) {
            return Err("not a little-endian BTF blob (bad magic)".to_owned());
        }
        let hdr_len = u32_at(4)? as usize;
        let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
        let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
        let type_start = hdr_len + type_off;
        let type_end = type_start + type_len;
        let strings = hdr_len + str_off..hdr_len + str_off + str_len;
        if type_end > data.len() || strings.end > data.len() {
            return Err("BTF sections reach past the end of the blob".to_owned());
        }
        let mut types = Vec::new();
        let mut pos = type_start;
        while pos < type_end {
            let info = u32_at(pos + 4)?;
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            let extra = match kind {
                1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
                2 | 7..=12 | 16 | 18 => 0,    // PTR, FWD..FUNC, FLOAT, TYPE_TAG
                3 => 12,                      // ARRAY
                4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
                6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
                other => return Err(format!("unknown BTF kind {other} at byte {pos}")),
            };
            types.push(pos);
            pos += 12 + extra;
        }
        if pos != type_end {
            return Err("BTF type section ends inside a type".to_owned());
        }
        Ok(Self { data, types, strings })
    }

    fn u32_at(&self, pos: usize) -> u32 {
        self.data
            .get(pos..pos + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn name(&self, name_off: u32) -> &str {
        let start = self.strings.start + name_off as usize;
        let Some(rest) = self.data.get(start..self.strings.end) else {
            return "";
        };
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn header(&self, id: u32) -> Option<BtfTypeHeader> {
        let pos = *self.types.get((id as usize).checked_sub(1)?)?;
        let info = self.u32_at(pos + 4);
        Some(BtfTypeHeader {
            name_off: self.u32_at(pos),
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 == 1,
            size_or_type: self.u32_at(pos + 8),
            pos,
        })
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> Option<BtfTypeHeader> {
        use btf_kind::*;
        for _ in 0..32 {
            let t = self.header(id)?;
            match t.kind {
                TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG => id = t.size_or_type,
                _ => return Some(t),
            }
        }
        None
    }

    fn type_size(&self, id: u32) -> Option<u32> {
        use btf_kind::*;
        let t = self.resolve(id)?;
        match t.kind {
            INT | ENUM | STRUCT | UNION | FLOAT | ENUM64 => Some(t.size_or_type),
            PTR => Some(8),
            ARRAY => {
                let (elem, nelems) = (self.u32_at(t.pos + 12), self.u32_at(t.pos + 20));
                self.type_size(elem)?.checked_mul(nelems)
            }
            _ => None,
        }
    }

    /// The id of the struct (or union) called `name`.
    fn composite_by_name(&self, name: &str) -> Option<u32> {
        (1..=self.types.len() as u32).find(|&id| {
            self.header(id).is_some_and(|t| {
                (t.kind == btf_kind::STRUCT || t.kind == btf_kind::UNION) && self.name(t.name_off) == name
            })
        })
    }

    /// Member `name` of the struct/union `t`, also inside its anonymous
    /// struct/union members: `(bit offset, bitfield size, type id)`.
    fn member(&self, t: BtfTypeHeader, name: &str, depth: u32) -> Option<(u32, u32, u32)> {
        if depth > 8 {
            return None;
        }
        for i in 0..t.vlen {
            let m = t.pos + 12 + 12 * i;
            let (name_off, ty, raw) = (self.u32_at(m), self.u32_at(m + 4), self.u32_at(m + 8));
            let (bit_offset, bitfield) = if t.kind_flag {
                (raw & 0x00ff_ffff, raw >> 24)
            } else {
                (raw, 0)
            };
            let member_name = self.name(name_off);
            if member_name == name {
                return Some((bit_offset, bitfield, ty));
            }
            if member_name.is_empty() {
                let inner = self.resolve(ty)?;
                if inner.kind == btf_kind::STRUCT || inner.kind == btf_kind::UNION {
                    if let Some((off, bits, ty)) = self.member(inner, name, depth + 1) {
                        return Some((bit_offset + off, bits, ty));
                    }
                }
            }
        }
        None
    }

    /// Offset of a member path such as `sock.__sk_common.skc_family`: the
    /// first part names a struct, each further part a member of the previous
    /// one (members of anonymous structs/unions are found directly, as in C).
    pub fn member_offset(&self, path: &str) -> Result<MemberOffset, String> {
        let mut parts = path.split('.');
        let root = parts.next().unwrap_or_default();
        let mut id = self
            .composite_by_name(root)
            .ok_or_else(|| format!("kernel BTF has no struct {root} (looking up {path})"))?;
        let mut bits = 0u32;
        let mut within = root.to_owned();
        let mut any = false;
        for part in parts {
            any = true;
            let t = self
                .resolve(id)
                .filter(|t| t.kind == btf_kind::STRUCT || t.kind == btf_kind::UNION)
                .ok_or_else(|| {
                    format!("kernel BTF: {within} is not a struct or union (looking up {path})")
                })?;
            let (offset, bitfield, ty) = self
                .member(t, part, 0)
                .ok_or_else(|| format!("kernel BTF: {within} has no member {part} (looking up {path})"))?;
            if bitfield != 0 {
                return Err(format!(
                    "kernel BTF: {within}.{part} is a {bitfield}-bit bitfield"
                ));
            }
            bits += offset;
            id = ty;
            within = format!("{within}.{part}");
        }
        if !any {
            return Err(format!("{path}: no member named (want struct.member)"));
        }
        if !bits.is_multiple_of(8) {
            return Err(format!("kernel BTF: {path} is not byte-aligned"));
        }
        Ok(MemberOffset {
            offset: bits / 8,
            size: self.type_size(id),
        })
    }

    /// [`member_offset`](Self::member_offset), also checking the member's
    /// size (what the eBPF programs read there).
    fn offset_sized(&self, path: &str, size: u32) -> Result<u32, String> {
        let m = self.member_offset(path)?;
        if m.size != Some(size) {
            return Err(format!(
                "kernel BTF: {path} has size {:?}, flowtop reads {size} bytes",
                m.size
            ));
        }
        Ok(m.offset)
    }

    /// The offsets the kprobe programs read, from this BTF. Required fields
    /// are errors when missing; the optional ones are left absent.
    pub fn sock_offsets(&self) -> Result<SockOffsets, String> {
        const SKC: &str = "sock.__sk_common";
        let sk = |field: &str, size: u32| self.offset_sized(&format!("{SKC}.{field}"), size);
        let optional = |r: Result<u32, String>| r.unwrap_or(OFFSET_ABSENT);
        Ok(SockOffsets {
            skc_family: sk("skc_family", 2)?,
            skc_num: sk("skc_num", 2)?,
            skc_dport: sk("skc_dport", 2)?,
            skc_rcv_saddr: sk("skc_rcv_saddr", 4)?,
            skc_daddr: sk("skc_daddr", 4)?,
            skc_v6_rcv_saddr: optional(sk("skc_v6_rcv_saddr", 16)),
            skc_v6_daddr: optional(sk("skc_v6_daddr", 16)),
            skc_cookie: optional(sk("skc_cookie", 8)),
            skc_net: optional(sk("skc_net.net", 8)),
            net_cookie: optional(self.offset_sized("net.net_cookie", 8)),
            sk_protocol: optional(self.offset_sized("sock.sk_protocol", 2)),
            msg_name: self.offset_sized("msghdr.msg_name", 8)?,
            msg_namelen: self.offset_sized("msghdr.msg_namelen", 4)?,
            _pad: 0,
        })
    }

    /// The offsets the exec/fork programs read, from this BTF. `pid`,
    /// `tgid` and `real_parent` are required; the others are left absent
    /// when missing (the records then lack those fields).
    pub fn task_offsets(&self) -> Result<TaskOffsets, String> {
        let optional = |r: Result<u32, String>| r.unwrap_or(OFFSET_ABSENT);
        let task = |field: &str, size: u32| self.offset_sized(&format!("task_struct.{field}"), size);
        Ok(TaskOffsets {
            pid: task("pid", 4)?,
            tgid: task("tgid", 4)?,
            real_parent: task("real_parent", 8)?,
            group_leader: optional(task("group_leader", 8)),
            comm: optional(task("comm", 16)),
            mm: optional(task("mm", 8)),
            start_time: optional(task("start_time", 8)),
            arg_start: optional(self.offset_sized("mm_struct.arg_start", 8)),
            arg_end: optional(self.offset_sized("mm_struct.arg_end", 8)),
            filename: optional(self.offset_sized("linux_binprm.filename", 8)),
            interp: optional(self.offset_sized("linux_binprm.interp", 8)),
            nsproxy: optional(task("nsproxy", 8)),
            net_ns: optional(self.offset_sized("nsproxy.net_ns", 8)),
            ns_inum: optional(self.offset_sized("net.ns.inum", 4)),
            _pad: 0,
        })
    }
}
