use std::process::ExitCode;

use clap::Parser;
use flowtop::cli::Args;
use flowtop::config::Config;
use flowtop::{app, docs};

fn main() -> ExitCode {
    // `flowtop --generate man|bash|zsh|fish` (for `cargo xtask dist`): outside
    // the clap definition, so that neither the help, the man page nor the
    // completions offer it.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "--generate") {
        return docs::main(argv.get(2).and_then(|a| a.to_str()));
    }
    match Config::from_args(&Args::parse()) {
        Ok(config) => app::run(&config),
        Err(e) => app::exit_code(Err(e.into())),
    }
}
