//! Drawing one frame from the [`App`]: header, tab line, the visible rows
//! of the table, footer, and the help or detail view on top. Reads only;
//! the rows were derived before.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::SystemTime;

use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use super::app::{App, Detail, Tab, TABLE_TOP};
use super::keys::{FILTER_HELP, HELP};
use super::procinfo::ProcInfo;
use super::rows::{self, ProcColumn, RowCtx, Totals};
use super::sort::Column;
use super::spark;
use crate::flow::model::{Owner, Tuple};
use crate::output::ends;
use crate::output::format::{age_secs, human_age, human_bytes};
use crate::output::safe::terminal_safe;

/// The smallest terminal the screen draws in.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 8;

/// Styles, with or without colour (NO_COLOR keeps only bold and reverse).
struct Theme {
    color: bool,
}

impl Theme {
    fn bar(&self) -> Style {
        if self.color {
            Style::default()
                .fg(Color::White)
                .bg(Color::Blue)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }
    fn titles(&self) -> Style {
        if self.color {
            Style::default().fg(Color::Black).bg(Color::Cyan)
        } else {
            Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        }
    }
    fn active_tab(&self) -> Style {
        let s = Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED);
        if self.color {
            s.fg(Color::Yellow)
        } else {
            s
        }
    }
    fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
    fn warn(&self) -> Style {
        let s = Style::default().add_modifier(Modifier::BOLD);
        if self.color {
            s.fg(Color::Red)
        } else {
            s
        }
    }
    /// A flow that ended (kept a while on the Flows tab): dimmed; under
    /// NO_COLOR its row also starts with `x` (see [`flow_cells`]).
    fn ended(&self) -> Style {
        let s = Style::default().add_modifier(Modifier::DIM);
        if self.color {
            s.fg(Color::DarkGray)
        } else {
            s
        }
    }
    fn dim(&self) -> Style {
        if self.color {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default()
        }
    }
}

/// `s` cut to `width` columns with an ellipsis, padded to `width`.
pub fn fit(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n > width {
        let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
        if width > 0 {
            out.push('…');
        }
        out
    } else {
        format!("{s:<width$}")
    }
}

fn fit_right(s: &str, width: usize) -> String {
    if s.chars().count() > width {
        fit(s, width)
    } else {
        format!("{s:>width$}")
    }
}

/// A table column: width and alignment.
#[derive(Clone, Copy)]
struct Col {
    width: usize,
    right: bool,
}

fn line_of(cells: &[(Col, String)]) -> String {
    let mut out = String::new();
    for (i, (c, text)) in cells.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let cell = if c.right {
            fit_right(text, c.width)
        } else {
            fit(text, c.width)
        };
        out.push_str(&cell);
    }
    out
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, app: &App, now: SystemTime) {
    let area = frame.area();
    let theme = Theme { color: app.color };
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "terminal too small ({}x{}): flowtop needs at least {MIN_WIDTH}x{MIN_HEIGHT}",
            area.width, area.height
        );
        let p = Paragraph::new(msg).wrap(ratatui::widgets::Wrap { trim: true });
        frame.render_widget(p, area);
        return;
    }
    let row = |y: u16, h: u16| Rect::new(area.x, area.y + y, area.width, h);
    frame.render_widget(
        Paragraph::new(title_line(app, area.width)).style(theme.bar()),
        row(0, 1),
    );
    frame.render_widget(Paragraph::new(tab_line(app, &theme)), row(1, 1));
    let body_h = area.height - TABLE_TOP - 1;
    let body = Rect::new(area.x, area.y + 2, area.width, body_h + 1);
    match &app.detail {
        Some(d) => draw_detail(frame, app, d, body, now, &theme),
        None if app.timeline.is_some() => {
            if let Some(of) = &app.timeline {
                super::charts::draw_timeline(frame, app, of, body);
            }
        }
        None if app.history_detail.is_some() => draw_recorded(frame, app, body, &theme),
        None => match &app.proc_names {
            Some(p) => draw_names(frame, app, p, body, &theme),
            None => draw_table(frame, app, body, now, &theme),
        },
    }
    frame.render_widget(footer(app, &theme), row(area.height - 1, 1));
    if app.help {
        draw_help(frame, area);
    }
    // Without UTF-8 in the locale the terminal shows no box drawing,
    // arrows or blocks: every cell in plain ASCII.
    if app.glyphs == super::spark::Glyphs::Ascii {
        super::charts::asciify(frame.buffer_mut(), area);
    }
}

