//! `podswitchctl`: podswitch's command-line client. Today it has the offline policy tools —
//! `policy matrix` (a reachability truth table for every ordered pair of pods) and `policy trace`
//! (why one connection is allowed or denied) — computed from ordinary Kubernetes YAML/JSON with the
//! same compiler the daemon uses. Commands that talk to the daemon's socket will be further
//! subcommands. Single-threaded; reads only the files it is given.

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy { command } => policy::run(&command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
