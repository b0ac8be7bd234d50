//! The screen's tests: actions on the app state, and whole frames drawn on
//! ratatui's TestBackend compared with reviewed insta snapshots.

use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use ratatui::Terminal;

use super::app::{App, Tab};
use super::fixture::{self, app, app_with, now};
use super::keys::{self, Action, Mode};
use super::procinfo::ProcInfo;
use super::render;
use super::sort::{Column, SortSpec};
use crate::flow::model::proto;
use crate::flow::Selection;

fn draw(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| render::draw(f, app, now())).expect("draw");
    t
}

fn screen(app: &App, w: u16, h: u16) -> String {
    draw(app, w, h).backend().to_string()
}

/// Conntrack ids of the Flows rows, in order.
fn ids(app: &App) -> Vec<u32> {
    (0..app.len())
        .map(|i| app.flow_at(i).expect("row").flow.id)
        .collect()
}

fn sorted(app: &mut App, column: Column, desc: bool) -> Vec<u32> {
    app.sort = SortSpec { column, desc };
    app.derive();
    ids(app)
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn type_filter(app: &mut App, text: &str) {
    app.apply(Action::EditFilter);
    for c in text.chars() {
        app.apply(Action::FilterChar(c));
    }
    app.apply(Action::FilterDone);
}

// ---------------------------------------------------------------- keys

#[test]
fn keys_of_the_original_map_to_their_actions() {
    let n = |c| keys::action(key(KeyCode::Char(c)), Mode::Normal);
    assert_eq!(n('q'), Some(Action::Quit));
    for c in ['k', 'u'] {
        assert_eq!(n(c), Some(Action::Up));
    }
    for c in ['j', 'd'] {
        assert_eq!(n(c), Some(Action::Down));
    }
    // The original's help swaps h and l; ours scrolls left with h.
    assert_eq!(n('h'), Some(Action::Left));
    assert_eq!(n('l'), Some(Action::Right));
    assert_eq!(n('b'), Some(Action::ToggleBits));
    assert_eq!(n('a'), Some(Action::ToggleActive));
    assert_eq!(n('s'), Some(Action::ToggleSource));
    for c in ['T', 'U', 'D', 'I', 'S'] {
        assert_eq!(n(c), Some(Action::ToggleProto(c)));
    }
    assert_eq!(n('?'), Some(Action::Help));
    assert_eq!(n('/'), Some(Action::EditFilter));
    assert_eq!(n(' '), Some(Action::Pause));
    assert_eq!(n('<'), Some(Action::SortPrev));
    assert_eq!(n('>'), Some(Action::SortNext));
    assert_eq!(n('r'), Some(Action::SortReverse));
    let k = |c| keys::action(key(c), Mode::Normal);
    assert_eq!(k(KeyCode::Up), Some(Action::Up));
    assert_eq!(k(KeyCode::Down), Some(Action::Down));
    assert_eq!(k(KeyCode::Left), Some(Action::Left));
    assert_eq!(k(KeyCode::Right), Some(Action::Right));
    assert_eq!(k(KeyCode::PageUp), Some(Action::PageUp));
    assert_eq!(k(KeyCode::PageDown), Some(Action::PageDown));
    assert_eq!(k(KeyCode::Home), Some(Action::Home));
    assert_eq!(k(KeyCode::End), Some(Action::End));
    assert_eq!(k(KeyCode::Tab), Some(Action::NextTab));
    assert_eq!(k(KeyCode::BackTab), Some(Action::PrevTab));
    assert_eq!(k(KeyCode::Enter), Some(Action::Open));
    assert_eq!(k(KeyCode::Esc), Some(Action::Back));
    assert_eq!(k(KeyCode::F(9)), None);
}

#[test]
fn ctrl_c_quits_in_every_mode_and_q_everywhere_but_the_filter() {
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    for mode in [
        Mode::Normal,
        Mode::EditingFilter,
        Mode::Help,
        Mode::Detail,
        Mode::Names,
    ] {
        assert_eq!(keys::action(ctrl_c, mode), Some(Action::Quit), "{mode:?}");
    }
    let q = key(KeyCode::Char('q'));
    assert_eq!(keys::action(q, Mode::Help), Some(Action::Quit));
    assert_eq!(keys::action(q, Mode::Detail), Some(Action::Quit));
    // Typing a filter takes every letter, q and the sort keys included.
    assert_eq!(
        keys::action(q, Mode::EditingFilter),
        Some(Action::FilterChar('q'))
    );
    assert_eq!(
        keys::action(key(KeyCode::Char('T')), Mode::EditingFilter),
        Some(Action::FilterChar('T'))
    );
    assert_eq!(
        keys::action(key(KeyCode::Enter), Mode::EditingFilter),
        Some(Action::FilterDone)
    );
    assert_eq!(
        keys::action(key(KeyCode::Esc), Mode::EditingFilter),
        Some(Action::Back)
    );
    assert_eq!(
        keys::action(key(KeyCode::Backspace), Mode::EditingFilter),
        Some(Action::FilterBackspace)
    );
    // Any key closes the help; Esc or Enter closes the detail view.
    assert_eq!(
        keys::action(key(KeyCode::Char('x')), Mode::Help),
        Some(Action::Back)
    );
    assert_eq!(keys::action(key(KeyCode::Esc), Mode::Detail), Some(Action::Back));
    assert_eq!(keys::action(key(KeyCode::Char('x')), Mode::Detail), None);
}

#[test]
fn key_releases_are_ignored() {
    let mut k = key(KeyCode::Char('q'));
    k.kind = crossterm::event::KeyEventKind::Release;
    assert_eq!(keys::action(k, Mode::Normal), None);
}

#[test]
fn mouse_wheel_moves_and_click_selects() {
    use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
    let ev = |kind| MouseEvent {
        kind,
        column: 3,
        row: 5,
        modifiers: KeyModifiers::NONE,
    };
    assert_eq!(
        keys::mouse_action(ev(MouseEventKind::ScrollDown), Mode::Normal),
        Some(Action::Down)
    );
    assert_eq!(
        keys::mouse_action(ev(MouseEventKind::ScrollUp), Mode::Normal),
        Some(Action::Up)
    );
    assert_eq!(
        keys::mouse_action(ev(MouseEventKind::Down(MouseButton::Left)), Mode::Normal),
        Some(Action::Click(5))
    );
    let mut a = app(120, 30);
    a.apply(Action::Click(5)); // header 3 rows: the third flow row
    assert_eq!(a.cursor, 2);
    a.apply(Action::Click(1)); // the tab line selects nothing
    assert_eq!(a.cursor, 2);
}

// ---------------------------------------------------------------- sort

#[test]
fn default_sort_is_bytes_most_first() {
    let a = app(120, 30);
    assert_eq!(a.sort, SortSpec::default());
    // 1: 3.5M, 2: 1.0M, 3: 58K, 8: 1.8K, 4: 560, 5: 336, 7: 200, 6: none.
    assert_eq!(ids(&a), vec![1, 2, 3, 8, 4, 5, 7, 6]);
}

/// Each column, both directions, on the fixture (see fixture.rs): flows
/// without a value come first ascending and last descending; equal keys
/// stay in id order in both directions.
#[test]
fn every_column_sorts_both_ways_with_a_stable_tiebreak() {
    let mut a = app(120, 30);
    #[rustfmt::skip]
    let cases: [(Column, [u32; 8], [u32; 8]); 11] = [
        // none (5, 8), curl, evil, firefox (2 and 6), sshd, systemd-resolved
        (Column::Process, [5, 8, 1, 7, 2, 6, 3, 4], [4, 3, 2, 6, 7, 1, 5, 8]),
        (Column::Pid, [5, 8, 4, 7, 3, 2, 6, 1], [1, 2, 6, 3, 7, 4, 5, 8]),
        // tcp 6 < udp 17 < icmpv6 58 < sctp 132
        (Column::Proto, [1, 2, 3, 6, 7, 4, 5, 8], [8, 5, 4, 1, 2, 3, 6, 7]),
        (Column::State, [4, 5, 1, 2, 3, 7, 8, 6], [6, 1, 2, 3, 7, 8, 4, 5]),
        // Youngest first ascending; 6 has no start time.
        (Column::Time, [6, 8, 7, 5, 4, 3, 2, 1], [1, 2, 3, 4, 5, 7, 8, 6]),
        (Column::Source, [1, 2, 4, 6, 7, 8, 3, 5], [5, 3, 1, 2, 4, 6, 7, 8]),
        (Column::Address, [3, 4, 1, 6, 8, 2, 7, 5], [5, 7, 2, 8, 1, 6, 4, 3]),
        (Column::Port, [5, 3, 4, 6, 1, 2, 8, 7], [7, 8, 1, 2, 6, 4, 3, 5]),
        // none, "DE, Berlin", "NL, ...", "private", "US, ..." (case-insensitive)
        (Column::Geo, [5, 8, 1, 6, 7, 3, 4, 2], [2, 3, 4, 7, 1, 6, 5, 8]),
        (Column::Bytes, [6, 7, 5, 4, 8, 3, 2, 1], [1, 2, 3, 8, 4, 5, 7, 6]),
        // 3 and 7 moved nothing: rate 0, a tie.
        (Column::Rate, [6, 3, 7, 5, 4, 8, 2, 1], [1, 2, 8, 4, 5, 3, 7, 6]),
    ];
    for (col, asc, desc) in cases {
        assert_eq!(sorted(&mut a, col, false), asc, "{col:?} ascending");
        assert_eq!(sorted(&mut a, col, true), desc, "{col:?} descending");
        // A new snapshot with the same data keeps the order.
        a.on_snapshot(fixture::flows());
        assert_eq!(ids(&a), desc, "{col:?} after a refresh");
    }
}

#[test]
fn descending_keeps_ties_in_id_order() {
    let mut a = app(120, 30);
    // Flows 3 and 7 and 6 have no traffic in the window: rate 0 / missing.
    let desc = sorted(&mut a, Column::Process, true);
    // firefox owns 2 and 6: equal key, id order kept in both directions.
    let at = |id| desc.iter().position(|i| *i == id).expect("present");
    assert!(at(2) < at(6));
    let asc = sorted(&mut a, Column::Process, false);
    let at = |id| asc.iter().position(|i| *i == id).expect("present");
    assert!(at(2) < at(6));
}

#[test]
fn sort_keys_step_through_visible_columns_and_reverse() {
    let mut a = app(120, 30);
    a.apply(Action::SortNext); // Bytes -> Rate
    assert_eq!(a.sort.column, Column::Rate);
    a.apply(Action::SortNext); // wraps to Process, ascending
    assert_eq!(
        a.sort,
        SortSpec {
            column: Column::Process,
            desc: false
        }
    );
    a.apply(Action::SortReverse);
    assert!(a.sort.desc);
    // Source is skipped unless shown.
    a.sort = SortSpec {
        column: Column::Time,
        desc: true,
    };
    a.apply(Action::SortNext);
    assert_eq!(a.sort.column, Column::Address);
    a.apply(Action::ToggleSource);
    a.sort = SortSpec {
        column: Column::Time,
        desc: true,
    };
    a.apply(Action::SortNext);
    assert_eq!(a.sort.column, Column::Source);
}

// ---------------------------------------------------------------- filter

#[test]
fn filter_terms_parse() {
    use super::filter::{Filter, FilterError, PortTerm, Term};
    let f = Filter::parse("pid:42 comm:Curl port:443 port:https host:example cc:de state:est proto:udp x")
        .unwrap();
    assert_eq!(
        f.terms,
        vec![
            Term::Pid(42),
            Term::Comm("curl".into()),
            Term::Port(PortTerm::Number(443)),
            Term::Port(PortTerm::Service("https".into())),
            Term::Host("example".into()),
            Term::Country("de".into()),
            Term::State("est".into()),
            Term::Proto(proto::UDP),
            Term::Text("x".into()),
        ]
    );
    // Only known prefixes are prefixes: an IPv6 address is text.
    assert_eq!(
        Filter::parse("2001:db8::2").unwrap().terms,
        vec![Term::Text("2001:db8::2".into())]
    );
    assert_eq!(Filter::parse("proto:132").unwrap().terms, vec![Term::Proto(132)]);
    assert_eq!(Filter::parse("pid:x"), Err(FilterError::Pid("x".into())));
    assert_eq!(
        Filter::parse("proto:nope"),
        Err(FilterError::Proto("nope".into()))
    );
    assert_eq!(Filter::parse("cc:"), Err(FilterError::Empty("cc")));
    assert!(Filter::parse("  ").unwrap().is_empty());
}

fn filtered(text: &str) -> Vec<u32> {
    let mut a = app(120, 30);
    type_filter(&mut a, text);
    assert_eq!(a.filter_error, None, "{text}");
    let mut v = ids(&a);
    v.sort_unstable();
    v
}

#[test]
fn filter_terms_match_what_they_name() {
    assert_eq!(filtered("pid:1000"), vec![2, 6]);
    assert_eq!(filtered("comm:SYSTEMD"), vec![4]);
    assert_eq!(filtered("port:22"), vec![3]);
    assert_eq!(filtered("port:https"), vec![1, 2]);
    assert_eq!(filtered("host:example.org"), vec![1, 6]);
    assert_eq!(filtered("host:203.0.113"), vec![2, 3, 7]);
    assert_eq!(filtered("cc:de"), vec![1, 6]);
    assert_eq!(filtered("cc:FR"), vec![3]);
    assert_eq!(filtered("state:time_wait"), vec![6]);
    assert_eq!(filtered("proto:icmpv6"), vec![5]);
    assert_eq!(filtered("proto:sctp"), vec![8]);
    // Free text: process, address, name, service, city, state.
    assert_eq!(filtered("firefox"), vec![2, 6]);
    assert_eq!(filtered("2001:db8::2"), vec![5]);
    assert_eq!(filtered("cdn"), vec![2]);
    assert_eq!(filtered("domain"), vec![4]);
    assert_eq!(filtered("berlin"), vec![1, 6]);
    assert_eq!(filtered("sctp"), vec![8]);
    assert_eq!(filtered("4242"), vec![1]);
    // Every term must match.
    assert_eq!(filtered("firefox port:80"), vec![6]);
    assert_eq!(filtered("nothing-matches-this"), Vec::<u32>::new());
}

#[test]
fn esc_clears_the_filter_and_a_bad_filter_keeps_the_last_good_one() {
    let mut a = app(120, 30);
    type_filter(&mut a, "pid:1000");
    assert_eq!(ids(&a).len(), 2);
    a.apply(Action::EditFilter);
    a.apply(Action::FilterChar('x')); // pid:1000x
    assert!(a.filter_error.is_some());
    assert_eq!(ids(&a).len(), 2);
    a.apply(Action::Back);
    assert!(a.filter_text.is_empty() && !a.editing_filter);
    assert_eq!(ids(&a).len(), 8);
}

// ---------------------------------------------------------------- selection

#[test]
fn paging_home_and_end_move_by_the_visible_rows() {
    let mut a = app(120, 14); // 10 table rows
    a.on_snapshot(fixture::many(35));
    assert_eq!(a.page(), 10);
    a.apply(Action::PageDown);
    assert_eq!((a.cursor, a.offset), (10, 1));
    a.apply(Action::PageDown);
    assert_eq!((a.cursor, a.offset), (20, 11));
    a.apply(Action::End);
    assert_eq!((a.cursor, a.offset), (34, 25));
    a.apply(Action::Down); // stays on the last row
    assert_eq!(a.cursor, 34);
    a.apply(Action::PageUp);
    assert_eq!((a.cursor, a.offset), (24, 24));
    a.apply(Action::Home);
    assert_eq!((a.cursor, a.offset), (0, 0));
    a.apply(Action::Up);
    assert_eq!(a.cursor, 0);
}

#[test]
fn the_selection_follows_its_flow_when_rows_move() {
    let mut a = app(120, 14);
    a.on_snapshot(fixture::many(20));
    // Bytes descending: flow 20 first. Select flow 17 (row 3).
    for _ in 0..3 {
        a.apply(Action::Down);
    }
    assert_eq!(a.flow_at(a.cursor).unwrap().flow.id, 17);
    // Flow 17 now has the most bytes: it moves to the top, the selection too.
    let mut next = fixture::many(20);
    let snap = Arc::get_mut(&mut next).expect("unique");
    let moved = fixture::snapshot(vec![(
        fixture::flow(17, proto::TCP, "192.0.2.1", Some(1017), "198.51.100.1", Some(443)),
        (99_999, 0),
        (99_999, 0),
        None,
    )]);
    let e17 = snap.flows.iter_mut().find(|e| e.flow.id == 17).unwrap();
    *e17 = moved.flows[0].clone();
    a.on_snapshot(next);
    assert_eq!(a.cursor, 0);
    assert_eq!(a.flow_at(a.cursor).unwrap().flow.id, 17);
    // When the selected flow goes away, the selection stays on its row.
    a.apply(Action::Down);
    a.apply(Action::Down); // flow 19
    let mut fewer = fixture::many(20);
    Arc::get_mut(&mut fewer)
        .unwrap()
        .flows
        .retain(|e| e.flow.id != 19);
    a.on_snapshot(fewer);
    assert_eq!(a.cursor, 2);
}

#[test]
fn large_tables_ordered_by_window_match_a_full_sort() {
    let snap = fixture::many(300);
    let full = {
        let mut a = app(120, 14);
        a.on_snapshot(Arc::clone(&snap));
        (0..a.len())
            .map(|i| a.flow_at(i).unwrap().flow.id)
            .collect::<Vec<_>>()
    };
    let mut a = app(120, 14);
    a.windowed_from = 50;
    a.on_snapshot(Arc::clone(&snap));
    let visible = |a: &App| {
        (a.offset..a.offset + a.page())
            .map(|i| a.flow_at(i).unwrap().flow.id)
            .collect::<Vec<_>>()
    };
    // Only the window is exact.
    assert!(a.flow_at(a.page() + 5).is_none());
    assert_eq!(visible(&a), full[0..10]);
    for _ in 0..7 {
        a.apply(Action::PageDown);
        assert_eq!(visible(&a), full[a.offset..a.offset + 10], "offset {}", a.offset);
    }
    a.apply(Action::End);
    assert_eq!(visible(&a), full[290..300]);
    a.apply(Action::SortReverse);
    let mut reversed = full.clone();
    reversed.reverse();
    // The selection (the last row, flow 1) follows its flow to the top.
    assert_eq!((a.cursor, a.offset), (0, 0));
    assert_eq!(visible(&a), reversed[0..10]);
    // The selection follows its flow out of the window: flow 150 (row 150
    // ascending) gets the most bytes and moves to the top.
    a.apply(Action::SortReverse);
    a.apply(Action::Home);
    for _ in 0..150 {
        a.apply(Action::Down);
    }
    let picked = a.flow_at(a.cursor).unwrap().flow.id;
    assert_eq!(picked, full[150]);
    let mut next = fixture::many(300);
    let moved = fixture::snapshot(vec![(
        fixture::flow(
            picked,
            proto::TCP,
            "192.0.2.1",
            Some(u16::try_from(1000 + picked).unwrap()),
            "198.51.100.1",
            Some(443),
        ),
        (9_999_999, 0),
        (9_999_999, 0),
        None,
    )]);
    let snap = Arc::get_mut(&mut next).expect("unique");
    *snap.flows.iter_mut().find(|e| e.flow.id == picked).unwrap() = moved.flows[0].clone();
    a.on_snapshot(next);
    assert_eq!((a.cursor, a.flow_at(0).unwrap().flow.id), (0, picked));
}

/// The screen's own path: rows built by the deriver (`run_job`), taken by
/// the screen unless a key changed what they depend on meanwhile.
#[test]
fn rows_from_the_deriver_are_taken_unless_stale() {
    use super::derive::run_job;
    let mut a = app(120, 30);
    let book = fixture::book();
    let services = crate::enrich::services::Services::builtin();
    let ctx = super::rows::RowCtx {
        book: &book,
        services: &services,
    };
    let mut buf = Vec::new();
    let job = a.snapshot_job(fixture::many(3)).expect("not paused");
    // Still the old rows until the deriver's come.
    assert_eq!(ids(&a).len(), 8);
    assert!(a.take_derived(run_job(job, ctx, &mut buf)).is_none());
    assert_eq!(ids(&a), vec![3, 2, 1]);
    // Every tab was built: switching shows the processes at once.
    a.apply(Action::NextTab);
    assert_eq!(a.proc_rows.len(), 1);
    a.apply(Action::PrevTab);
    // A key changes the sort while a job runs: its rows are refused and
    // the job is redone with the new sort.
    let job = a.snapshot_job(fixture::many(4)).expect("not paused");
    a.apply(Action::SortReverse);
    let redo = a.take_derived(run_job(job, ctx, &mut buf)).expect("redo");
    assert_eq!(ids(&a), vec![1, 2, 3], "the old snapshot, re-sorted by the key");
    assert!(a.take_derived(run_job(redo, ctx, &mut buf)).is_none());
    assert_eq!(ids(&a), vec![1, 2, 3, 4]);
    // Paused: neither jobs nor rows.
    a.apply(Action::Pause);
    assert!(a.snapshot_job(fixture::many(5)).is_none());
    assert_eq!(ids(&a), vec![1, 2, 3, 4]);
}

#[test]
fn pause_freezes_the_view_while_snapshots_keep_coming() {
    let mut a = app(120, 30);
    a.apply(Action::Pause);
    a.on_snapshot(fixture::many(3));
    assert_eq!(ids(&a).len(), 8, "the view is frozen");
    assert_eq!(a.live_flows(), 3);
    a.apply(Action::Pause);
    assert_eq!(ids(&a), vec![3, 2, 1]);
}

#[test]
fn protocol_keys_toggle_what_is_shown() {
    let mut a = app_with(
        {
            let mut s = Selection::none().with_proto(proto::TCP);
            s.ipv4 = true;
            s.ipv6 = true;
            s
        },
        120,
        30,
    );
    assert_eq!(a.counts.flows, 5);
    a.apply(Action::ToggleProto('U'));
    a.apply(Action::ToggleProto('I'));
    assert_eq!(a.counts.flows, 7);
    a.apply(Action::ToggleProto('T'));
    assert_eq!(ids(&a), vec![4, 5]);
    a.apply(Action::ToggleProto('S'));
    assert_eq!(ids(&a).len(), 3);
}

#[test]
fn active_only_hides_flows_without_traffic() {
    let mut a = app(120, 30);
    a.apply(Action::ToggleActive);
    let mut v = ids(&a);
    v.sort_unstable();
    assert_eq!(v, vec![1, 2, 4, 5, 8]);
}

#[test]
fn processes_count_what_they_send_and_receive() {
    let mut a = app(120, 30);
    a.apply(Action::NextTab);
    assert_eq!(a.tab, Tab::Processes);
    let sshd = a.proc_rows.iter().find(|r| r.pids == [800]).unwrap();
    // sshd accepted the connection: it sends the reply direction.
    assert_eq!((sshd.totals.sent, sshd.totals.received), (8_000, 50_000));
    let ff = a.proc_rows.iter().find(|r| r.pids == [1000]).unwrap();
    assert_eq!(ff.totals.flows, 2);
    assert_eq!((ff.totals.sent, ff.totals.received), (12_000, 1_000_000));
    // Enter lists the names the process asked for, Enter again its flows.
    let at = a.proc_rows.iter().position(|r| r.pids == [1000]).unwrap();
    while a.cursor < at {
        a.apply(Action::Down);
    }
    a.apply(Action::Open);
    assert_eq!(a.mode(), Mode::Names);
    assert_eq!(a.proc_names.as_ref().map(|p| p.pids.clone()), Some(vec![1000]));
    a.apply(Action::Open);
    assert_eq!(a.mode(), Mode::Normal);
    assert_eq!(a.tab, Tab::Flows);
    assert_eq!(a.filter_text, "pid:1000");
    assert_eq!(ids(&a), vec![2, 6]);
}

#[test]
fn countries_group_by_the_remote_end() {
    let mut a = app(120, 30);
    a.apply(Action::NextTab);
    a.apply(Action::NextTab);
    assert_eq!(a.tab, Tab::Countries);
    // The incoming ssh connection (from 203.0.113.9, FR, to a private
    // address here) counts under its source's country.
    let names: Vec<&str> = a.country_rows.iter().map(|r| r.country.as_str()).collect();
    assert_eq!(names, vec!["DE", "US", "FR", "??", "private", "NL"]);
    a.apply(Action::Open); // DE
    assert_eq!(a.tab, Tab::Flows);
    assert_eq!(ids(&a), vec![1, 6]);
    let mut a = app(120, 30);
    a.apply(Action::NextTab);
    a.apply(Action::NextTab);
    a.apply(Action::Down);
    a.apply(Action::Down);
    a.apply(Action::Open); // FR
    assert_eq!(ids(&a), vec![3]);
}

#[test]
fn detail_follows_its_flow_and_says_when_it_ended() {
    let mut a = app(120, 30);
    a.apply(Action::Open);
    assert_eq!(a.detail.as_ref().unwrap().entry.flow.id, 1);
    a.on_snapshot(fixture::many(2));
    assert!(a.detail.as_ref().unwrap().ended);
    a.apply(Action::Back);
    assert!(a.detail.is_none());
}

// ---------------------------------------------------------------- frames

#[test]
fn frame_flows() {
    insta::assert_snapshot!("flows_120x24", screen(&app(120, 24), 120, 24));
}

#[test]
fn frame_wide() {
    let mut a = app(200, 50);
    a.apply(Action::ToggleSource);
    insta::assert_snapshot!("flows_wide_source_200x50", screen(&a, 200, 50));
}

#[test]
fn frame_narrow_and_scrolled() {
    let mut a = app(60, 20);
    insta::assert_snapshot!("flows_narrow_60x20", screen(&a, 60, 20));
    a.apply(Action::Right);
    a.apply(Action::Right);
    a.apply(Action::Right);
    a.apply(Action::Right);
    a.apply(Action::Right);
    insta::assert_snapshot!("flows_narrow_scrolled_60x20", screen(&a, 60, 20));
}

#[test]
fn frame_too_small() {
    insta::assert_snapshot!("too_small_30x6", screen(&app(30, 6), 30, 6));
}

#[test]
fn frame_processes_and_countries() {
    let mut a = app(120, 20);
    a.apply(Action::NextTab);
    insta::assert_snapshot!("processes_120x20", screen(&a, 120, 20));
    a.apply(Action::NextTab);
    a.apply(Action::ToggleBits);
    insta::assert_snapshot!("countries_bits_120x20", screen(&a, 120, 20));
}

#[test]
fn frame_help() {
    let mut a = app(100, 30);
    a.apply(Action::Help);
    insta::assert_snapshot!("help_100x30", screen(&a, 100, 30));
}

#[test]
fn frame_detail() {
    let mut a = app(120, 30);
    a.apply(Action::Open);
    insta::assert_snapshot!("detail_120x30", screen(&a, 120, 30));
    // The NAT flow, whose process is still being read, then has exited.
    a.apply(Action::Back);
    type_filter(&mut a, "state:time_wait");
    a.apply(Action::Open);
    insta::assert_snapshot!("detail_nat_loading_120x30", screen(&a, 120, 30));
    a.procs.set(1000, ProcInfo::Exited);
    let s = screen(&a, 120, 30);
    assert!(s.contains("(exited)"), "{s}");
}

#[test]
fn frame_filter_editing_and_paused() {
    let mut a = app(120, 16);
    a.apply(Action::EditFilter);
    for c in "port:https".chars() {
        a.apply(Action::FilterChar(c));
    }
    insta::assert_snapshot!("filter_editing_120x16", screen(&a, 120, 16));
    a.apply(Action::FilterDone);
    a.apply(Action::Pause);
    a.on_snapshot(fixture::many(3));
    insta::assert_snapshot!("filter_paused_120x16", screen(&a, 120, 16));
}

#[test]
fn hostile_strings_are_drawn_escaped_and_long_ones_cut() {
    let mut a = app(120, 30);
    type_filter(&mut a, "pid:666");
    let s = screen(&a, 120, 30);
    assert!(!s.contains('\u{1b}') && !s.contains('\u{7}'), "{s}");
    assert!(s.contains("evil\\x1b[2Jname "), "{s}");
    assert!(s.contains("→ a-very-long-reverse-nam… "), "{s}");
    a.apply(Action::Open);
    let s = screen(&a, 120, 30);
    assert!(!s.contains('\u{1b}') && !s.contains('\u{202e}'), "{s}");
    assert!(s.contains("evil\\x1b[2Jname pid 666"), "{s}");
    assert!(s.contains("/tmp/\\u{202e}evil"), "{s}");
    assert!(s.contains("Amster\\x1b]0;pwned\\x07dam"), "{s}");
}

#[test]
fn no_color_draws_without_colours() {
    let mut a = app(120, 24);
    a.color = false;
    a.apply(Action::Help);
    let t = draw(&a, 120, 24);
    let buf = t.backend().buffer();
    assert!(buf
        .content()
        .iter()
        .all(|c| c.fg == Color::Reset && c.bg == Color::Reset));
    a.color = true;
    let t = draw(&a, 120, 24);
    assert!(t
        .backend()
        .buffer()
        .content()
        .iter()
        .any(|c| c.bg != Color::Reset));
}

#[test]
fn frames_are_drawn_at_any_size() {
    let a = app(120, 24);
    for (w, h) in [(1, 1), (39, 8), (40, 7), (40, 8), (41, 9), (500, 3), (500, 200)] {
        let s = screen(&a, w, h);
        let small = w < render::MIN_WIDTH || h < render::MIN_HEIGHT;
        assert_eq!(s.contains("too small"), small && w > 20, "{w}x{h}");
    }
}

#[test]
fn the_selected_row_is_drawn_reversed() {
    use ratatui::style::Modifier;
    let mut a = app(120, 24);
    a.apply(Action::Down);
    let t = draw(&a, 120, 24);
    let buf = t.backend().buffer();
    let reversed = |y: u16| buf[(5, y)].modifier.contains(Modifier::REVERSED);
    // Row 0 of the table is screen row 3: the second flow is row 4.
    assert!(!reversed(3) && reversed(4) && !reversed(5));
}

/// A snapshot whose flows are the very same chunks as the shown one's (an
/// idle table) needs no rows built: the screen takes it as it is, for the
/// header's counters; other chunks, or names that changed, do.
#[test]
fn an_unchanged_snapshot_keeps_its_rows() {
    use super::derive::run_job;
    let mut a = app(120, 30);
    let mut buf = Vec::new();
    let first = fixture::many(3);
    let job = a.snapshot_job(Arc::clone(&first)).expect("a job");
    let d = run_job(job, a.ctx(), &mut buf);
    assert!(a.take_derived(d).is_none());
    let mut same = (*first).clone();
    same.stats.dumps += 1;
    assert!(
        a.snapshot_job(Arc::new(same.clone())).is_none(),
        "no rows to build"
    );
    assert_eq!(a.shown().stats.dumps, first.stats.dumps + 1);
    assert_eq!(ids(&a), vec![3, 2, 1]);
    assert!(!a.take_garbage().is_empty(), "the replaced snapshot, to free");
    assert!(a.snapshot_job(fixture::many(3)).is_some(), "other chunks");
    let mut a = app(120, 30);
    let job = a.snapshot_job(Arc::clone(&first)).expect("a job");
    let d = run_job(job, a.ctx(), &mut buf);
    assert!(a.take_derived(d).is_none());
    a.ctx().book.update("198.51.100.1".parse().expect("ip"), |_| {});
    assert!(a.snapshot_job(Arc::new(same)).is_some(), "the book changed");
}

/// First rates measured into the table's readings change no entry chunk,
/// yet they order rows sorted by rate ("-" after "0B/s"): those rows are
/// rebuilt, others stand.
#[test]
fn first_rates_rebuild_rows_sorted_by_rate_only() {
    use super::derive::run_job;
    let mut buf = Vec::new();
    let first = fixture::many(3);
    let mut measured = (*first).clone();
    measured.first_rates += 1;
    let measured = Arc::new(measured);
    for (by_rate, rebuilt) in [(false, false), (true, true)] {
        let mut a = app(120, 30);
        if by_rate {
            a.sort.column = super::sort::Column::Rate;
        }
        let job = a.snapshot_job(Arc::clone(&first)).expect("a job");
        let d = run_job(job, a.ctx(), &mut buf);
        assert!(a.take_derived(d).is_none());
        assert_eq!(
            a.snapshot_job(Arc::clone(&measured)).is_some(),
            rebuilt,
            "by rate: {by_rate}"
        );
    }
}

// ------------------------------------------------- issue 12: rates, direction, processes

use std::time::{Duration, Instant};

use crate::attribution::{How, Owner};
use crate::flow::model::{Attributed, Counters, Direction, Flow};
use crate::flow::table::{Change, FlowTable, OwnerLookup, Snapshot, TableConfig};

/// Attribution that finds what it is given, per flow id.
struct Found(Vec<(u32, Attributed)>);

impl OwnerLookup for Found {
    fn attribute(&mut self, flow: &Flow, _: Instant) -> Attributed {
        self.0
            .iter()
            .find(|(id, _)| *id == flow.id)
            .map(|(_, a)| a.clone())
            .unwrap_or_default()
    }
}

fn python(pid: u32) -> Arc<Owner> {
    fixture::owner(pid, "python3", "/usr/bin/python3.12", How::Ebpf)
}

fn found(owner: Arc<Owner>, peer: Option<Arc<Owner>>, direction: Direction) -> Attributed {
    Attributed {
        owner: Some(owner),
        peer,
        direction: Some(direction),
    }
}

fn with_bytes(mut f: Flow, orig: u64, reply: u64) -> Flow {
    f.counters = Some(Counters {
        orig_packets: orig / 1000 + 1,
        orig_bytes: orig,
        reply_packets: reply / 1000 + 1,
        reply_bytes: reply,
    });
    f
}

/// The screen's snapshots of a table where, in one 1 s interval, three
/// `python3` programs pull data: pid 501 over a flow that stays (1 MB in
/// the interval), pid 502 over one that started and ended inside it
/// (2 MB, never read before its DESTROY), and pid 503 serves a local
/// client (pid 504, `curl`) 500 KB.
fn three_pythons() -> (Arc<Snapshot>, Arc<Snapshot>) {
    let t0 = Instant::now();
    let wall0 = fixture::now();
    let mut t = FlowTable::new(TableConfig::default(), t0).with_wall_clock(t0, wall0);
    let mut who = Found(vec![
        (1, found(python(501), None, Direction::Out)),
        (2, found(python(502), None, Direction::Out)),
        (
            3,
            found(
                fixture::owner(504, "curl", "/usr/bin/curl", How::Ebpf),
                Some(python(503)),
                Direction::Local,
            ),
        ),
    ]);
    let tcp = crate::flow::model::proto::TCP;
    let long = with_bytes(
        fixture::flow(1, tcp, "192.0.2.1", Some(40001), "198.51.100.7", Some(443)),
        1_000,
        1_000_000,
    );
    let g = t.begin_dump(false);
    t.apply_dump_entry(g, long.clone(), t0, &mut who, &mut |_, _| {});
    t.end_dump(g, &mut |_, _| {});
    t.collect_ended(t0);
    let at = |ms| t0 + Duration::from_millis(ms);
    let first = t.snapshot();
    // The interval: 1 MB more on the long flow, the short one comes and goes.
    let mut short = fixture::flow(2, tcp, "192.0.2.1", Some(40002), "203.0.113.5", Some(80));
    short.counters = None;
    short.start_ns = None;
    t.apply_event(Change::Seen, short.clone(), at(200), &mut who, &mut |_, _| {});
    t.apply_event(
        Change::Gone,
        with_bytes(short, 10_000, 2_000_000),
        at(700),
        &mut who,
        &mut |_, _| {},
    );
    let mut local = fixture::flow(3, tcp, "127.0.0.1", Some(50000), "127.0.0.1", Some(8000));
    local.counters = None;
    local.start_ns = None;
    t.apply_event(Change::Seen, local.clone(), at(300), &mut who, &mut |_, _| {});
    t.apply_refresh(with_bytes(local, 2_000, 500_000), at(1_000), &mut |_, _| {});
    t.apply_refresh(with_bytes(long, 2_000, 2_000_000), at(1_000), &mut |_, _| {});
    let second = t.snapshot_for_screen(&first, at(1_000));
    (first, second)
}

fn python_app() -> App {
    let mut a = app(140, 24);
    for (pid, cmd) in [
        (501, "python3 fetch.py --mirror a"),
        (502, "python3 sync.py"),
        (503, "python3 -m http.server 8000"),
    ] {
        a.procs.set(
            pid,
            ProcInfo::Ready {
                cmdline: cmd.into(),
                user: None,
            },
        );
    }
    let (_, snap) = three_pythons();
    a.on_snapshot(snap);
    a
}

/// The header's total counts what the shown flows moved in the interval,
/// the bytes of a flow that ended inside it too, and follows the filter.
#[test]
fn the_header_total_counts_flows_that_ended_in_the_interval() {
    let mut a = python_app();
    let t = a.counts.throughput;
    // Received: 1 MB (long), 2 MB (ended), and the local flow seen from
    // its initiator (500 KB); sent: 1000 + 10 000 + 2000 bytes.
    assert_eq!(t.received, 3_500_000.0);
    assert_eq!(t.sent, 13_000.0);
    // The header has room for its graphs at 140 columns: `m` hides them.
    a.apply(Action::ToggleMeter);
    let s = screen(&a, 140, 24);
    assert!(s.contains("in 3.3MB/s out 13KB/s"), "{s}");
    a.apply(Action::ToggleMeter);
    type_filter(&mut a, "pid:502");
    // The ended flow is no live row; it stays a while after them (dimmed).
    assert_eq!(a.flow_rows.len(), 0, "the ended flow is no live row");
    assert_eq!(a.len(), 1);
    assert!(a.ended_at(0).is_some());
    assert_eq!(a.counts.throughput.received, 2_000_000.0, "but counts");
    type_filter(&mut a, "");
    a.apply(Action::FilterClear);
    a.apply(Action::ToggleProto('T'));
    assert_eq!(a.counts.throughput.received, 0.0, "toggled off");
}

/// Three `python3` programs of one user are one row by default; `g`
/// splits them, each with its command line; local flows count for both
/// ends.
#[test]
fn processes_group_by_program_and_split_per_pid_with_command_lines() {
    let mut a = python_app();
    a.apply(Action::NextTab);
    let py: Vec<_> = a.proc_rows.iter().filter(|r| r.comm == "python3").collect();
    assert_eq!(py.len(), 1);
    assert_eq!(py[0].pids, vec![501, 502, 503]);
    assert_eq!(
        py[0].totals.flows, 2,
        "the long flow, and the local one as its server"
    );
    // 1 MB + the ended 2 MB received by 501 and 502; 500 KB sent by 503.
    // ... and what curl sent to 503.
    assert_eq!(py[0].totals.received_rate, 3_000_000.0 + 2_000.0);
    assert_eq!(py[0].totals.sent_rate, 1_000.0 + 10_000.0 + 500_000.0);
    let s = screen(&a, 140, 24);
    assert!(s.contains("python3        1000           3      2"), "{s}");
    // At 80 columns every number fits.
    let narrow = screen(&a, 80, 24);
    assert!(narrow.contains("SENT/s    RECV/s"), "{narrow}");
    a.apply(Action::Group);
    assert!(a.per_pid);
    let s = screen(&a, 140, 24);
    for cmd in [
        "python3 fetch.py --mirror a",
        "python3 sync.py",
        "python3 -m http.server 8000",
    ] {
        assert!(s.contains(cmd), "{cmd}: {s}");
    }
    let row = |a: &App, pid: u32| {
        a.proc_rows
            .iter()
            .find(|r| r.pids == [pid])
            .cloned()
            .expect("row")
    };
    // The local flow: curl (504) sent 2000 bytes and got 500 KB; the
    // server (503) the other way round.
    let (curl, server) = (row(&a, 504), row(&a, 503));
    assert_eq!((curl.totals.sent, curl.totals.received), (2_000, 500_000));
    assert_eq!((server.totals.sent, server.totals.received), (500_000, 2_000));
    // 502 has no flow left, yet what it moved in the interval shows.
    let ended = row(&a, 502);
    assert_eq!((ended.totals.flows, ended.totals.received_rate), (0, 2_000_000.0));
    insta::assert_snapshot!("processes_per_pid_140x24", s);
    a.apply(Action::Group);
    assert!(!a.per_pid);
    // Enter on the program's row lists its names, Enter again the flows
    // of its processes.
    let at = a.proc_rows.iter().position(|r| r.comm == "python3").expect("row");
    a.move_for_test(at);
    a.apply(Action::Open);
    a.apply(Action::Open);
    assert_eq!(a.filter_text, "exe:/usr/bin/python3.12");
    let mut v = ids(&a);
    v.sort_unstable();
    assert_eq!(v, vec![1, 2, 3], "the ended flow after the live ones");
    a.apply(Action::ToggleEnded);
    let mut v = ids(&a);
    v.sort_unstable();
    assert_eq!(v, vec![1, 3], "the ended flow hidden with t");
}

/// `<` `>` `r` sort the Processes tab as they sort the Flows tab: the next
/// column in its default direction, `r` reverses; the selection stays on
/// its row.
#[test]
fn processes_sort_with_the_flows_keys() {
    use super::rows::ProcColumn;
    let mut a = python_app();
    a.apply(Action::NextTab);
    a.apply(Action::Group);
    let order = |a: &App| -> Vec<String> { a.proc_rows.iter().map(|r| format!("{:?}", r.pids)).collect() };
    assert_eq!(a.proc_sort.column, ProcColumn::Received);
    assert_eq!(order(&a)[0], "[501]", "2 MB received in all");
    a.apply(Action::SortNext);
    assert_eq!(
        (a.proc_sort.column, a.proc_sort.desc),
        (ProcColumn::SentRate, true)
    );
    assert_eq!(order(&a)[0], "[503]", "the server sent the most");
    a.apply(Action::SortReverse);
    assert!(!a.proc_sort.desc);
    assert_eq!(order(&a).last().map(String::as_str), Some("[503]"));
    for _ in 0..6 {
        a.apply(Action::SortPrev);
    }
    assert_eq!(
        (a.proc_sort.column, a.proc_sort.desc),
        (ProcColumn::Process, false)
    );
    let names: Vec<String> = a.proc_rows.iter().map(|r| r.comm.clone()).collect();
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(names, sorted);
    // The selection follows its row.
    a.apply(Action::End);
    let sel = a.proc_rows[a.cursor].key.clone();
    a.apply(Action::SortReverse);
    assert_eq!(a.proc_rows[a.cursor].key, sel);
    // Enter on a process lists its names, Enter again its flows, the
    // local flow's server too.
    let at = a.proc_rows.iter().position(|r| r.pids == [503]).expect("503");
    a.move_for_test(at);
    a.apply(Action::Open);
    a.apply(Action::Open);
    assert_eq!(a.filter_text, "pid:503");
    assert_eq!(ids(&a), vec![3]);
}

/// An incoming flow shows its remote end (the original source) after `←`;
/// the service port is the local one.
#[test]
fn an_incoming_flow_shows_its_remote_end() {
    let mut a = app(120, 24);
    type_filter(&mut a, "pid:800");
    let s = screen(&a, 120, 24);
    assert!(s.contains("← 203.0.113.9"), "{s}");
    assert!(s.contains("22/ssh"), "{s}");
    assert!(!s.contains("192.0.2.1"), "not the local end: {s}");
    a.show_src = true;
    let s = screen(&a, 160, 24);
    assert!(s.contains("192.0.2.1:22"), "the local end in SOURCE: {s}");
}

#[test]
fn ctrl_u_clears_the_filter_line() {
    let ctrl_u = KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL);
    assert_eq!(
        keys::action(ctrl_u, Mode::EditingFilter),
        Some(Action::FilterClear)
    );
    assert_eq!(
        keys::action(key(KeyCode::Char('u')), Mode::EditingFilter),
        Some(Action::FilterChar('u'))
    );
    let mut a = app(120, 24);
    a.apply(Action::EditFilter);
    for c in "pid:4242".chars() {
        a.apply(Action::FilterChar(c));
    }
    assert_eq!(ids(&a), vec![1]);
    a.apply(Action::FilterClear);
    assert!(a.editing_filter, "still editing, as readline");
    assert_eq!(a.filter_text, "");
    assert_eq!(a.len(), 8);
}

