//! Who a process is beyond its pid: its cgroup v2 path and what the path
//! says (systemd unit or scope, container, desktop application), and its
//! network namespace (issue 15).
//!
//! Everything here comes from names the kernel already shows: the `0::`
//! line of `/proc/PID/cgroup`, or the cgroup id the eBPF programs record
//! (the inode number of the cgroup's directory under the cgroup2 mount,
//! wherever that is mounted: `/sys/fs/cgroup` on unified hosts,
//! `/sys/fs/cgroup/unified` on hybrid ones). No container daemon is asked;
//! a container's name is read from the runtime's state on disk when it is
//! there (docker, podman) or is part of the path (lxc, nspawn).
//!
//! How runtimes name their cgroups (the closing note of issue 15):
//! - docker, systemd driver: `/system.slice/docker-<64 hex>.scope`;
//!   cgroupfs driver: `/docker/<64 hex>`. Name: `Name` of
//!   `/var/lib/docker/containers/<id>/config.v2.json` (with a leading `/`).
//! - podman: `/machine.slice/libpod-<64 hex>.scope` (root) or
//!   `/user.slice/user-UID.slice/user@UID.service/user.slice/libpod-<id>.scope`
//!   (rootless); cgroupfs: `/libpod_parent/libpod-<id>`. `libpod-conmon-<id>`
//!   is the monitor, not the container. Name: `names` of the entry with
//!   this `id` in `/var/lib/containers/storage/overlay-containers/containers.json`
//!   (root), or for a rootless container (`user@UID.service` in the path) in
//!   `~/.local/share/containers/storage/overlay-containers/containers.json`
//!   of that user (home from /etc/passwd: local users only).
//! - containerd (CRI): `.../cri-containerd-<64 hex>.scope`; cri-o:
//!   `.../crio-<64 hex>.scope` (`crio-conmon-<id>` is the monitor);
//!   kubelet's cgroupfs driver: `/kubepods/<qos>/pod<uid>/<64 hex>`. No name
//!   on disk worth reading (names live in the Kubernetes API).
//! - lxc: `/lxc.payload.NAME/...` (lxc 4+) or `/lxc/NAME/...` (older).
//! - systemd-nspawn: `/machine.slice/machine-NAME.scope` (systemd escapes
//!   `-` in NAME as `\x2d`).
//! - flatpak: `.../app.slice/app-flatpak-<app id>-<n>.scope`; snap:
//!   `.../snap.<snap>.<app>-<uuid>.scope` (app id `snap.<snap>.<app>`).

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::ebpf_owners::Generational;

/// The container a process runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// "docker", "podman", "containerd", "cri-o", "kubepods", "lxc", "nspawn".
    pub runtime: &'static str,
    /// The runtime's id: 64 hex digits for the OCI runtimes, the name for
    /// lxc and nspawn (which have no other id).
    pub id: String,
    /// The name the runtime gave it, when its state on disk says.
    pub name: Option<String>,
}

impl Container {
    /// What a narrow column shows: the name, else the short id.
    pub fn label(&self) -> &str {
        match &self.name {
            Some(n) => n,
            None if self.id.len() == 64 => &self.id[..12],
            None => &self.id,
        }
    }
}

/// What a cgroup path says about the processes in it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// The cgroup v2 path as `/proc/PID/cgroup`'s `0::` line gives it.
    pub cgroup: String,
    /// The innermost systemd unit (`.service`) or scope (`.scope`).
    pub unit: Option<String>,
    pub container: Option<Container>,
    /// The flatpak or snap application id.
    pub app: Option<String>,
}