fn title_line(app: &App, width: u16) -> String {
    let mut s = format!(" flowtop {} │ {} flows", app.header.version, app.counts.flows);
    if !app.counts.by_proto.is_empty() {
        let parts: Vec<String> = app
            .counts
            .by_proto
            .iter()
            .map(|(p, n)| format!("{p} {n}"))
            .collect();
        let _ = write!(s, " ({})", parts.join(", "));
    }
    let sel = &app.view_sel;
    let mut shown = Vec::new();
    if sel.ipv4 {
        shown.push("IPv4".to_owned());
    }
    if sel.ipv6 {
        shown.push("IPv6".to_owned());
    }
    let protos = sel.proto_names();
    if protos.len() > 10 {
        shown.push("all protocols".to_owned());
    } else {
        shown.extend(protos.into_iter().filter(|p| p != "udplite" && p != "icmpv6"));
    }
    let _ = write!(s, " │ {}", shown.join(" "));
    // What the shown flows move, with those that ended in the interval.
    let t = app.counts.throughput;
    let (inn, out) = (
        rows::rate_text(t.received, app.bits),
        rows::rate_text(t.sent, app.bits),
    );
    // The figures' place: a graph of the last intervals may go beside each.
    let figures_from = s.len();
    let _ = write!(s, " │ in {inn} out {out}");
    let figures_to = s.len();
    // Least important last: a narrow terminal cuts the end.
    let st = app.shown().stats;
    let _ = write!(s, " │ lost {} resync {}", st.overruns, st.resyncs);
    let _ = write!(
        s,
        " │ attribution {} │ every {}s",
        app.header.attribution.name(),
        app.header.interval.as_secs_f64()
    );
    if !app.header.inspect {
        s.push_str(" │ inspect off");
    }
    // The graphs, once there are two intervals to draw, only where they
    // push nothing off the line (`m` hides them).
    let most = spark::meter_width(width);
    if app.meter && most > 0 && app.totals_history.rounds() >= 2 {
        let without = s.chars().count() - s[figures_from..figures_to].chars().count();
        // The widest graphs that fit, down to 5 intervals.
        for n in [most, 10, 5].into_iter().filter(|&n| n <= most) {
            let (g_out, g_in) = app.totals_history.sparklines(n, app.glyphs);
            let with = format!(" │ in {inn} {g_in} out {out} {g_out}");
            if without + with.chars().count() <= usize::from(width) {
                s.replace_range(figures_from..figures_to, &with);
                break;
            }
        }
    }
    s
}

fn tab_line<'a>(app: &'a App, theme: &Theme) -> Line<'a> {
    let mut spans = vec![Span::raw(" ")];
    for t in Tab::ALL {
        let style = if t == app.tab {
            theme.active_tab()
        } else {
            Style::default()
        };
        spans.push(Span::styled(format!(" {} ", t.title()), style));
        spans.push(Span::raw(" "));
    }
    if app.paused {
        spans.push(Span::styled(
            format!(" PAUSED ({} flows live) ", app.live_flows()),
            theme.warn().add_modifier(Modifier::REVERSED),
        ));
    }
    match app.tab {
        Tab::Flows => {
            let arrow = if app.sort.desc { "▼" } else { "▲" };
            spans.push(Span::raw(format!(" sort {}{arrow}", app.sort.column.title())));
            if !app.show_ended {
                spans.push(Span::raw("  ended hidden"));
            }
        }
        Tab::Processes => {
            let arrow = if app.proc_sort.desc { "▼" } else { "▲" };
            let title = app.proc_sort.column.title(app.per_pid);
            let by = match (app.per_pid, app.group_identity) {
                (_, true) => "per container/unit",
                (true, _) => "per pid",
                _ => "per program",
            };
            spans.push(Span::raw(format!(" sort {title}{arrow}  {by}")));
        }
        Tab::History => {
            let arrow = if app.history.sort.desc { "▼" } else { "▲" };
            spans.push(Span::raw(format!(
                " sort {}{arrow}  journal",
                app.history.sort.column.title()
            )));
        }
        Tab::Countries => {}
    }
    if app.active_only {
        spans.push(Span::raw("  active only"));
    }
    if !app.filter_text.is_empty() {
        spans.push(Span::raw(format!(
            "  filter: {}",
            terminal_safe(&app.filter_text)
        )));
    }
    if let Some(e) = &app.filter_error {
        spans.push(Span::styled(format!("  ({e})"), theme.warn()));
    }
    Line::from(spans)
}