#[test]
fn g_groups_processes_and_goes_home_elsewhere() {
    assert_eq!(
        keys::action(key(KeyCode::Char('g')), Mode::Normal),
        Some(Action::Group)
    );
    assert_eq!(keys::action(key(KeyCode::Home), Mode::Normal), Some(Action::Home));
    let mut a = app(120, 24);
    a.apply(Action::Down);
    a.apply(Action::Group);
    assert_eq!(a.cursor, 0);
    assert!(!a.per_pid);
}

/// The body says why the table is empty; the footer does not cut the
/// engine's hint (the body shows it whole).
#[test]
fn an_empty_table_says_why() {
    let mut a = app(120, 24);
    a.note = Some(crate::engine::Notice::EmptyTable);
    a.on_snapshot(fixture::snapshot(Vec::new()));
    let s = screen(&a, 120, 24);
    assert!(
        s.contains("the conntrack table of this network namespace is empty"),
        "{s}"
    );
    assert!(
        s.contains("inet flowtop in ct state established,related accept"),
        "wrapped, whole: {s}"
    );
    assert!(!s.contains("T U D I S"), "{s}");
    let footer = s.lines().last().unwrap_or_default().to_owned();
    assert!(footer.contains("q quit"), "{footer}");

    let mut a = app(120, 24);
    for c in ['T', 'U', 'I', 'S'] {
        a.apply(Action::ToggleProto(c));
    }
    let s = screen(&a, 120, 24);
    assert!(
        s.contains("the 8 flows tracked are of protocols or families toggled off"),
        "{s}"
    );

    let mut a = app(120, 24);
    type_filter(&mut a, "nothing-matches-this");
    let s = screen(&a, 120, 24);
    assert!(
        s.contains("no flow matches: 8 flows hidden (Esc clears the filter)"),
        "{s}"
    );
}