impl Identity {
    /// Reads the path (pure: container names are not looked up).
    pub fn parse(cgroup: &str) -> Identity {
        let parts: Vec<&str> = cgroup.split('/').filter(|p| !p.is_empty()).collect();
        let unit = parts
            .iter()
            .rev()
            .find(|p| p.ends_with(".service") || p.ends_with(".scope"))
            .map(|p| (*p).to_owned());
        let container = parts
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, p)| container_of(&parts[..i], p));
        let app = parts.iter().rev().find_map(|p| app_of(p));
        Identity {
            cgroup: cgroup.to_owned(),
            unit,
            container,
            app,
        }
    }

    /// The column's text: the container, else the app, else the unit.
    pub fn label(&self) -> Option<&str> {
        self.container
            .as_ref()
            .map(Container::label)
            .or(self.app.as_deref())
            .or(self.unit.as_deref())
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `<prefix><64 hex><suffix>` -> the hex.
fn hex_between<'a>(part: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    let id = part.strip_prefix(prefix)?.strip_suffix(suffix)?;
    is_hex64(id).then_some(id)
}

/// Undoes systemd's `\xNN` escaping of unit name parts.
pub fn unescape_systemd(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 4 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The container one path component names (`parents`: the components
/// above it, for runtimes whose ids are bare).
fn container_of(parents: &[&str], part: &str) -> Option<Container> {
    let oci = |runtime, id: &str| {
        Some(Container {
            runtime,
            id: id.to_owned(),
            name: None,
        })
    };
    if let Some(id) = hex_between(part, "docker-", ".scope") {
        return oci("docker", id);
    }
    if let Some(id) = hex_between(part, "libpod-", ".scope").or_else(|| hex_between(part, "libpod-", "")) {
        return oci("podman", id);
    }
    if let Some(id) = hex_between(part, "cri-containerd-", ".scope") {
        return oci("containerd", id);
    }
    if let Some(id) = hex_between(part, "crio-", ".scope") {
        return oci("cri-o", id);
    }
    if is_hex64(part) {
        match parents.last() {
            Some(&"docker") => return oci("docker", part),
            _ if parents.first().is_some_and(|p| p.starts_with("kubepods")) => return oci("kubepods", part),
            _ => {}
        }
    }
    let named = |runtime, name: String| {
        Some(Container {
            runtime,
            id: name.clone(),
            name: Some(name),
        })
    };
    if let Some(name) = part.strip_prefix("lxc.payload.") {
        return named("lxc", name.to_owned());
    }
    if parents.len() == 1 && parents[0] == "lxc" {
        return named("lxc", part.to_owned());
    }
    if let Some(name) = part
        .strip_prefix("machine-")
        .and_then(|r| r.strip_suffix(".scope"))
    {
        // podman under machine.slice uses libpod-, handled above; qemu
        // guests of libvirt are machine-qemu\x2dN\x2dNAME.scope: a VM,
        // still the "machine" the host knows.
        return named("nspawn", unescape_systemd(name));
    }
    None
}

/// The application id a scope name carries.
fn app_of(part: &str) -> Option<String> {
    if let Some(rest) = part
        .strip_prefix("app-flatpak-")
        .and_then(|r| r.strip_suffix(".scope"))
    {
        // `<app id>-<n>`: the number is the instance.
        let (id, n) = rest.rsplit_once('-')?;
        return (!id.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .then(|| unescape_systemd(id));
    }
    if let Some(rest) = part.strip_prefix("snap.").and_then(|r| r.strip_suffix(".scope")) {
        // `<snap>.<app>-<uuid>`: the uuid has dashes of its own.
        let (tag, _uuid) = rest.split_once('-')?;
        let (snap, app) = tag.split_once('.')?;
        return (!snap.is_empty() && !app.is_empty()).then(|| format!("snap.{snap}.{app}"));
    }
    None
}

/// The path of the `0::` line of a `/proc/PID/cgroup` text.
pub fn unified_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_end())
        .filter(|p| p.starts_with('/'))
}

/// The network namespace inode of a `/proc/PID/ns/net` link (`net:[N]`).
pub fn netns_inode(link: &str) -> Option<u64> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Reads a process's cgroup path and network namespace inode from `dir`
/// (`/proc/PID`).
pub fn read_proc(dir: &Path) -> (Option<String>, Option<u64>) {
    let cgroup = fs::read_to_string(dir.join("cgroup"))
        .ok()
        .and_then(|t| unified_path(&t).map(str::to_owned));
    let netns = fs::read_link(dir.join("ns/net"))
        .ok()
        .and_then(|l| netns_inode(&l.to_string_lossy()));
    (cgroup, netns)
}

/// Where runtimes keep their state (tests point it elsewhere).
#[derive(Debug, Clone)]
pub struct StateRoots {
    pub docker: PathBuf,
    /// Root's podman store.
    pub podman: PathBuf,
    /// Where rootless podman users' homes are found.
    pub passwd: PathBuf,
}

impl Default for StateRoots {
    fn default() -> Self {
        StateRoots {
            docker: "/var/lib/docker/containers".into(),
            podman: "/var/lib/containers/storage/overlay-containers/containers.json".into(),
            passwd: "/etc/passwd".into(),
        }
    }
}

/// A rootless podman user's store, under their home.
const ROOTLESS_PODMAN_STORE: &str = ".local/share/containers/storage/overlay-containers/containers.json";

/// The uid of the user manager a cgroup path runs under (`user@UID.service`):
/// the owner of a rootless container.
fn user_manager_uid(cgroup: &str) -> Option<u32> {
    cgroup
        .split('/')
        .find_map(|part| part.strip_prefix("user@")?.strip_suffix(".service")?.parse().ok())
}

/// The home directory `passwd` (the file) gives `uid`: local users only,
/// NSS (LDAP, ...) is not asked.
fn home_of(passwd: &Path, uid: u32) -> Option<PathBuf> {
    let text = fs::read_to_string(passwd).ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[2].parse() == Ok(uid) && f[5].starts_with('/')).then(|| PathBuf::from(f[5]))
    })
}