fn footer<'a>(app: &App, theme: &Theme) -> Paragraph<'a> {
    if app.editing_filter {
        let text = format!(
            "/{}█  Enter keep · Esc clear · Ctrl-U clear line",
            terminal_safe(&app.filter_text)
        );
        return Paragraph::new(text);
    }
    if let Some(note) = &app.note {
        // The empty-table hint is moot once flows show up, and the body
        // shows it whole while the table is empty (see `empty_text`): a
        // line would cut it.
        let moot = *note == crate::engine::Notice::EmptyTable;
        if !moot {
            let note = note.to_string();
            let first = note.lines().next().unwrap_or_default();
            return Paragraph::new(format!(" {}", terminal_safe(first))).style(theme.warn());
        }
    }
    let hints = if app.detail.is_some() || app.timeline.is_some() {
        " Esc back  ? help  q quit"
    } else if app.history_detail.is_some() {
        " Enter timeline of its program  Esc back  ? help  q quit"
    } else if app.proc_names.is_some() {
        " Enter its flows  Esc back  ? help  q quit"
    } else {
        match app.tab {
            Tab::Flows => {
                " q quit  ? help  / filter  Tab tabs  < > sort  r reverse  Space pause  Enter details  s src  b bits  a active  t ended"
            }
            Tab::Processes => {
                " q quit  ? help  / filter  Tab tabs  < > sort  r reverse  g per pid/program  Enter flows of the row"
            }
            Tab::Countries => " q quit  ? help  / filter  Tab tabs  Space pause  Enter flows of the row",
            Tab::History => " q quit  ? help  / filter  Tab tabs  < > sort  r reverse  (ended flows, newest first)",
        }
    };
    Paragraph::new(hints).style(theme.dim())
}

/// Bounds of a Flows column's width (min, max) and its alignment: each
/// column is as wide as its widest visible cell (or title) within these,
/// so that short columns leave room to long ones (a PORT with its service
/// name, an ADDRESS with a long name).
fn bounds(c: Column) -> (usize, usize, bool) {
    match c {
        Column::Process => (7, 16, false),
        Column::Pid => (3, 7, true),
        Column::Proto => (5, 7, false),
        Column::State => (5, 11, false),
        Column::Time => (4, 6, true),
        Column::Port => (4, 22, false),
        Column::Geo => (3, 24, false),
        Column::Bytes => (5, 15, true),
        Column::Rate => (4, 19, true),
        Column::Source | Column::Address => (16, 60, false),
        Column::Identity => (14, 24, false),
    }
}

/// The widths of the Flows columns for the visible rows `cells`, on a
/// terminal `width` wide: each column fits its content within its bounds;
/// when that is too wide, the addresses give up columns first (down to
/// their minimum), then the rest is scrolled to (Left/Right).
fn flow_columns(
    width: u16,
    shown: &[Column],
    titles: &[String],
    cells: &[Vec<String>],
) -> Vec<(Column, Col)> {
    let cols: Vec<Column> = shown.to_vec();
    let mut widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let (min, max, _) = bounds(c);
            let content = cells
                .iter()
                .filter_map(|r| r.get(i))
                .map(|t| t.chars().count())
                .chain(titles.get(i).map(|t| t.chars().count()))
                .max()
                .unwrap_or(0);
            content.clamp(min, max)
        })
        .collect();
    let total = |w: &[usize]| w.iter().sum::<usize>() + w.len().saturating_sub(1);
    let mut over = total(&widths).saturating_sub(usize::from(width));
    // Who gives up columns first, and down to how many: the addresses,
    // then the geography, the process name, the state.
    let yield_order = [
        (Column::Address, 16),
        (Column::Source, 16),
        (Column::Geo, 10),
        (Column::Process, 10),
        (Column::State, 7),
        (Column::Port, 9),
    ];
    for (c, floor) in yield_order {
        let Some(i) = cols.iter().position(|x| *x == c) else {
            continue;
        };
        let give = widths[i].saturating_sub(floor).min(over);
        widths[i] -= give;
        over -= give;
    }
    cols.into_iter()
        .zip(widths)
        .map(|(c, width)| {
            (
                c,
                Col {
                    width,
                    right: bounds(c).2,
                },
            )
        })
        .collect()
}

fn endpoint(ctx: &RowCtx<'_>, ip: IpAddr, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("{}:{p}", ctx.address(ip)),
        None => ctx.address(ip),
    }
}

/// The cells of Flows row `i`, one per column of `cols`: the remote end
/// in ADDRESS (after the direction marker) and GEO, the local one in
/// SOURCE, the port that was connected to in PORT (see [`rows::ends`]).
fn flow_cells(app: &App, i: usize, cols: &[Column], now: SystemTime) -> Vec<String> {
    let ctx = app.ctx();
    let Some(e) = app.flow_at(i) else {
        return Vec::new();
    };
    let f = &e.flow;
    let ends = rows::ends(e);
    // Without colour an ended flow is told by a leading mark.
    let ended = !app.color && app.ended_at(i).is_some();
    cols.iter()
        .map(|&c| match c {
            Column::Process if ended => format!("x {}", rows::process_name(e.owner.as_ref())),
            Column::Process => rows::process_name(e.owner.as_ref()),
            Column::Pid => e.owner.as_ref().map_or_else(|| "-".into(), |o| o.pid.to_string()),
            Column::Proto => rows::proto_name(f.proto),
            Column::State => f.state.map_or("-", |s| s.name()).to_owned(),
            Column::Time => f
                .start()
                .map_or_else(|| "-".into(), |s| human_age(age_secs(s, now))),
            Column::Source => endpoint(&ctx, ends.local.0, ends.local.1),
            Column::Address => format!(
                "{} {}",
                rows::direction_marker(e.direction),
                ctx.remote_address(e, ends.remote.0)
            ),
            Column::Port => ctx.port(f.proto, ends.service_port),
            Column::Geo => ctx.geo_of(ends.remote.0).unwrap_or_else(|| "-".into()),
            Column::Identity => {
                super::sort::identity_label(e).map_or_else(|| "-".into(), |l| terminal_safe(l).into_owned())
            }
            Column::Bytes => rows::bytes_pair(e),
            Column::Rate => rows::rate_pair(e, app.rates_at(i), app.bits),
        })
        .collect()
}