/// Rows stand while no flow changed, unless flows ended in the interval
/// (their bytes count in it) or did in the one shown (they stop counting).
#[test]
fn ended_flows_rebuild_rows_that_would_otherwise_stand() {
    let t0 = Instant::now();
    let mut t = FlowTable::new(TableConfig::default(), t0);
    let tcp = crate::flow::model::proto::TCP;
    let f = |id, port| fixture::flow(id, tcp, "192.0.2.1", Some(port), "198.51.100.7", Some(443));
    t.apply_event(
        Change::Seen,
        f(1, 40001),
        t0,
        &mut crate::flow::table::NoOwners,
        &mut |_, _| {},
    );
    t.apply_event(
        Change::Seen,
        f(2, 40002),
        t0,
        &mut crate::flow::table::NoOwners,
        &mut |_, _| {},
    );
    t.collect_ended(t0);
    let mut a = app(120, 24);
    let s1 = t.snapshot_for_screen(&t.snapshot(), t0 + Duration::from_secs(1));
    a.on_snapshot(s1.clone());
    let s2 = t.snapshot_for_screen(&s1, t0 + Duration::from_secs(2));
    assert!(a.snapshot_job(s2.clone()).is_none(), "nothing changed");
    // Flow 2 ends with 1 MB its last reading did not see: a change of the
    // chunk, and bytes to count.
    let gone = with_bytes(f(2, 40002), 0, 1_000_000);
    t.apply_event(
        Change::Gone,
        gone,
        t0 + Duration::from_millis(2500),
        &mut crate::flow::table::NoOwners,
        &mut |_, _| {},
    );
    let s3 = t.snapshot_for_screen(&s2, t0 + Duration::from_secs(3));
    assert!(!s3.ended.is_empty());
    let job = a.snapshot_job(s3.clone()).expect("rebuilt");
    let d = super::derive::run_job(job, a.ctx(), &mut Vec::new());
    assert_eq!(d.counts.throughput.received, 1_000_000.0);
    assert!(a.take_derived(d).is_none());
    // The next interval: no change in the chunks, but the ended bytes no
    // longer count.
    let s4 = t.snapshot_for_screen(&s3, t0 + Duration::from_secs(4));
    assert!(s4.flows.same_values(&s3.flows));
    let job = a.snapshot_job(s4).expect("rebuilt without them");
    let d = super::derive::run_job(job, a.ctx(), &mut Vec::new());
    assert_eq!(d.counts.throughput.received, 0.0);
}