/// The name docker's state gives a container (`Name`, without its `/`).
pub fn docker_name(root: &Path, id: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(rename = "Name")]
        name: String,
    }
    let text = fs::read(root.join(id).join("config.v2.json")).ok()?;
    let c: Config = serde_json::from_slice(&text).ok()?;
    let name = c.name.trim_start_matches('/');
    (!name.is_empty()).then(|| name.to_owned())
}

/// The first name podman's store gives a container.
pub fn podman_name(containers_json: &Path, id: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        id: String,
        #[serde(default)]
        names: Vec<String>,
    }
    let text = fs::read(containers_json).ok()?;
    let all: Vec<Entry> = serde_json::from_slice(&text).ok()?;
    all.into_iter()
        .find(|e| e.id == id)
        .and_then(|e| e.names.into_iter().next())
}

/// Identities by cgroup path, with container names looked up once: one
/// per cgroup, shared by all owners in it (bounded).
pub struct Identities {
    roots: StateRoots,
    by_path: Generational<String, Arc<Identity>>,
    by_id: Generational<u64, Arc<Identity>>,
    cgroup2: Option<PathBuf>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("paths", &self.by_path.len())
            .finish()
    }
}

const IDENTITIES_HALF: usize = 1 << 12;

impl Identities {
    pub fn new(roots: StateRoots, cgroup2: Option<PathBuf>) -> Self {
        Identities {
            roots,
            by_path: Generational::new(IDENTITIES_HALF),
            by_id: Generational::new(IDENTITIES_HALF),
            cgroup2,
        }
    }

    /// This host's: runtime state in its usual places, the cgroup2 mount
    /// from /proc/self/mounts.
    pub fn host() -> Self {
        Identities::new(StateRoots::default(), crate::ebpf::cgroup2_root())
    }

    /// The identity of a cgroup path.
    pub fn of_path(&mut self, cgroup: &str) -> Arc<Identity> {
        if let Some(i) = self.by_path.get(&cgroup.to_owned()) {
            return i.clone();
        }
        let mut id = Identity::parse(cgroup);
        if let Some(c) = id.container.as_mut() {
            c.name = c.name.take().or_else(|| match c.runtime {
                "docker" => docker_name(&self.roots.docker, &c.id),
                "podman" => match user_manager_uid(cgroup) {
                    Some(uid) => home_of(&self.roots.passwd, uid)
                        .and_then(|home| podman_name(&home.join(ROOTLESS_PODMAN_STORE), &c.id)),
                    None => podman_name(&self.roots.podman, &c.id),
                },
                _ => None,
            });
        }
        let id = Arc::new(id);
        self.by_path.insert(cgroup.to_owned(), id.clone());
        id
    }

