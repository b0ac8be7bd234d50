//! Keys and mouse events to actions: pure, so every binding is tested
//! without a terminal.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Left,
    Right,
    ToggleBits,
    /// `m`: show or hide the header's throughput graph.
    ToggleMeter,
    ToggleActive,
    ToggleSource,
    /// `c`: the CONTAINER/UNIT column (issue 15).
    ToggleIdentity,
    /// `t`: show or hide the flows that ended lately (Flows tab).
    ToggleEnded,
    /// `T U D I S`: show or hide a protocol (by its key letter).
    ToggleProto(char),
    NextTab,
    PrevTab,
    Help,
    SortNext,
    SortPrev,
    SortReverse,
    /// `/`: start editing the filter.
    EditFilter,
    /// A character typed into the filter.
    FilterChar(char),
    FilterBackspace,
    /// Ctrl-U while editing: clear the line (as readline does).
    FilterClear,
    /// `g`: Processes tab: a row per pid, or per program and user again;
    /// elsewhere: the first row.
    Group,
    /// Enter while editing: keep the filter and stop editing.
    FilterDone,
    /// Esc: close what is open, or clear the filter.
    Back,
    Pause,
    Open,
    /// A click on screen row `y`.
    Click(u16),
}

/// What is on screen decides what a key means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    EditingFilter,
    Help,
    Detail,
    /// A process's names (Enter on the Processes tab).
    Names,
    /// A recorded flow's details (History tab): Enter goes on to the
    /// timeline of its program.
    Recorded,
}

/// The action of a key in `mode`, if any.
pub fn action(key: KeyEvent, mode: Mode) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('C')) {
        return Some(Action::Quit);
    }
    match mode {
        Mode::EditingFilter => match key.code {
            KeyCode::Esc => Some(Action::Back),
            KeyCode::Enter => Some(Action::FilterDone),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Char('u') | KeyCode::Char('U') if ctrl => Some(Action::FilterClear),
            KeyCode::Char(c) if !ctrl => Some(Action::FilterChar(c)),
            _ => None,
        },
        // Any key closes the help, except the ones that quit.
        Mode::Help => match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            _ => Some(Action::Back),
        },
        Mode::Detail => match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Esc | KeyCode::Enter | KeyCode::Backspace | KeyCode::Left | KeyCode::Char('h') => {
                Some(Action::Back)
            }
            KeyCode::Char('?') => Some(Action::Help),
            _ => None,
        },
        // Enter goes on to the process's flows, or the program's timeline.
        Mode::Names | Mode::Recorded => match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Enter => Some(Action::Open),
            KeyCode::Esc | KeyCode::Backspace | KeyCode::Left | KeyCode::Char('h') => Some(Action::Back),
            KeyCode::Char('?') => Some(Action::Help),
            _ => None,
        },
        Mode::Normal => normal(key.code),
    }
}

fn normal(code: KeyCode) -> Option<Action> {
    Some(match code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Up | KeyCode::Char('k') | KeyCode::Char('u') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') | KeyCode::Char('d') => Action::Down,
        KeyCode::Left | KeyCode::Char('h') => Action::Left,
        KeyCode::Right | KeyCode::Char('l') => Action::Right,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home => Action::Home,
        KeyCode::Char('g') => Action::Group,
        KeyCode::End | KeyCode::Char('G') => Action::End,
        KeyCode::Char('b') => Action::ToggleBits,
        KeyCode::Char('m') => Action::ToggleMeter,
        KeyCode::Char('a') => Action::ToggleActive,
        KeyCode::Char('s') => Action::ToggleSource,
        KeyCode::Char('c') => Action::ToggleIdentity,
        KeyCode::Char('t') => Action::ToggleEnded,
        KeyCode::Char(c @ ('T' | 'U' | 'D' | 'I' | 'S')) => Action::ToggleProto(c),
        KeyCode::Tab => Action::NextTab,
        KeyCode::BackTab => Action::PrevTab,
        KeyCode::Char('?') => Action::Help,
        KeyCode::Char('>') | KeyCode::Char('.') => Action::SortNext,
        KeyCode::Char('<') | KeyCode::Char(',') => Action::SortPrev,
        KeyCode::Char('r') => Action::SortReverse,
        KeyCode::Char('/') => Action::EditFilter,
        KeyCode::Esc => Action::Back,
        KeyCode::Char(' ') => Action::Pause,
        KeyCode::Enter => Action::Open,
        _ => return None,
    })
}

/// The action of a mouse event: the wheel moves, a left click selects.
pub fn mouse_action(ev: MouseEvent, mode: Mode) -> Option<Action> {
    if mode != Mode::Normal {
        return None;
    }
    match ev.kind {
        MouseEventKind::ScrollUp => Some(Action::Up),
        MouseEventKind::ScrollDown => Some(Action::Down),
        MouseEventKind::Down(crossterm::event::MouseButton::Left) => Some(Action::Click(ev.row)),
        _ => None,
    }
}

/// The help text: key, what it does.
pub const HELP: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit"),
    ("Up/k/u, Down/j/d", "move the selection"),
    ("PgUp/PgDn, Home/End", "move by a page, to the first or last row"),
    ("g", "Processes: rows per program, pid, container/unit"),
    ("Left/h, Right/l", "scroll the table left or right"),
    ("Tab, Shift-Tab", "tabs: Flows, Processes, Countries, History"),
    ("< >", "sort by the previous or next column (also Processes)"),
    ("r", "reverse the sort order"),
    ("/", "filter: Enter keeps it, Esc clears, Ctrl-U erases"),
    ("Esc", "close the view, or clear the filter"),
    ("Space", "pause the view (data keeps flowing)"),
    ("Enter", "flow details; process names, flows; country flows"),
    ("Enter, Enter", "History: a flow, then its program's timeline"),
    ("b", "rates in bits or bytes per second"),
    ("m", "show or hide the throughput graph in the header"),
    ("a", "active flows only (traffic in the last interval)"),
    ("s, c", "show the source; the CONTAINER/UNIT column"),
    ("t", "show or hide flows that ended lately (dimmed)"),
    ("T U D I S", "show or hide TCP, UDP, DCCP, ICMP, SCTP"),
    ("?", "this help"),
    ("ADDRESS marks", "→ out  ← in  ↔ local  ⇄ forwarded  · not known"),
    (
        "name marks",
        "* SNI  ! ECH outer name  ^ HTTP Host  ~ QUIC  = DNS",
    ),
];

/// The filter syntax, for the help overlay.
pub const FILTER_HELP: &[&str] = &[
    "filter terms (all must match): pid:N comm:NAME port:N|NAME host:TEXT",
    "  cc:CODE state:NAME proto:NAME exe:PATH ctr: unit: app:, or any text",
];