/// A table emptied in the interval: the body says it has no flows, the
/// header still counts what the flow that ended moved.
#[test]
fn a_table_emptied_in_the_interval_still_counts_its_last_bytes() {
    let t0 = Instant::now();
    let mut t = FlowTable::new(TableConfig::default(), t0);
    let tcp = crate::flow::model::proto::TCP;
    let f = fixture::flow(1, tcp, "192.0.2.1", Some(40001), "198.51.100.7", Some(443));
    t.apply_event(
        Change::Seen,
        f.clone(),
        t0,
        &mut crate::flow::table::NoOwners,
        &mut |_, _| {},
    );
    t.collect_ended(t0);
    t.apply_event(
        Change::Gone,
        with_bytes(f, 0, 500_000),
        t0 + Duration::from_millis(300),
        &mut crate::flow::table::NoOwners,
        &mut |_, _| {},
    );
    let snap = t.snapshot_for_screen(&t.snapshot(), t0 + Duration::from_secs(1));
    let mut a = app(120, 24);
    a.on_snapshot(snap);
    // The ended flow shows a while (dimmed); hidden, the table is empty.
    assert!(a.ended_at(0).is_some());
    a.apply(Action::ToggleEnded);
    let s = screen(&a, 120, 24);
    assert!(s.contains("no flows: the conntrack table has none"), "{s}");
    assert!(s.contains("in 488KB/s out 0B/s"), "{s}");
}