    /// The identity of the process `pid` whose socket event named cgroup
    /// `cgroup_id` (0: unknown): /proc/PID/cgroup while the process lives
    /// and is still in that cgroup, else the cgroup2 directory with that
    /// inode (the process exited, or moved).
    pub fn of_event(&mut self, pid: u32, cgroup_id: u64, proc_root: &Path) -> Option<Arc<Identity>> {
        if cgroup_id != 0 {
            if let Some(i) = self.by_id.get(&cgroup_id) {
                return Some(i.clone());
            }
        }
        let from_proc = fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup"))
            .ok()
            .and_then(|t| unified_path(&t).map(str::to_owned));
        let path = match (&self.cgroup2, from_proc) {
            (_, Some(p)) if cgroup_id == 0 => Some(p),
            (Some(root), Some(p)) if inode_of(root, &p) == Some(cgroup_id) => Some(p),
            (Some(root), _) => find_cgroup(root, cgroup_id),
            (None, p) => p,
        }?;
        let id = self.of_path(&path);
        if cgroup_id != 0 {
            self.by_id.insert(cgroup_id, id.clone());
        }
        Some(id)
    }
}

fn inode_of(root: &Path, cgroup: &str) -> Option<u64> {
    fs::metadata(root.join(cgroup.trim_start_matches('/')))
        .ok()
        .map(|m| m.ino())
}

/// The path of the cgroup whose directory has inode `id` (a walk of the
/// hierarchy: only when the process is gone, once per cgroup).
fn find_cgroup(root: &Path, id: u64) -> Option<String> {
    if fs::metadata(root).ok()?.ino() == id {
        return Some("/".into());
    }
    let mut stack = vec![root.to_path_buf()];
    let mut visited = 0usize;
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).ok()?.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if !ft.is_dir() {
                continue;
            }
            visited += 1;
            if visited > 100_000 {
                return None;
            }
            let p = e.path();
            if e.metadata().is_ok_and(|m| m.ino() == id) {
                let rel = p.strip_prefix(root).ok()?;
                return Some(format!("/{}", rel.display()));
            }
            stack.push(p);
        }
    }
    None
}

/// The identities the /proc scans share (the scans run on one thread, but
/// the index builder is a free function).
pub fn shared() -> &'static Mutex<Identities> {
    static SHARED: OnceLock<Mutex<Identities>> = OnceLock::new();
    SHARED.get_or_init(|| Mutex::new(Identities::host()))
}

