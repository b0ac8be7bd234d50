//! The pictures bigger than a sparkline: the open flow's rate chart
//! (ratatui's [`Chart`]) and the timeline of a program's recorded flows
//! (History tab). Both read only; under an ASCII locale every character
//! of the frame is mapped to plain ASCII at the end ([`asciify`]).

use std::collections::HashMap;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph};
use ratatui::Frame;

use super::history::address_text;
use super::rows::{rate_text, RowCtx};
use super::spark::{Glyphs, Trace};
use crate::journal::query::Flow;
use crate::output::safe::terminal_safe;

/// Rows and columns the flow chart needs at least to say anything.
pub const CHART_MIN: (u16, u16) = (40, 8);

/// `2023-11-14 22:13:20 UTC` → `22:13:20`.
fn clock_part(full: &str) -> String {
    full.split_whitespace().nth(1).unwrap_or(full).to_owned()
}

/// Draws the open flow's rates both ways since flowtop first saw it move
/// (its kept history, then a point per interval since the details
/// opened): time on x (local time), bytes (or bits) per second on y.
#[allow(clippy::too_many_arguments)]
pub fn draw_flow_chart(
    frame: &mut Frame<'_>,
    area: Rect,
    trace: &Trace,
    bits: bool,
    glyphs: Glyphs,
    color: bool,
    time_text: fn(u64) -> String,
) {
    let at = |secs: f64| clock_part(&time_text((secs.max(0.0) * 1e9) as u64));
    // A line needs two points at two times: one per interval.
    let t0 = trace.all().next().map(|p| p.0);
    let t1 = trace.points.back().or(trace.past.last()).map(|p| p.0);
    let (Some(t0), Some(t1)) = (t0, t1.filter(|&t1| t0.is_some_and(|t0| t1 > t0))) else {
        let block = Block::default()
            .borders(Borders::TOP)
            .title(" Rate since the flow first moved ");
        frame.render_widget(
            Paragraph::new(" the chart starts after two intervals (a point per interval)").block(block),
            area,
        );
        return;
    };
    let block = Block::default()
        .borders(Borders::TOP)
        .title(format!(" Rate since {} ", at(t0)));
    let orig: Vec<(f64, f64)> = trace.all().map(|p| (p.0 - t0, p.1)).collect();
    let reply: Vec<(f64, f64)> = trace.all().map(|p| (p.0 - t0, p.2)).collect();
    let max = trace.all().flat_map(|p| [p.1, p.2]).fold(0f64, f64::max);
    // A flat line at zero still gets a scale of 1 B/s.
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let span = (t1 - t0).max(1.0);
    // Colour tells the two lines apart where there is colour; otherwise
    // their markers do.
    let (m_orig, m_reply) = if color && glyphs == Glyphs::Unicode {
        (Marker::Braille, Marker::Braille)
    } else {
        (Marker::Dot, Marker::Block)
    };
    let style = |c: Color| {
        if color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    };
    let (o_mark, r_mark) = match (color, glyphs) {
        (true, _) => ("", ""),
        (false, Glyphs::Unicode) => (" •", " █"),
        (false, Glyphs::Ascii) => (" *", " #"),
    };
    let datasets = vec![
        Dataset::default()
            .name(format!("original{o_mark}"))
            .marker(m_orig)
            .graph_type(GraphType::Line)
            .style(style(Color::Cyan))
            .data(&orig),
        Dataset::default()
            .name(format!("reply{r_mark}"))
            .marker(m_reply)
            .graph_type(GraphType::Line)
            .style(style(Color::Magenta))
            .data(&reply),
    ];
    let chart = Chart::new(datasets)
        .block(block)
        // The legend shows unless it would hide half the chart.
        .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)))
        .x_axis(Axis::default().bounds([0.0, span]).labels(vec![
            Span::raw(at(t0)),
            Span::raw(at(t0 + span / 2.0)),
            Span::raw(at(t0 + span)),
        ]))
        .y_axis(Axis::default().bounds([0.0, top]).labels(vec![
            Span::raw(rate_text(0.0, bits)),
            Span::raw(rate_text(top / 2.0, bits)),
            Span::raw(rate_text(top, bits)),
        ]));
    frame.render_widget(chart, area);
}