/// "4242", "3 pids", "-" (unattributed).
fn pids_text(r: &rows::ProcRow) -> String {
    match (r.single_pid(), r.pids.len()) {
        (Some(pid), _) => pid.to_string(),
        (None, 0) => "-".to_owned(),
        (None, n) => n.to_string(),
    }
}

/// What the last column shows: per program, the executable; per pid, the
/// command line (the owner record's, else read from /proc in the
/// background; the executable until then).
fn command_text(app: &App, r: &rows::ProcRow) -> String {
    let exe = || r.exe.clone().unwrap_or_else(|| "-".into());
    let (true, Some(pid), Some(owner)) = (app.per_pid, r.single_pid(), &r.owner) else {
        return exe();
    };
    if let Some(c) = rows::owner_cmdline(owner) {
        return c;
    }
    match app.procs.get_or_request(pid) {
        ProcInfo::Ready { cmdline, .. } => cmdline,
        ProcInfo::Loading | ProcInfo::Exited => exe(),
    }
}

/// Puts the TREND cell (`width` columns, none when 0) before the last
/// cell of a Processes line (COMMAND).
fn with_trend(cells: &mut Vec<(Col, String)>, width: usize, text: impl FnOnce() -> String) {
    if width == 0 {
        return;
    }
    let at = cells.len().saturating_sub(1);
    cells.insert(at, (Col { width, right: false }, text()));
}

fn totals_cells(t: &Totals, bits: bool) -> Vec<(Col, String)> {
    let n = |width| Col { width, right: true };
    vec![
        (n(6), t.flows.to_string()),
        (n(9), format!("{}B", human_bytes(t.sent as f64))),
        (n(9), format!("{}B", human_bytes(t.received as f64))),
        (n(11), rows::rate_text(t.sent_rate, bits)),
        (n(11), rows::rate_text(t.received_rate, bits)),
    ]
}

const TOTALS_TITLES: [&str; 5] = ["FLOWS", "SENT", "RECEIVED", "SENT/s", "RECV/s"];

