//! `podswitchd`: the podswitch node daemon. See `podswitchd --help` and `configs/node*.toml`.
#![forbid(unsafe_code)]

use clap::Parser;
use podswitchd::daemon::{self, Cli};

/// Large tables (conntrack, flow caches) on transparent huge pages: see
/// `podswitch_xdp::HugePageAlloc` for why and what it changes.
#[global_allocator]
static ALLOC: podswitch_xdp::HugePageAlloc = podswitch_xdp::HugePageAlloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(e) = daemon::init_logging(cli.log_format) {
        eprintln!("podswitchd: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    match podswitch_xdp::transparent_huge_pages().as_deref() {
        Some(mode @ ("always" | "madvise")) => tracing::info!(
            mode,
            threshold_bytes = podswitch_xdp::HUGE_PAGE_THRESHOLD,
            "transparent huge pages: allocations from the threshold up (conntrack and flow \
             tables) are advised to use them"
        ),
        other => tracing::warn!(
            mode = other.unwrap_or("absent"),
            "transparent huge pages unavailable: large conntrack and flow tables run on 4 KiB \
             pages (slower at many flows); enable with \
             `echo madvise > /sys/kernel/mm/transparent_hugepage/enabled`"
        ),
    }
    match daemon::run(&cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("fatal: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
