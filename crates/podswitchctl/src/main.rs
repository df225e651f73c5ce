//! `podswitchctl`: podswitch's command-line client. The offline policy tools — `policy matrix`
//! (a reachability truth table for every ordered pair of pods) and `policy trace` (why one
//! connection is allowed or denied) — compute from ordinary Kubernetes YAML/JSON with the same
//! compiler the daemon uses. The daemon commands (`apply`, `delete`, `get`, `trace`, `stats`,
//! `conntrack`, `flows`, `wait`, `health`; see [`daemon`]) talk to the daemon's control socket
//! (`--socket`, `-o table|json|yaml`). Single-threaded.

mod apply;
mod daemon;
mod output;
mod policy;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "podswitchctl",
    version,
    about = "podswitch command-line client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Offline NetworkPolicy tools.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    #[command(flatten)]
    Daemon(daemon::DaemonCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy { command } => policy::run(&command),
        Command::Daemon(command) => daemon::run(command).map(|out| {
            print!("{out}");
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