/// The column titles and the visible rows' cells of the current tab.
fn table_text(app: &App, width: u16, now: SystemTime) -> (String, Vec<String>) {
    let visible = app.offset..(app.offset + app.page()).min(app.len());
    let left = |w| Col {
        width: w,
        right: false,
    };
    let with_totals = |mut head: Vec<(Col, String)>| {
        for (t, (c, _)) in TOTALS_TITLES.iter().zip(totals_cells(&Totals::default(), false)) {
            head.push((c, (*t).to_owned()));
        }
        head
    };
    match app.tab {
        Tab::Flows => {
            let names: Vec<Column> = Column::shown(app.show_src, app.show_identity).collect();
            let titles: Vec<String> = names
                .iter()
                .map(|&c| {
                    let mut t = c.title().to_owned();
                    if c == app.sort.column {
                        t.push_str(if app.sort.desc { "▼" } else { "▲" });
                    }
                    t
                })
                .collect();
            let cells: Vec<Vec<String>> = visible.map(|i| flow_cells(app, i, &names, now)).collect();
            let cols = flow_columns(width, &names, &titles, &cells);
            let with = |texts: Vec<String>| -> Vec<(Col, String)> {
                cols.iter().map(|(_, c)| *c).zip(texts).collect()
            };
            let lines = cells.into_iter().map(|r| line_of(&with(r))).collect();
            (line_of(&with(titles)), lines)
        }
        Tab::Processes => {
            let arrow = if app.proc_sort.desc { "▼" } else { "▲" };
            let title = |c: ProcColumn| {
                let mut t = c.title(app.per_pid).to_owned();
                if c == app.proc_sort.column {
                    t.push_str(arrow);
                }
                t
            };
            // Everything but the command fits in 80 columns.
            let widths = [
                (14, false),
                (8, false),
                (7, true),
                (6, true),
                (8, true),
                (9, true),
                (9, true),
                (9, true),
                (60, false),
            ];
            let col = |i: usize| Col {
                width: widths[i].0,
                right: widths[i].1,
            };
            let mut head: Vec<(Col, String)> = ProcColumn::ALL
                .iter()
                .enumerate()
                .map(|(i, &c)| (col(i), title(c)))
                .collect();
            let trend = if app.trend { spark::trend_width(width) } else { 0 };
            with_trend(&mut head, trend, || "TREND".to_owned());
            let lines = app.proc_rows[visible]
                .iter()
                .map(|r| {
                    let t = &r.totals;
                    let mut cells = vec![
                        (col(0), r.comm.clone()),
                        (col(1), r.uid.map_or_else(|| "-".into(), |u| app.user_name(u))),
                        (col(2), pids_text(r)),
                        (col(3), t.flows.to_string()),
                        (col(4), format!("{}B", human_bytes(t.sent as f64))),
                        (col(5), format!("{}B", human_bytes(t.received as f64))),
                        (col(6), rows::rate_text(t.sent_rate, app.bits)),
                        (col(7), rows::rate_text(t.received_rate, app.bits)),
                        (col(8), command_text(app, r)),
                    ];
                    with_trend(&mut cells, trend, || {
                        app.rate_history
                            .sparkline(&r.key, trend, app.glyphs)
                            .unwrap_or_default()
                    });
                    line_of(&cells)
                })
                .collect();
            (line_of(&head), lines)
        }
        Tab::Countries => {
            let head = with_totals(vec![(left(14), "COUNTRY".into())]);
            let lines = app.country_rows[visible]
                .iter()
                .map(|r| {
                    let mut cells = vec![(left(14), r.country.clone())];
                    cells.extend(totals_cells(&r.totals, app.bits));
                    line_of(&cells)
                })
                .collect();
            (line_of(&head), lines)
        }
        Tab::History => {
            use super::history::{cells, Column as H};
            let ctx = app.ctx();
            let col = |c: H| {
                let (width, right) = c.width();
                Col { width, right }
            };
            let head: Vec<(Col, String)> = H::ALL
                .iter()
                .map(|&c| {
                    let mut t = c.title().to_owned();
                    if c == app.history.sort.column {
                        t.push_str(if app.history.sort.desc { "▼" } else { "▲" });
                    }
                    (col(c), t)
                })
                .collect();
            let lines = visible
                .filter_map(|i| app.history.flow_at(i))
                .map(|f| {
                    let row: Vec<(Col, String)> = H::ALL
                        .iter()
                        .map(|&c| col(c))
                        .zip(cells(f, &ctx, app.time_text))
                        .collect();
                    line_of(&row)
                })
                .collect();
            (line_of(&head), lines)
        }
    }
}

fn draw_table(frame: &mut Frame<'_>, app: &App, area: Rect, now: SystemTime, theme: &Theme) {
    let (titles, lines) = table_text(app, area.width, now);
    let mut text = vec![Line::styled(
        format!("{titles:<w$}", w = usize::from(area.width)),
        theme.titles(),
    )];
    let selected = app.cursor.checked_sub(app.offset);
    for (i, l) in lines.into_iter().enumerate() {
        if Some(i) == selected {
            let padded = format!("{l:<w$}", w = usize::from(area.width) + usize::from(app.hscroll));
            text.push(Line::styled(padded, theme.selected()));
        } else if app.tab == Tab::Flows && app.ended_at(app.offset + i).is_some() {
            text.push(Line::styled(l, theme.ended()));
        } else {
            text.push(Line::raw(l));
        }
    }
    if app.is_empty() {
        let width = usize::from(area.width).saturating_sub(2).max(20);
        for line in empty_text(app).iter().flat_map(|l| wrap_words(l, width)) {
            text.push(Line::styled(format!(" {line}"), theme.dim()));
        }
    }
    frame.render_widget(Paragraph::new(text).scroll((0, app.hscroll)), area);
}

/// Why the table is empty, for its body: nothing tracked (with the hint
/// of the engine, whole, when it gave one), every flow of a protocol or
/// family toggled off, or every flow filtered out.
fn empty_text(app: &App) -> Vec<String> {
    if app.tab == Tab::History {
        let h = &app.history;
        return vec![match &h.message {
            Some(m) => terminal_safe(m).into_owned(),
            None if !h.loaded => "reading the journal…".to_owned(),
            None if h.flows.is_empty() => "the journal holds no ended flow yet".to_owned(),
            None => format!(
                "no recorded flow matches: {} flows hidden (Esc clears the filter)",
                h.flows.len()
            ),
        }];
    }
    if app.shown().flows.is_empty() {
        if app.note == Some(crate::engine::Notice::EmptyTable) {
            return crate::engine::EMPTY_TABLE_HINT
                .lines()
                .map(str::to_owned)
                .collect();
        }
        return vec![
            "no flows: the conntrack table has none of the selected families and protocols".to_owned(),
        ];
    }
    if app.counts.flows == 0 {
        return vec![format!(
            "no flows shown: the {} flows tracked are of protocols or families toggled off (T U D I S toggle protocols)",
            app.shown().flows.len()
        )];
    }
    let mut why = Vec::new();
    if !app.filter.is_empty() {
        why.push("Esc clears the filter");
    }
    if app.active_only {
        why.push("a shows idle flows too");
    }
    vec![format!(
        "no flow matches: {} flows hidden ({})",
        app.counts.flows,
        why.join(", ")
    )]
}