/// Identity of a cgroup path through [`shared`].
pub fn of_path(cgroup: &str) -> Arc<Identity> {
    shared().lock().unwrap_or_else(|e| e.into_inner()).of_path(cgroup)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a6c1e9b8d7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f";

    fn ctr(path: &str) -> Option<(&'static str, String)> {
        Identity::parse(path).container.map(|c| (c.runtime, c.id))
    }

    #[test]
    fn docker_systemd_and_cgroupfs_drivers() {
        let p = format!("/system.slice/docker-{ID}.scope");
        let i = Identity::parse(&p);
        assert_eq!(
            i.container.as_ref().map(|c| (c.runtime, c.id.as_str())),
            Some(("docker", ID))
        );
        assert_eq!(i.unit.as_deref(), Some(format!("docker-{ID}.scope").as_str()));
        assert_eq!(i.app, None);
        assert_eq!(ctr(&format!("/docker/{ID}")), Some(("docker", ID.into())));
        // A docker daemon's own service is not a container.
        assert_eq!(ctr("/system.slice/docker.service"), None);
        // Not 64 hex digits: not an id.
        assert_eq!(ctr("/system.slice/docker-abc.scope"), None);
        assert_eq!(ctr(&format!("/docker/{}", &ID[..63])), None);
    }

    #[test]
    fn podman_root_rootless_cgroupfs_and_conmon() {
        assert_eq!(
            ctr(&format!("/machine.slice/libpod-{ID}.scope")),
            Some(("podman", ID.into()))
        );
        let rootless =
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container");
        let i = Identity::parse(&rootless);
        assert_eq!(i.container.map(|c| c.runtime), Some("podman"));
        assert_eq!(i.unit, Some(format!("libpod-{ID}.scope")));
        assert_eq!(
            ctr(&format!("/libpod_parent/libpod-{ID}")),
            Some(("podman", ID.into()))
        );
        assert_eq!(ctr(&format!("/machine.slice/libpod-conmon-{ID}.scope")), None);
    }

    #[test]
    fn kubernetes_runtimes() {
        let pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b3c4d_5e6f.slice";
        assert_eq!(
            ctr(&format!("{pod}/cri-containerd-{ID}.scope")),
            Some(("containerd", ID.into()))
        );
        assert_eq!(ctr(&format!("{pod}/crio-{ID}.scope")), Some(("cri-o", ID.into())));
        assert_eq!(ctr(&format!("{pod}/crio-conmon-{ID}.scope")), None);
        assert_eq!(
            ctr(&format!("/kubepods/besteffort/pod1a2b3c4d-5e6f/{ID}")),
            Some(("kubepods", ID.into()))
        );
        // 64 hex digits elsewhere are not a container.
        assert_eq!(ctr(&format!("/system.slice/{ID}")), None);
    }

    #[test]
    fn lxc_and_nspawn_are_named_by_their_path() {
        let c = Identity::parse("/lxc.payload.web1/system.slice/nginx.service").container;
        assert_eq!(
            c.map(|c| (c.runtime, c.id, c.name)),
            Some(("lxc", "web1".into(), Some("web1".into())))
        );
        assert_eq!(ctr("/lxc/db2/init.scope"), Some(("lxc", "db2".into())));
        let i = Identity::parse(r"/machine.slice/machine-my\x2dbox.scope/payload/system.slice/sshd.service");
        assert_eq!(i.container.and_then(|c| c.name).as_deref(), Some("my-box"));
        // Inside the container, the innermost unit.
        assert_eq!(i.unit.as_deref(), Some("sshd.service"));
    }

    #[test]
    fn units_services_and_scopes() {
        let i = Identity::parse("/system.slice/nginx.service");
        assert_eq!(
            (i.unit.as_deref(), i.container, i.app),
            (Some("nginx.service"), None, None)
        );
        assert_eq!(
            Identity::parse("/user.slice/user-1000.slice/session-3.scope")
                .unit
                .as_deref(),
            Some("session-3.scope")
        );
        assert_eq!(
            Identity::parse("/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service")
                .unit
                .as_deref(),
            Some("foo.service")
        );
        // Slices are not units of their own here; the root has nothing.
        assert_eq!(Identity::parse("/user.slice").unit, None);
        assert_eq!(
            Identity::parse("/"),
            Identity {
                cgroup: "/".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn flatpak_and_snap_apps() {
        let f = "/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.mozilla.firefox-31842.scope";
        let i = Identity::parse(f);
        assert_eq!(i.app.as_deref(), Some("org.mozilla.firefox"));
        assert_eq!(i.container, None);
        assert_eq!(i.label(), Some("org.mozilla.firefox"));
        let dashed = r"/app.slice/app-flatpak-com.example.My\x2dApp-7.scope";
        assert_eq!(Identity::parse(dashed).app.as_deref(), Some("com.example.My-App"));
        let s = "/user.slice/user-1000.slice/user@1000.service/app.slice/snap.firefox.firefox-7f3c2a1e-4b5d-4e6f-8a9b-0c1d2e3f4a5b.scope";
        assert_eq!(Identity::parse(s).app.as_deref(), Some("snap.firefox.firefox"));
        // No instance number / no app part: not an app.
        assert_eq!(Identity::parse("/app.slice/app-flatpak-org.x.scope").app, None);
        assert_eq!(Identity::parse("/snap.scope").app, None);
    }

    #[test]
    fn proc_cgroup_and_netns_links() {
        let hybrid = "12:pids:/user.slice\n1:name=systemd:/user.slice\n0::/system.slice/cron.service\n";
        assert_eq!(unified_path(hybrid), Some("/system.slice/cron.service"));
        assert_eq!(unified_path("0::/\n"), Some("/"));
        assert_eq!(unified_path("1:cpu:/x\n"), None);
        assert_eq!(netns_inode("net:[4026531840]"), Some(4_026_531_840));
        assert_eq!(netns_inode("mnt:[4026531840]"), None);
    }

    #[test]
    fn labels_prefer_container_name_then_short_id() {
        let mut c = Container {
            runtime: "docker",
            id: ID.into(),
            name: None,
        };
        assert_eq!(c.label(), &ID[..12]);
        c.name = Some("web".into());
        assert_eq!(c.label(), "web");
    }

    #[test]
    fn names_come_from_docker_and_podman_state() {
        let dir = std::env::temp_dir().join(format!("ft-ident-{}", std::process::id()));
        let docker = dir.join("docker");
        fs::create_dir_all(docker.join(ID)).expect("mkdir");
        fs::write(
            docker.join(ID).join("config.v2.json"),
            r#"{"ID":"x","Name":"/web-1","State":{}}"#,
        )
        .expect("write");
        let podman = dir.join("containers.json");
        fs::write(
            &podman,
            format!(r#"[{{"id":"{ID}","names":["db"],"image":"i"}}]"#),
        )
        .expect("write");
        // A rootless podman user (uid 1234) and their own store.
        let home = dir.join("home-u");
        let store = home.join(ROOTLESS_PODMAN_STORE);
        fs::create_dir_all(store.parent().expect("dir")).expect("mkdir");
        fs::write(&store, format!(r#"[{{"id":"{ID}","names":["mine"]}}]"#)).expect("write");
        let passwd = dir.join("passwd");
        fs::write(
            &passwd,
            format!(
                "root:x:0:0:root:/root:/bin/sh\nu:x:1234:1234::{}:/bin/sh\n",
                home.display()
            ),
        )
        .expect("write");
        let mut ids = Identities::new(
            StateRoots {
                docker: docker.clone(),
                podman: podman.clone(),
                passwd: passwd.clone(),
            },
            None,
        );
        let d = ids.of_path(&format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(
            d.container.as_ref().and_then(|c| c.name.as_deref()),
            Some("web-1")
        );
        let p = ids.of_path(&format!("/machine.slice/libpod-{ID}.scope"));
        assert_eq!(p.container.as_ref().and_then(|c| c.name.as_deref()), Some("db"));
        let rootless = ids.of_path(&format!(
            "/user.slice/user-1234.slice/user@1234.service/user.slice/libpod-{ID}.scope"
        ));
        assert_eq!(
            rootless.container.as_ref().and_then(|c| c.name.as_deref()),
            Some("mine")
        );
        // A user /etc/passwd does not know: the id alone.
        let unknown = ids.of_path(&format!(
            "/user.slice/user-999.slice/user@999.service/user.slice/libpod-{ID}.scope"
        ));
        assert_eq!(unknown.container.as_ref().map(|c| c.name.is_none()), Some(true));
        // Unknown or unreadable state: the id alone.
        fs::write(&podman, "not json").expect("write");
        let mut fresh = Identities::new(
            StateRoots {
                docker,
                podman,
                passwd,
            },
            None,
        );
        let p = fresh.of_path(&format!("/machine.slice/libpod-{ID}.scope"));
        assert_eq!(p.container.as_ref().map(|c| c.name.is_none()), Some(true));
        let _ = fs::remove_dir_all(&dir);
    }
}