/// The detail view shows the command line the owner record captured at exec
/// (the process has exited) and its parent chain: the parent from the
/// record, the processes above it from /proc.
#[test]
fn detail_shows_the_captured_command_line_and_the_parent_chain() {
    let curl = Arc::new(Owner {
        cmdline: Some("curl -s http://192.0.2.7/".into()),
        ppid: Some(4321),
        parent_comm: Some("bash".into()),
        ..(*fixture::owner(4242, "curl", "/usr/bin/curl", How::Ebpf)).clone()
    });
    let f = fixture::flow(1, proto::TCP, "192.0.2.1", Some(40000), "192.0.2.7", Some(80));
    let mut a = app(120, 30);
    a.on_snapshot(fixture::snapshot(vec![(f, (0, 0), (100, 2000), Some(curl))]));
    a.apply(Action::Open);
    a.procs.set(4242, ProcInfo::Exited);
    a.procs.set_ancestors(
        4321,
        vec![
            (4321, "bash".into()),
            (1000, "sshd".into()),
            (1, "systemd".into()),
        ],
    );
    let s = screen(&a, 120, 30);
    assert!(s.contains("curl -s http://192.0.2.7/"), "{s}");
    assert!(s.contains("bash 4321 ← sshd 1000 ← systemd 1"), "{s}");
    // Before /proc answers (or once the parent is gone): the record's parent.
    a.procs.set_ancestors(4321, Vec::new());
    let s = screen(&a, 120, 30);
    assert!(s.contains(" parents       bash 4321 "), "{s}");
    assert!(!s.contains("sshd 1000"), "{s}");
}