/// `text` in lines of at most `width` columns, broken between words (a
/// word longer than a line is cut by the frame instead); leading spaces
/// (an indented command) are kept on the first line.
fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let indent: String = text.chars().take_while(|c| *c == ' ').collect();
    let mut lines = Vec::new();
    let mut line = indent.clone();
    for word in text.split_whitespace() {
        let used = line.chars().count();
        if used > indent.len() && used + 1 + word.chars().count() > width {
            lines.push(std::mem::replace(&mut line, indent.clone()));
        }
        if line.chars().count() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

/// A tuple; `service` names the destination port's service (only for the
/// original direction: the reply's destination port is the client's).
fn tuple_text(ctx: &RowCtx<'_>, t: &Tuple, proto_nr: u8, service: bool) -> String {
    let mut s = format!(
        "{} → {}",
        endpoint_num(t.src, t.sport),
        endpoint_num(t.dst, t.dport)
    );
    if let Some(svc) = t
        .dport
        .filter(|_| service)
        .and_then(|p| ctx.services.name(proto_nr, p))
    {
        let _ = write!(s, " ({})", terminal_safe(svc));
    }
    if let Some(i) = t.icmp {
        let _ = write!(s, " type {} code {} id {}", i.icmp_type, i.code, i.id);
    }
    s
}

fn endpoint_num(ip: IpAddr, port: Option<u16>) -> String {
    match (ip, port) {
        (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    }
}

/// "host.example (DE, Berlin)", "192.0.2.1 (private)".
fn end_text(ctx: &RowCtx<'_>, ip: IpAddr) -> String {
    let name = ctx.address(ip);
    let mut s = if name == ip.to_string() {
        name
    } else {
        format!("{name} [{ip}]")
    };
    if let Some(g) = ctx.geo_of(ip) {
        let _ = write!(s, " ({g})");
    }
    s
}

fn detail_lines(app: &App, d: &Detail, now: SystemTime) -> Vec<(String, String)> {
    let ctx = app.ctx();
    let e = &d.entry;
    let f = &e.flow;
    let mut l: Vec<(String, String)> = Vec::new();
    let mut push = |k: &str, v: String| l.push((k.to_owned(), v));
    let mut head = format!("{} id {}", rows::proto_name(f.proto), f.id);
    if let Some(s) = f.state {
        let _ = write!(head, " {}", s.name());
    }
    if d.ended {
        head.push_str(" (ended)");
    }
    push("flow", head);
    push("original", tuple_text(&ctx, &f.orig, f.proto, true));
    let mirrored = f.reply.src == f.orig.dst
        && f.reply.dst == f.orig.src
        && f.reply.sport == f.orig.dport
        && f.reply.dport == f.orig.sport;
    let mut reply = tuple_text(&ctx, &f.reply, f.proto, false);
    if !mirrored {
        reply.push_str("  NAT");
    }
    push("reply", reply);
    push("status", f.status_names().collect::<Vec<_>>().join(" "));
    push("mark, zone", format!("mark {:#x}  zone {}", f.mark, f.zone));
    push(
        "timeout",
        f.timeout.map_or_else(|| "-".into(), |t| format!("{}s", t.secs())),
    );
    match f.counters {
        Some(c) => {
            let r = e.rate.measured_rates();
            let rate = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| rows::rate_text(v, app.bits));
            push(
                "original dir",
                format!(
                    "{} bytes, {} packets, {}",
                    human_bytes(c.orig_bytes as f64),
                    c.orig_packets,
                    rate(r.map(|r| r.orig_bytes))
                ),
            );
            push(
                "reply dir",
                format!(
                    "{} bytes, {} packets, {}",
                    human_bytes(c.reply_bytes as f64),
                    c.reply_packets,
                    rate(r.map(|r| r.reply_bytes))
                ),
            );
        }
        None => push(
            "counters",
            "n/a (nf_conntrack_acct was off when the flow began)".into(),
        ),
    }
    push(
        "started",
        f.start().map_or_else(
            || "n/a".into(),
            |s| format!("{} (age {})", (app.time_text)(s), human_age(age_secs(s, now))),
        ),
    );
    match &e.owner {
        Some(o) => {
            push("process", format!("{} pid {}", terminal_safe(&o.comm), o.pid));
            push(
                "executable",
                o.exe
                    .as_deref()
                    .map_or_else(|| "-".into(), |x| terminal_safe(x).into_owned()),
            );
            let (cmdline, user) = match app.procs.get(o.pid) {
                // The owner record's, when it has one, outlives the process.
                ProcInfo::Loading | ProcInfo::Exited if rows::owner_cmdline(o).is_some() => (
                    rows::owner_cmdline(o).unwrap_or_default(),
                    format!("uid {}", o.uid),
                ),
                ProcInfo::Loading => ("…".to_owned(), "…".to_owned()),
                ProcInfo::Exited => ("(exited)".to_owned(), format!("uid {}", o.uid)),
                ProcInfo::Ready { cmdline, user } => {
                    (cmdline, user.unwrap_or_else(|| format!("uid {}", o.uid)))
                }
            };
            push("command line", cmdline);
            push("parents", parent_chain(app, o));
            push("user", user);
            push("attribution", o.how.name().to_owned());
        }
        None => push(
            "process",
            format!(
                "unknown (attribution {}: {})",
                app.header.attribution.name(),
                app.header.attribution_reason
            ),
        ),
    }
    push("source", end_text(&ctx, f.orig.src));
    push("destination", end_text(&ctx, f.orig.dst));
    // Every name of both ends, with where it came from.
    let ptr = |ip: IpAddr| {
        let name = ctx.address(ip);
        if name == ip.to_string() {
            "-".to_owned()
        } else {
            name
        }
    };
    push(
        "reverse DNS",
        format!("source {}  destination {}", ptr(f.orig.src), ptr(f.orig.dst)),
    );
    push(
        "asked for",
        match e.name.as_deref() {
            Some(n) => format!(
                "destination {} ({})",
                terminal_safe(&n.name),
                ends::name_source_text(n)
            ),
            None if !app.header.inspect => "not looked for (--no-inspect)".to_owned(),
            None => "none seen".to_owned(),
        },
    );
    if let Some(o) = &e.owner {
        let names = process_names(app, &[o.pid]);
        let shown = names.len().min(PROCESS_NAMES_SHOWN);
        for (i, n) in names.iter().take(shown).enumerate() {
            // Of the process above: every name it asked for.
            push(if i == 0 { "its names" } else { "" }, n.clone());
        }
        if names.len() > shown {
            push("", format!("… and {} more", names.len() - shown));
        }
    }
    l
}

/// Names a process's lines list at most in the detail view.
const PROCESS_NAMES_SHOWN: usize = 12;

/// The names processes `pids` asked for, marked by source, with the
/// address each named: those of their flows on screen, and the DNS answers
/// they received (the engine's book); sorted, each once.
fn process_names(app: &App, pids: &[u32]) -> Vec<String> {
    let mut names: Vec<(String, IpAddr)> = app
        .shown()
        .flows
        .iter()
        .filter(|e| e.owner.as_ref().is_some_and(|o| pids.contains(&o.pid)))
        .filter_map(|e| ends::remote_asked_name(e).map(|n| (ends::marked_name(n), e.flow.orig.dst)))
        .collect();
    if let Some(book) = app.asked_names.get() {
        let book = book.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let answers: Vec<_> = pids.iter().flat_map(|&pid| book.names_of(pid, now)).collect();
        drop(book);
        names.extend(answers.into_iter().map(|(ip, n)| {
            let n = crate::names::tracker::FlowName {
                name: n,
                source: crate::names::Source::Dns,
                ech_outer: false,
            };
            (ends::marked_name(&n), ip)
        }));
    }
    names.sort();
    names.dedup();
    names.into_iter().map(|(n, ip)| format!("{n}  {ip}")).collect()
}

/// The owner's parent chain, nearest first: `bash 1234 ← sshd 1000 ←
/// systemd 1`. The parent's pid and name come from the owner record
/// (captured when the process started, so known after it exited); those
/// above it from /proc, read in the background.
fn parent_chain(app: &App, o: &Owner) -> String {
    let Some(ppid) = o.ppid else {
        return "-".into();
    };
    let mut chain = app.procs.ancestors(ppid);
    let parent_name = o
        .parent_comm
        .as_deref()
        .map(|c| terminal_safe(c).into_owned())
        .or_else(|| chain.first().map(|(_, c)| c.clone()))
        .unwrap_or_else(|| "?".into());
    if chain.first().is_some_and(|(p, _)| *p == ppid) {
        chain.remove(0);
    }
    std::iter::once((ppid, parent_name))
        .chain(chain)
        .map(|(pid, comm)| format!("{comm} {pid}"))
        .collect::<Vec<_>>()
        .join(" ← ")
}

fn draw_detail(frame: &mut Frame<'_>, app: &App, d: &Detail, area: Rect, now: SystemTime, theme: &Theme) {
    let lines = detail_lines(app, d, now);
    let (text, chart) = detail_layout(area, &lines);
    draw_key_values(frame, lines, " Flow details (Esc back) ", text, theme);
    if let Some(c) = chart {
        super::charts::draw_flow_chart(frame, c, &d.trace, app.bits, app.glyphs, app.color, app.time_text);
    }
}

/// Where the details' lines and their rate chart go: the chart beside the
/// lines on a wide terminal, under them when rows are left over, else
/// nowhere (a small terminal keeps every line).
fn detail_layout(area: Rect, lines: &[(String, String)]) -> (Rect, Option<Rect>) {
    use super::charts::CHART_MIN;
    const TALL: u16 = 16;
    if area.width >= 150 {
        let left = area.width * 3 / 5;
        let right = Rect::new(
            area.x + left,
            area.y,
            area.width - left,
            area.height.min(TALL + 2),
        );
        return (Rect { width: left, ..area }, Some(right));
    }
    // The rows the lines take, wrapped (keys are 15 columns wide).
    let w = usize::from(area.width.max(1));
    let used: usize = 1 + lines
        .iter()
        .map(|(_, v)| (15 + v.chars().count()).div_ceil(w).max(1))
        .sum::<usize>();
    let left_over = usize::from(area.height).saturating_sub(used);
    if left_over >= usize::from(CHART_MIN.1) && area.width >= CHART_MIN.0 {
        let h = (left_over as u16).min(TALL);
        let chart = Rect::new(area.x, area.y + area.height - h, area.width, h);
        return (
            Rect {
                height: area.height - h,
                ..area
            },
            Some(chart),
        );
    }
    (area, None)
}

/// The details of a recorded flow (Enter on the History tab): what the
/// journal holds of it.
fn draw_recorded(frame: &mut Frame<'_>, app: &App, area: Rect, theme: &Theme) {
    let Some(f) = &app.history_detail else { return };
    let lines = super::history::detail_lines(f, &app.ctx(), app.time_text);
    draw_key_values(frame, lines, " Recorded flow (Esc back) ", area, theme);
}

/// A details panel: one `key  value` line per pair, keys styled as titles,
/// long values wrapped.
fn draw_key_values<K: std::fmt::Display, V: std::fmt::Display>(
    frame: &mut Frame<'_>,
    pairs: Vec<(K, V)>,
    title: &str,
    area: Rect,
    theme: &Theme,
) {
    let lines: Vec<Line<'_>> = pairs
        .into_iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!(" {k:<13}"), theme.titles()),
                Span::raw(format!(" {v}")),
            ])
        })
        .collect();
    let block = Block::default().borders(Borders::TOP).title(title);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(ratatui::widgets::Wrap { trim: false }),
        area,
    );
}