/// Replaces every character in `area` that is not ASCII by its nearest
/// ASCII look-alike: lines, corners, dots and blocks of ratatui's
/// widgets, for terminals without UTF-8.
pub fn asciify(buf: &mut Buffer, area: Rect) {
    let area = area.intersection(buf.area);
    for y in area.top()..area.bottom() {
        for x in area.left()..area.right() {
            let Some(cell) = buf.cell_mut((x, y)) else {
                continue;
            };
            let sym = cell.symbol();
            if sym.is_ascii() {
                continue;
            }
            let c = sym.chars().next().unwrap_or(' ');
            let to = match c {
                '│' | '┃' | '║' | '▏' | '▕' | '¦' => "|",
                '─' | '━' | '═' => "-",
                '┌' | '┐' | '└' | '┘' | '├' | '┤' | '┬' | '┴' | '┼' => "+",
                '•' => "*",
                '·' => "-",
                '█' | '▀' | '▌' | '▐' => "#",
                '▁' => ".",
                '▂' => ",",
                '▃' => ":",
                '▄' => "-",
                '▅' => "=",
                '▆' => "+",
                '▇' => "*",
                '▼' | '↓' => "v",
                '▲' | '↑' => "^",
                '…' => ".",
                '→' => ">",
                '←' => "<",
                '↔' => "=",
                '⇄' => "=",
                '\u{2800}' => " ",
                '\u{2801}'..='\u{28ff}' => ".",
                _ => "?",
            };
            cell.set_symbol(to);
        }
    }
}

/// Whose recorded flows the timeline shows: a program by its executable
/// (by its process name when the journal has no executable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineOf {
    pub exe: Option<String>,
    pub comm: Option<String>,
}

impl TimelineOf {
    /// The program of a recorded flow; None for a flow with no process.
    pub fn of(f: &Flow) -> Option<TimelineOf> {
        if f.exe.is_none() && f.comm.is_none() {
            return None;
        }
        Some(TimelineOf {
            exe: f.exe.clone(),
            comm: f.comm.clone(),
        })
    }

    pub fn matches(&self, f: &Flow) -> bool {
        match &self.exe {
            Some(x) => f.exe.as_ref() == Some(x),
            None => f.exe.is_none() && f.comm == self.comm,
        }
    }

    pub fn name(&self) -> String {
        let n = self.exe.as_deref().or(self.comm.as_deref()).unwrap_or("-");
        terminal_safe(n).into_owned()
    }
}