// ---------------------------------------------------------------- asked-for names

#[test]
fn frame_asked_for_names_in_address() {
    let a = fixture::named_app(150, 12);
    let s = screen(&a, 150, 12);
    // Marked by source; the incoming flow shows its client, not the name.
    assert!(s.contains("→ *api.github.com"), "{s}");
    assert!(s.contains("→ !cloudflare-ech.com"), "{s}");
    assert!(!s.contains("not-the-client"), "{s}");
    // A hostile name is escaped like PTR names.
    assert!(!s.contains('\u{1b}'), "{s}");
    insta::assert_snapshot!("asked_names_150x12", s);
}

#[test]
fn host_filter_matches_asked_for_and_ptr_names() {
    let filtered = |text: &str| {
        let mut a = fixture::named_app(120, 30);
        type_filter(&mut a, text);
        let mut v = ids(&a);
        v.sort_unstable();
        v
    };
    assert_eq!(filtered("host:github"), vec![1]);
    // PTR names still match (flow 6's own name says plain.example.org).
    assert_eq!(filtered("host:www.example.org"), vec![1, 6]);
    assert_eq!(filtered("host:plain.example"), vec![6]);
    assert_eq!(filtered("cloudflare-ech"), vec![2]);
}

#[test]
fn frame_detail_lists_every_name() {
    use crate::names::book::NameBook;
    use crate::names::Source;
    let mut a = fixture::named_app(120, 36);
    // curl's answers, as the engine's book holds them.
    let mut book = NameBook::default();
    let at = std::time::Instant::now();
    let ttl = std::time::Duration::from_secs(300);
    for (addr, name) in [
        ("198.51.100.7", "api.github.com"),
        ("198.51.100.8", "codeload.github.com"),
    ] {
        book.insert(Some(4242), fixture::ip(addr), name.into(), Source::Dns, at, ttl);
    }
    a.asked_names
        .set(Arc::new(std::sync::Mutex::new(book)))
        .expect("set once");
    a.apply(Action::Open);
    let s = screen(&a, 120, 36);
    assert!(s.contains("destination api.github.com (TLS SNI)"), "{s}");
    insta::assert_snapshot!("detail_names_120x36", s);
}

