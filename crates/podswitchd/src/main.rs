//! `podswitchd`: the podswitch node daemon. See `podswitchd --help` and `configs/node*.toml`.
#![forbid(unsafe_code)]

use clap::Parser;
use podswitchd::daemon::{self, Cli};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(e) = daemon::init_logging(cli.log_format) {
        eprintln!("podswitchd: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    match daemon::run(&cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("fatal: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