/// The names view of a Processes row: every name its processes asked for.
fn draw_names(frame: &mut Frame<'_>, app: &App, p: &super::app::ProcNames, area: Rect, theme: &Theme) {
    let names = process_names(app, &p.pids);
    let mut lines: Vec<Line<'_>> = Vec::with_capacity(names.len() + 2);
    if names.is_empty() {
        let why = if app.header.inspect {
            "no name seen yet (names come from the DNS answers and first bytes of connections made while flowtop runs)"
        } else {
            "names are not looked for (--no-inspect)"
        };
        lines.push(Line::raw(format!(" {why}")));
    }
    lines.extend(names.into_iter().map(|n| Line::raw(format!(" {n}"))));
    lines.push(Line::styled(
        " marks: * TLS SNI  ! ECH outer name  ^ HTTP Host  ~ QUIC  = DNS answer",
        theme.titles(),
    ));
    let pids = match p.pids.as_slice() {
        [pid] => format!("pid {pid}"),
        many => format!("{} pids", many.len()),
    };
    let block = Block::default().borders(Borders::TOP).title(format!(
        " Names {} asked for ({pids}; Enter its flows, Esc back) ",
        p.comm
    ));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(ratatui::widgets::Wrap { trim: false }),
        area,
    );
}

fn draw_help(frame: &mut Frame<'_>, area: Rect) {
    let w = area.width.saturating_sub(4).min(76);
    let h = area
        .height
        .saturating_sub(2)
        .min((HELP.len() + FILTER_HELP.len()) as u16 + 2);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    let mut lines: Vec<Line<'_>> = HELP
        .iter()
        .map(|(k, v)| Line::raw(format!(" {k:<20} {v}")))
        .collect();
    lines.extend(FILTER_HELP.iter().map(|l| Line::raw(format!(" {l}"))));
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" Keys (any key closes) ")
        .title_alignment(Alignment::Center);
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(ratatui::widgets::Wrap { trim: false }),
        r,
    );
}