#[test]
fn the_header_says_when_inspection_is_off() {
    let mut a = fixture::named_app(200, 8);
    assert!(!screen(&a, 200, 8).contains("inspect off"));
    a.header.inspect = false;
    a.on_snapshot(fixture::flows());
    let s = screen(&a, 200, 8);
    assert!(s.lines().next().is_some_and(|l| l.contains("inspect off")), "{s}");
    a.apply(Action::Open);
    assert!(screen(&a, 200, 40).contains("not looked for (--no-inspect)"));
}

#[test]
fn frame_process_names() {
    use crate::names::book::NameBook;
    use crate::names::Source;
    let mut a = fixture::named_app(120, 14);
    let mut book = NameBook::default();
    let at = std::time::Instant::now();
    let ttl = std::time::Duration::from_secs(300);
    book.insert(
        Some(1000),
        fixture::ip("198.51.100.8"),
        "detectportal.example".into(),
        Source::Dns,
        at,
        ttl,
    );
    a.asked_names
        .set(Arc::new(std::sync::Mutex::new(book)))
        .expect("set once");
    a.apply(Action::NextTab);
    let at = a
        .proc_rows
        .iter()
        .position(|r| r.pids == [1000])
        .expect("firefox");
    while a.cursor < at {
        a.apply(Action::Down);
    }
    a.apply(Action::Open);
    let s = screen(&a, 120, 14);
    // Its flows' names (an ECH outer name, an HTTP Host) and its answers.
    assert!(s.contains("!cloudflare-ech.com"), "{s}");
    assert!(s.contains("^plain.example.org"), "{s}");
    assert!(s.contains("=detectportal.example"), "{s}");
    insta::assert_snapshot!("process_names_120x14", s);
    // Esc goes back to the Processes tab.
    a.apply(Action::Back);
    assert_eq!((a.mode(), a.tab), (Mode::Normal, Tab::Processes));
}

// ---------------------------------------------------------------- history

mod history {
    use super::*;
    use crate::journal::schema;
    use crate::ui::history::{self, Column as H, Loaded};
    use rusqlite::{params, Connection};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A scratch directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                // Fixed width: messages with the path wrap the same way.
                "flowtop-ui-history-{:010}-{:04}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A journal of four ended flows (curl twice, resolved, sshd in) and
    /// one still open (not shown).
    fn journal(dir: &Path) -> PathBuf {
        let path = dir.join("journal.sqlite");
        let db = Connection::open(&path).unwrap();
        db.execute_batch(schema::CREATE_V1).unwrap();
        db.pragma_update(None, "application_id", schema::APPLICATION_ID)
            .unwrap();
        db.pragma_update(None, "user_version", schema::VERSION).unwrap();
        db.execute_batch(
            "INSERT INTO exe (id, path) VALUES (1, '/usr/bin/curl'), (2, '/usr/lib/systemd/systemd-resolved'),
                 (3, '/usr/sbin/sshd');
             INSERT INTO name (id, name) VALUES (1, 'api.example.com'), (2, 'ptr.example.net');
             INSERT INTO addr (id, ip) VALUES (1, x'c0000201'), (2, x'c6336407'), (3, x'cb007105'),
                 (4, x'c6336435');
             INSERT INTO process (id, pid, comm, exe) VALUES (1, 4242, 'curl', 1),
                 (2, 812, 'systemd-resolve', 2), (3, 977, 'sshd', 3), (4, 4300, 'curl', 1);",
        )
        .unwrap();
        let mut ins = db
            .prepare(
                "INSERT INTO flow (ct_id, proto, src, dst, sport, dport, state, direction, start_ms, end_ms, \
                 orig_bytes, reply_bytes, process, exe, dst_name, dst_name_source, dst_host, dst_country) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            )
            .unwrap();
        let t = 1_700_000_000_000i64;
        let none = None::<i64>;
        ins.execute(params![
            11,
            6,
            1,
            2,
            40000,
            443,
            "TIME_WAIT",
            "out",
            t,
            t + 1_250,
            2_000,
            150_000,
            1,
            1,
            1,
            "sni",
            2,
            "DE"
        ])
        .unwrap();
        ins.execute(params![
            12,
            17,
            1,
            4,
            53000,
            53,
            "UNREPLIED",
            "out",
            t + 2_000,
            t + 32_000,
            60,
            none,
            2,
            2,
            none,
            none,
            none,
            "US"
        ])
        .unwrap();
        ins.execute(params![
            13,
            6,
            3,
            1,
            51000,
            22,
            "CLOSE",
            "in",
            t - 300_000,
            t + 60_000,
            80_000,
            9_000_000,
            3,
            3,
            none,
            none,
            none,
            "US"
        ])
        .unwrap();
        ins.execute(params![
            14,
            6,
            1,
            3,
            40002,
            80,
            "TIME_WAIT",
            "out",
            t + 61_000,
            t + 61_400,
            500,
            4_000,
            4,
            1,
            none,
            none,
            2,
            "US"
        ])
        .unwrap();
        ins.execute(params![
            15,
            6,
            1,
            2,
            40004,
            443,
            "ESTABLISHED",
            "out",
            t + 1000,
            none,
            1,
            1,
            4,
            1,
            none,
            none,
            none,
            "DE"
        ])
        .unwrap();
        path
    }

    fn on_history(w: u16, h: u16, loaded: Loaded) -> App {
        let mut a = app(w, h);
        a.apply(Action::PrevTab);
        assert_eq!(a.tab, Tab::History);
        a.history_loaded(loaded);
        a
    }

    fn pids(a: &App) -> Vec<Option<u32>> {
        (0..a.len()).map(|i| a.history.flow_at(i).unwrap().pid).collect()
    }

    #[test]
    fn the_history_tab_comes_after_the_others() {
        let mut a = app(120, 20);
        for _ in 0..3 {
            a.apply(Action::NextTab);
        }
        assert_eq!(a.tab, Tab::History);
        a.apply(Action::NextTab);
        assert_eq!(a.tab, Tab::Flows);
    }

    #[test]
    fn the_history_tab_shows_ended_flows_newest_first() {
        let dir = Scratch::new();
        let loaded = history::load(&journal(&dir.0), history::LIMIT);
        let a = on_history(150, 12, loaded);
        assert_eq!(pids(&a), [Some(4300), Some(977), Some(812), Some(4242)]);
        insta::assert_snapshot!("history_150x12", screen(&a, 150, 12));
    }

    #[test]
    fn the_history_tab_filters_and_sorts() {
        let dir = Scratch::new();
        let mut a = on_history(150, 12, history::load(&journal(&dir.0), 10));
        type_filter(&mut a, "comm:curl");
        assert_eq!(pids(&a), [Some(4300), Some(4242)]);
        type_filter(&mut a, " port:https");
        assert_eq!(pids(&a), [Some(4242)]);
        a.apply(Action::Back);
        type_filter(&mut a, "api.example");
        assert_eq!(pids(&a), [Some(4242)]);
        a.apply(Action::Back);
        type_filter(&mut a, "cc:de");
        assert_eq!(pids(&a), [Some(4242)]);
        a.apply(Action::Back);
        type_filter(&mut a, "proto:udp state:unrepl");
        assert_eq!(pids(&a), [Some(812)]);
        a.apply(Action::Back);
        type_filter(&mut a, "pid:977");
        assert_eq!(pids(&a), [Some(977)]);
        a.apply(Action::Back);
        type_filter(&mut a, "exe:resolved");
        assert_eq!(pids(&a), [Some(812)]);
        a.apply(Action::Back);
        assert_eq!(a.len(), 4);
        // Oldest first, then by duration (longest first), then shortest.
        a.apply(Action::SortReverse);
        assert_eq!(pids(&a), [Some(4242), Some(812), Some(977), Some(4300)]);
        a.apply(Action::SortNext);
        assert_eq!(a.history.sort.column, H::Duration);
        assert_eq!(pids(&a), [Some(977), Some(812), Some(4242), Some(4300)]);
        a.apply(Action::SortReverse);
        assert_eq!(pids(&a), [Some(4300), Some(4242), Some(812), Some(977)]);
        a.apply(Action::SortPrev);
        a.apply(Action::SortPrev);
        assert_eq!(a.history.sort.column, H::Country);
    }

    #[test]
    fn the_history_tab_says_why_it_is_empty() {
        let dir = Scratch::new();
        let missing = dir.0.join("none.sqlite");
        let a = on_history(100, 8, history::load(&missing, 10));
        let s = screen(&a, 100, 8);
        assert!(s.contains("no journal at"), "{s}");
        insta::assert_snapshot!(
            "history_missing_100x8",
            s.replace(&*dir.0.to_string_lossy(), "DIR")
        );

        let garbage = dir.0.join("garbage.sqlite");
        std::fs::write(&garbage, b"not a database at all, only text").unwrap();
        let a = on_history(100, 8, history::load(&garbage, 10));
        insta::assert_snapshot!(
            "history_corrupt_100x8",
            screen(&a, 100, 8).replace(&*dir.0.to_string_lossy(), "DIR")
        );

        let foreign = dir.0.join("foreign.sqlite");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        let s = screen(&on_history(100, 8, history::load(&foreign, 10)), 100, 8);
        assert!(s.contains("is not a flowtop journal"), "{s}");

        let empty = dir.0.join("empty.sqlite");
        let db = Connection::open(&empty).unwrap();
        db.execute_batch(schema::CREATE_V1).unwrap();
        db.pragma_update(None, "application_id", schema::APPLICATION_ID)
            .unwrap();
        db.pragma_update(None, "user_version", schema::VERSION).unwrap();
        drop(db);
        let a = on_history(100, 8, history::load(&empty, 10));
        insta::assert_snapshot!("history_empty_100x8", screen(&a, 100, 8));

        // Before the first read.
        let mut a = app(100, 8);
        a.apply(Action::PrevTab);
        assert!(screen(&a, 100, 8).contains("reading the journal"));
    }

    #[test]
    fn a_new_read_keeps_the_selection_on_its_flow() {
        let dir = Scratch::new();
        let path = journal(&dir.0);
        let mut a = on_history(150, 12, history::load(&path, 10));
        a.apply(Action::Down);
        assert_eq!(a.history.flow_at(a.cursor).unwrap().pid, Some(977));
        // A newer flow ends: the rows move down one, the selection with them.
        let db = Connection::open(&path).unwrap();
        db.execute(
            "INSERT INTO flow (ct_id, proto, src, dst, start_ms, end_ms) VALUES (20, 6, 1, 2, 1, 1800000000000)",
            [],
        )
        .unwrap();
        drop(db);
        a.history_loaded(history::load(&path, 10));
        assert_eq!(a.len(), 5);
        assert_eq!(a.history.flow_at(a.cursor).unwrap().pid, Some(977));
    }

    #[test]
    fn enter_on_a_recorded_flow_shows_what_the_journal_holds() {
        let dir = Scratch::new();
        let mut a = on_history(120, 30, history::load(&journal(&dir.0), 10));
        a.move_for_test(3);
        a.apply(Action::Open);
        assert_eq!(a.mode(), Mode::Recorded);
        insta::assert_snapshot!("history_detail_120x30", screen(&a, 120, 30));
        a.apply(Action::Back);
        assert!(a.history_detail.is_none());
        assert_eq!(a.mode(), Mode::Normal);
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(history::duration_text(850), "850ms");
        assert_eq!(history::duration_text(12_340), "12.3s");
        assert_eq!(history::duration_text(245_000), "4m05s");
        assert_eq!(history::duration_text(7_380_000), "2h03m");
    }
}

// ---------------------------------------------------------------- ended flows

mod ended {
    use super::*;
    use crate::flow::model::Counters;
    use crate::flow::table::{EndedFlows, Entry, Snapshot};
    use crate::ui::ended::Recent;
    use std::time::{Duration, Instant};

