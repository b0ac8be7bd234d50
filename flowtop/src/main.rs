use std::process::ExitCode;

use clap::Parser;
use flowtop::cli::Args;
use flowtop::config::Config;
use flowtop::{app, docs};

fn main() -> ExitCode {
    // `flowtop --generate man|bash|zsh|fish` (for `cargo xtask dist`): outside
    // the clap definition, so that neither the help, the man page nor the
    // completions offer it.
    // Run with file capabilities by a user (the package's flowtop group):
    // first of all, lose every capability that bypasses file permissions,
    // so that every path the user names is opened with the user's rights.
    if let Err(e) = flowtop::privileges::confine_file_access() {
        eprintln!("flowtop: {e}; refusing to run with capabilities that bypass file permissions");
        return ExitCode::from(1);
    }
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "--generate") {
        return docs::main(argv.get(2).and_then(|a| a.to_str()));
    }
    match Config::from_args(&Args::parse()) {
        Ok(config) => app::run(&config),
        Err(e) => app::exit_code(Err(e.into())),
    }
}