/// The timeline's text: a line per destination (first contacted first),
/// one mark per flow at its start (`┃`, `|` in ASCII) drawn on to its end
/// (`─`, `-`), under a line of times; at most `height` lines, `width`
/// columns.
pub fn timeline_lines<'a>(
    flows: impl Iterator<Item = &'a Flow>,
    of: &TimelineOf,
    ctx: &RowCtx<'_>,
    (width, height): (usize, usize),
    glyphs: Glyphs,
    time_text: fn(u64) -> String,
) -> Vec<String> {
    let mine: Vec<&Flow> = flows.filter(|f| of.matches(f)).collect();
    let mut out = Vec::new();
    if mine.is_empty() {
        out.push(format!(
            " no recorded flow of {} among those read (or the filter hides them)",
            of.name()
        ));
        return out;
    }
    let start = mine.iter().map(|f| f.start_ms).min().unwrap_or(0);
    let end = mine
        .iter()
        .map(|f| f.end_ms.unwrap_or(f.start_ms))
        .max()
        .unwrap_or(start)
        .max(start + 1);
    // Destinations, in the order first contacted, with their flows.
    let mut order: Vec<String> = Vec::new();
    let mut by_dest: HashMap<String, Vec<&Flow>> = HashMap::new();
    let mut sorted = mine.clone();
    sorted.sort_by_key(|f| f.start_ms);
    for f in sorted {
        let dest = address_text(f, ctx);
        by_dest
            .entry(dest.clone())
            .or_insert_with(|| {
                order.push(dest);
                Vec::new()
            })
            .push(f);
    }
    let label_w = (width / 3).clamp(12, 32);
    let track_w = width.saturating_sub(label_w + 3).max(1);
    let col = |ms: i64| {
        let x = (ms - start) as f64 / (end - start) as f64;
        ((x * (track_w - 1) as f64).round() as usize).min(track_w - 1)
    };
    let (mark, run) = match glyphs {
        Glyphs::Unicode => ('┃', '─'),
        Glyphs::Ascii => ('|', '-'),
    };
    let ms_ns = |ms: i64| u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000);
    out.push(format!(
        " {} flows of {} to {} destinations, {} to {}",
        mine.len(),
        of.name(),
        order.len(),
        time_text(ms_ns(start)),
        time_text(ms_ns(end)),
    ));
    // Lines left for destinations under the summary and above the axis.
    let room = height.saturating_sub(2);
    let shown = if order.len() > room {
        room.saturating_sub(1)
    } else {
        order.len()
    };
    for dest in order.iter().take(shown) {
        let flows = &by_dest[dest];
        let mut track = vec![' '; track_w];
        // The runs first, then the marks over them: each start shows.
        for f in flows {
            let (a, b) = (col(f.start_ms), col(f.end_ms.unwrap_or(f.start_ms)));
            for c in track.iter_mut().take(b + 1).skip(a + 1) {
                *c = run;
            }
        }
        for f in flows {
            track[col(f.start_ms)] = mark;
        }
        let label = format!("{} ({})", dest, flows.len());
        let label = if glyphs == Glyphs::Ascii {
            ascii_text(&label)
        } else {
            label
        };
        out.push(format!(
            " {} {}",
            super::render::fit(&label, label_w),
            track.into_iter().collect::<String>()
        ));
    }
    if shown < order.len() {
        out.push(format!(" … and {} more destinations", order.len() - shown));
    }
    // The time axis under the tracks: first and last time at its ends.
    let (a, b) = (
        clock_part(&time_text(ms_ns(start))),
        clock_part(&time_text(ms_ns(end))),
    );
    let gap = track_w.saturating_sub(a.len() + b.len());
    out.push(format!(" {} {a}{}{b}", " ".repeat(label_w), " ".repeat(gap)));
    if glyphs == Glyphs::Ascii {
        out = out.iter().map(|l| ascii_text(l)).collect();
    }
    out
}

/// A line's characters mapped to ASCII as [`asciify`] maps cells.
fn ascii_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            c if c.is_ascii() => c,
            '→' => '>',
            '←' => '<',
            '↔' | '⇄' => '=',
            '…' => '.',
            '·' => '-',
            _ => '?',
        })
        .collect()
}

/// Draws the timeline of `of` over the History tab's flows (as read and
/// filtered there).
pub fn draw_timeline(frame: &mut Frame<'_>, app: &super::app::App, of: &TimelineOf, area: Rect) {
    let flows = app.history.rows.iter().map(|&i| &app.history.flows[i]);
    let lines = timeline_lines(
        flows,
        of,
        &app.ctx(),
        (
            usize::from(area.width),
            usize::from(area.height.saturating_sub(1)),
        ),
        app.glyphs,
        app.time_text,
    );
    let title = format!(" Timeline of {} (Esc back) ", of.name());
    let block = Block::default().borders(Borders::TOP).title(title);
    let lines: Vec<Line<'_>> = lines.into_iter().map(Line::raw).collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