    /// The `n` flows of [`fixture::many`], as entries.
    fn entries(n: u32) -> Vec<Entry> {
        let s = fixture::many(n);
        let mut out: Vec<Entry> = s.flows.slots().filter_map(|(slot, _)| s.entry_at(slot)).collect();
        out.sort_by_key(|e| e.flow.id);
        out
    }

    /// `base` with `ended` listed as the flows that ended since the last one.
    fn with_ended(base: &Snapshot, ended: Vec<Entry>) -> Arc<Snapshot> {
        let moved = Counters {
            orig_bytes: 100,
            ..Counters::default()
        };
        Arc::new(Snapshot {
            flows: base.flows.clone(),
            stats: base.stats,
            aggregates: base.aggregates.clone(),
            first_rates: base.first_rates,
            ended: Arc::new(EndedFlows {
                flows: ended.into_iter().map(|e| (e, moved)).collect(),
                overflow: Counters::default(),
                span: Duration::from_secs(1),
            }),
        })
    }

    fn ended_app(color: bool) -> App {
        let mut a = app(150, 16);
        a.color = color;
        let base = fixture::flows();
        a.on_snapshot(with_ended(&base, entries(2)));
        a
    }

    #[test]
    fn t_toggles_the_ended_flows() {
        assert_eq!(
            keys::action(key(KeyCode::Char('t')), Mode::Normal),
            Some(Action::ToggleEnded)
        );
        // T still toggles TCP.
        assert_eq!(
            keys::action(key(KeyCode::Char('T')), Mode::Normal),
            Some(Action::ToggleProto('T'))
        );
    }

    #[test]
    fn ended_flows_follow_the_live_ones_and_count_in_no_total() {
        let live = app(150, 16);
        let mut a = ended_app(true);
        assert_eq!(a.counts.flows, live.counts.flows, "the live flows only");
        assert_eq!(a.len(), live.len() + 2);
        // Newest first: the snapshot's last ended flow first.
        let ids: Vec<u32> = a.ended_rows.iter().map(|e| e.flow.id).collect();
        assert_eq!(ids, [2, 1]);
        assert!(a.ended_at(live.len()).is_some() && a.ended_at(live.len() - 1).is_none());
        insta::assert_snapshot!("flows_ended_150x16", screen(&a, 150, 16));
        let t = draw(&a, 150, 16);
        let buf = t.backend().buffer();
        let row = 3 + u16::try_from(live.len()).unwrap();
        assert!(buf[(2, row)].modifier.contains(ratatui::style::Modifier::DIM));
        assert_eq!(buf[(2, row)].fg, Color::DarkGray);
        // t hides them, t again shows them.
        a.apply(Action::ToggleEnded);
        assert_eq!(a.len(), live.len());
        insta::assert_snapshot!("flows_ended_hidden_150x16", screen(&a, 150, 16));
        a.apply(Action::ToggleEnded);
        assert_eq!(a.len(), live.len() + 2);
        // The filter and the protocol toggles apply to them as to the others.
        type_filter(&mut a, "port:1001");
        assert_eq!(a.len(), 1);
        assert!(a.ended_at(0).is_some());
        a.apply(Action::Back);
        a.apply(Action::ToggleProto('T'));
        assert!(a.ended_rows.is_empty());
        a.apply(Action::ToggleProto('T'));
        // Enter on one: its details, as it ended.
        a.move_for_test(live.len());
        a.apply(Action::Open);
        let d = a.detail.as_ref().expect("detail");
        assert!(d.ended && d.entry.flow.id == 2);
    }

    #[test]
    fn without_colour_ended_flows_are_marked() {
        let a = ended_app(false);
        let s = screen(&a, 150, 16);
        insta::assert_snapshot!("flows_ended_no_color_150x16", s);
        assert_eq!(s.matches("\"x ").count(), 2, "{s}");
    }

    #[test]
    fn ended_flows_are_kept_a_while_and_a_bounded_few() {
        let t0 = Instant::now();
        let e = entries(5);
        let mut r = Recent::default();
        r.cap = 3;
        r.push(t0, &e[..2]);
        assert_eq!(r.len(), 2);
        // The oldest dropped past the cap.
        r.push(t0 + Duration::from_secs(1), &e[2..4]);
        let ids = |r: &Recent| r.newest_first().map(|e| e.flow.id).collect::<Vec<_>>();
        assert_eq!(ids(&r), [4, 3, 2]);
        // The same flow noted twice: kept once, as the newest.
        r.push(t0 + Duration::from_secs(2), &e[1..2]);
        assert_eq!(ids(&r), [2, 4, 3]);
        // More at once than the cap: the last ones.
        r.push(t0 + Duration::from_secs(3), &e[..]);
        assert_eq!(ids(&r), [5, 4, 3]);
        // Gone 10 s after they ended, not before.
        r.expire(t0 + Duration::from_secs(13));
        assert_eq!(r.len(), 3);
        r.expire(t0 + Duration::from_millis(13_001));
        assert!(r.is_empty());
        // The default bounds.
        let d = Recent::default();
        assert_eq!((d.keep, d.cap), (Duration::from_secs(10), 1000));
    }

    #[test]
    fn ended_flows_expire_with_the_next_snapshots() {
        let mut a = ended_app(true);
        assert_eq!(a.ended_rows.len(), 2);
        a.recent_ended.keep = Duration::ZERO;
        std::thread::sleep(Duration::from_millis(5));
        let _ = a.snapshot_job(fixture::flows());
        assert!(a.ended_rows.is_empty());
        assert!(a.recent_ended.is_empty());
    }
}
