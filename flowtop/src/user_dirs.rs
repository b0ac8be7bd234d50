//! Default paths for a user other than root: the XDG base directories
//! instead of the system's `/var/lib/flowtop` and `/run/flowtop`, which a
//! member of the `flowtop` group can neither write nor should share.
//! Root's defaults are unchanged.
//!
//! - journal: `$XDG_STATE_HOME/flowtop/journal.sqlite`
//!   (`~/.local/state/flowtop/journal.sqlite`);
//! - sysctl state file: `$XDG_RUNTIME_DIR/flowtop` (cleared at logout like
//!   `/run` at boot), else `$XDG_STATE_HOME/flowtop/run`;
//! - GeoIP databases of `-u` (and searched first): `$XDG_DATA_HOME/flowtop`
//!   (`~/.local/share/flowtop`).
//!
//! A variable that is unset, empty or not an absolute path is ignored, as
//! the XDG base directory specification asks.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Whether the defaults below apply: the real user is not root.
pub fn applies() -> bool {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() != 0 }
}

/// An absolute directory from `var`, else `$HOME/fallback`.
fn base(var: &str, fallback: &str, env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let from_var = env(var).map(PathBuf::from).filter(|p| p.is_absolute());
    from_var.or_else(|| {
        env("HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .map(|home| home.join(fallback))
    })
}

fn real_env(var: &str) -> Option<OsString> {
    std::env::var_os(var)
}

/// The journal's default for a user.
pub fn journal() -> Option<PathBuf> {
    journal_in(&real_env)
}

/// The state directory's default for a user.
pub fn state_dir() -> Option<PathBuf> {
    state_dir_in(&real_env)
}

/// The GeoIP directory's default for a user.
pub fn geoip_dir() -> Option<PathBuf> {
    geoip_dir_in(&real_env)
}

fn journal_in(env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    base("XDG_STATE_HOME", ".local/state", env).map(|d| d.join("flowtop/journal.sqlite"))
}

fn state_dir_in(env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    env("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_dir())
        .map(|d| d.join("flowtop"))
        .or_else(|| base("XDG_STATE_HOME", ".local/state", env).map(|d| d.join("flowtop/run")))
}

fn geoip_dir_in(env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    base("XDG_DATA_HOME", ".local/share", env).map(|d| d.join("flowtop"))
}

/// `given` unless it is the root default `root_default` and a user's
/// default exists (a user who passes the root default explicitly gets the
/// user's default too: the system paths are root's).
pub fn or_user_default(given: &Path, root_default: &str, user: Option<PathBuf>) -> PathBuf {
    match user {
        Some(u) if applies() && given == Path::new(root_default) => u,
        _ => given.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn xdg_variables_win_and_home_is_the_fallback() {
        let env = env_of(&[
            ("HOME", "/home/ann"),
            ("XDG_STATE_HOME", "/s"),
            ("XDG_DATA_HOME", "/d"),
        ]);
        assert_eq!(journal_in(&env), Some(PathBuf::from("/s/flowtop/journal.sqlite")));
        assert_eq!(geoip_dir_in(&env), Some(PathBuf::from("/d/flowtop")));
        let env = env_of(&[("HOME", "/home/ann")]);
        assert_eq!(
            journal_in(&env),
            Some(PathBuf::from("/home/ann/.local/state/flowtop/journal.sqlite"))
        );
        assert_eq!(
            geoip_dir_in(&env),
            Some(PathBuf::from("/home/ann/.local/share/flowtop"))
        );
        assert_eq!(
            state_dir_in(&env),
            Some(PathBuf::from("/home/ann/.local/state/flowtop/run"))
        );
    }

    #[test]
    fn relative_or_missing_values_are_ignored() {
        let env = env_of(&[
            ("HOME", "/home/ann"),
            ("XDG_STATE_HOME", "rel"),
            ("XDG_RUNTIME_DIR", ""),
        ]);
        assert_eq!(
            state_dir_in(&env),
            Some(PathBuf::from("/home/ann/.local/state/flowtop/run"))
        );
        let env = env_of(&[("HOME", "not/absolute")]);
        assert_eq!(journal_in(&env), None);
    }

    #[test]
    fn the_runtime_dir_is_used_when_it_exists() {
        let env = env_of(&[("HOME", "/home/ann"), ("XDG_RUNTIME_DIR", "/")]);
        assert_eq!(state_dir_in(&env), Some(PathBuf::from("/flowtop")));
    }
}
