//! Issue 15 on the screen: the CONTAINER/UNIT column (`c`), the `ctr:`,
//! `unit:` and `app:` filter terms, and `g` cycling the Processes rows
//! per program, pid, container/unit.

use std::sync::Arc;

use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::app::{App, Tab};
use super::filter::{Filter, Term};
use super::fixture::{self, app, now};
use super::keys::Action;
use super::render;
use super::rows::ProcKey;
use crate::attribution::identity::Identity;
use crate::attribution::How;
use crate::flow::model::{proto, Owner};

const ID: &str = "4c01db0b339c6a0b3bde4a9f2e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d";

fn screen(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| render::draw(f, app, now())).expect("draw");
    t.backend().to_string()
}

fn owned(pid: u32, comm: &str, cgroup: Option<&str>) -> Arc<Owner> {
    let mut identity = cgroup.map(Identity::parse);
    if let Some(c) = identity.as_mut().and_then(|i| i.container.as_mut()) {
        c.name = Some("web".into());
    }
    Arc::new(Owner {
        identity: identity.map(Arc::new),
        ..(*fixture::owner(pid, comm, &format!("/usr/bin/{comm}"), How::Ebpf)).clone()
    })
}

/// Two nginx processes in one docker container, a flatpak app, a
/// service, and a plain process.
fn identity_app() -> App {
    let docker = format!("/system.slice/docker-{ID}.scope");
    let flows = vec![
        (1, owned(101, "nginx", Some(&docker))),
        (2, owned(102, "nginx", Some(&docker))),
        (
            3,
            owned(
                200,
                "firefox",
                Some("/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.mozilla.firefox-31842.scope"),
            ),
        ),
        (4, owned(300, "sshd", Some("/system.slice/ssh.service"))),
        (5, owned(400, "curl", None)),
    ];
    let specs = flows
        .into_iter()
        .map(|(id, o)| {
            let f = fixture::flow(
                id,
                proto::TCP,
                "192.0.2.1",
                Some(40000 + id as u16),
                "192.0.2.7",
                Some(443),
            );
            (f, (0, 0), (100 * u64::from(id), 100), Some(o))
        })
        .collect();
    let mut a = app(160, 20);
    a.on_snapshot(fixture::snapshot(specs));
    a
}

#[test]
fn c_shows_the_container_unit_column() {
    let mut a = identity_app();
    let s = screen(&a, 160, 20);
    assert!(!s.contains("CONTAINER/UNIT"), "hidden by default: {s}");
    a.apply(Action::ToggleIdentity);
    let s = screen(&a, 160, 20);
    assert!(s.contains("CONTAINER/UNIT"), "{s}");
    assert!(s.contains(" web "), "the container's name: {s}");
    assert!(s.contains("org.mozilla.firefox"), "the app id: {s}");
    assert!(s.contains("ssh.service"), "the unit: {s}");
    a.apply(Action::ToggleIdentity);
    assert!(!screen(&a, 160, 20).contains("CONTAINER/UNIT"));
}

#[test]
fn ctr_unit_and_app_terms_filter_by_identity() {
    assert_eq!(
        Filter::parse("ctr:Web unit:SSH app:mozilla")
            .expect("parses")
            .terms,
        vec![
            Term::Container("web".into()),
            Term::Unit("ssh".into()),
            Term::App("mozilla".into())
        ]
    );
    let mut a = identity_app();
    let rows = |a: &mut App, text: &str| {
        a.filter = Filter::parse(text).expect("parses");
        a.derive();
        let mut pids: Vec<u32> = (0..a.len())
            .filter_map(|i| a.flow_at(i)?.owner.as_ref().map(|o| o.pid))
            .collect();
        pids.sort_unstable();
        pids
    };
    assert_eq!(rows(&mut a, "ctr:web"), vec![101, 102]);
    assert_eq!(
        rows(&mut a, &format!("ctr:{}", &ID[..12])),
        vec![101, 102],
        "by id"
    );
    assert_eq!(rows(&mut a, "ctr:docker"), vec![101, 102], "by runtime");
    assert_eq!(rows(&mut a, "app:firefox"), vec![200]);
    assert_eq!(rows(&mut a, "unit:ssh.service"), vec![300]);
    assert_eq!(rows(&mut a, "unit:docker-"), vec![101, 102]);
    assert_eq!(rows(&mut a, "ctr:nothing"), Vec::<u32>::new());
    assert_eq!(
        rows(&mut a, "app:curl"),
        Vec::<u32>::new(),
        "a plain process has none"
    );
}

#[test]
fn g_cycles_processes_per_program_pid_and_container_unit() {
    let mut a = identity_app();
    a.tab = Tab::Processes;
    a.derive();
    let keys = |a: &App| {
        let mut k: Vec<ProcKey> = a.proc_rows.iter().map(|r| r.key.clone()).collect();
        k.sort_by_key(|k| format!("{k:?}"));
        k
    };
    // Per program: the two nginx processes share a row.
    assert_eq!(a.proc_rows.len(), 4, "{:?}", keys(&a));
    a.apply(Action::Group);
    assert_eq!(a.proc_rows.len(), 5, "per pid: {:?}", keys(&a));
    a.apply(Action::Group);
    let k = keys(&a);
    assert!(k.contains(&ProcKey::Identity("web".into())), "{k:?}");
    assert!(
        k.contains(&ProcKey::Identity("org.mozilla.firefox".into())),
        "{k:?}"
    );
    assert!(k.contains(&ProcKey::Identity("ssh.service".into())), "{k:?}");
    // The plain process keeps its program row.
    assert!(
        k.iter()
            .any(|k| matches!(k, ProcKey::Program(p, _) if p == "/usr/bin/curl")),
        "{k:?}"
    );
    assert!(screen(&a, 160, 20).contains("per container/unit"));
    a.apply(Action::Group);
    assert_eq!(a.proc_rows.len(), 4, "back to per program");
}
