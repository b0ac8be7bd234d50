//! flowtop: a top-like view of the connections netfilter conntrack tracks.
//!
//! Data flows one way: `conntrack` reads the kernel (sockets, decoding,
//! source threads) and `attribution` finds the processes of sockets; the
//! `engine` owns the `flow` table (a pure model) and feeds it from both;
//! `output` and `ui` show it, with names from `enrich`. `config` is the
//! command line typed once; `app` holds one entry point per mode over one
//! start-up (signals, sockets, `sysctl` guard, `ebpf`, `privileges` drop).

pub mod app;
pub mod attribution;
pub mod cli;
pub mod config;
pub mod conntrack;
pub mod docs;
pub mod ebpf;
pub mod engine;
pub mod enrich;
pub mod export;
pub mod flow;
pub mod journal;
pub mod names;
pub mod output;
pub mod privileges;
pub mod sysctl;
pub mod ui;
pub mod update;
pub mod user_dirs;

/// flowtop's version, as `-v` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
