//! Table configuration, fixed at creation: capacity, shards, zone limits, TCP strictness and the
//! per-protocol, per-state timeouts (defaults follow Linux nf_conntrack's sysctl defaults).
//! Pure data, thread-safe.

use std::time::Duration;

/// Idle timeouts per protocol and state. An entry expires this long after the last packet that
/// was accepted for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP SYN_SENT and SYN_SENT2 (simultaneous open).
    pub tcp_syn_sent: Duration,
    /// TCP SYN_RECV.
    pub tcp_syn_recv: Duration,
    /// TCP ESTABLISHED.
    pub tcp_established: Duration,
    /// TCP FIN_WAIT.
    pub tcp_fin_wait: Duration,
    /// TCP CLOSE_WAIT.
    pub tcp_close_wait: Duration,
    /// TCP LAST_ACK.
    pub tcp_last_ack: Duration,
    /// TCP TIME_WAIT (2 MSL, RFC 9293 §3.4.2).
    pub tcp_time_wait: Duration,
    /// TCP CLOSE (after a RST).
    pub tcp_close: Duration,
    /// Cap applied after `tcp_max_retrans` identical retransmissions.
    pub tcp_retrans: Duration,
    /// Cap applied while data is unacknowledged.
    pub tcp_unacknowledged: Duration,
    /// UDP before any reply.
    pub udp_unreplied: Duration,
    /// UDP once replied (a "stream").
    pub udp_replied: Duration,
    /// ICMP / ICMPv6 echo.
    pub icmp: Duration,
    /// SCTP CLOSED.
    pub sctp_closed: Duration,
    /// SCTP COOKIE_WAIT and COOKIE_ECHOED.
    pub sctp_cookie: Duration,
    /// SCTP ESTABLISHED.
    pub sctp_established: Duration,
    /// SCTP SHUTDOWN_SENT, SHUTDOWN_RECD, SHUTDOWN_ACK_SENT.
    pub sctp_shutdown: Duration,
    /// Any other protocol.
    pub generic: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let s = Duration::from_secs;
        Timeouts {
            tcp_syn_sent: s(120),
            tcp_syn_recv: s(60),
            tcp_established: s(5 * 24 * 3600),
            tcp_fin_wait: s(120),
            tcp_close_wait: s(60),
            tcp_last_ack: s(30),
            tcp_time_wait: s(120),
            tcp_close: s(10),
            tcp_retrans: s(300),
            tcp_unacknowledged: s(300),
            udp_unreplied: s(30),
            udp_replied: s(120),
            icmp: s(30),
            sctp_closed: s(10),
            sctp_cookie: s(3),
            sctp_established: s(210),
            sctp_shutdown: s(3),
            generic: s(600),
        }
    }
}

/// Table configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Hard limit on the number of entries (all zones).
    pub max_entries: u32,
    /// Number of shards (rounded up to a power of two, 1 to 2^15; 256 or more on a real node).
    pub shards: u32,
    /// Limit for zones not listed in `zone_limits` (`u32::MAX`: only the total limit applies).
    pub default_zone_limit: u32,
    /// Per-zone limits, `(zone, limit)`.
    pub zone_limits: Vec<(u16, u32)>,
    /// Pick up TCP connections mid-stream (nf_conntrack's `tcp_loose`); off by default, so only a
    /// SYN can create a TCP entry.
    pub tcp_loose: bool,
    /// Identical retransmissions after which `tcp_retrans` caps the timeout.
    pub tcp_max_retrans: u8,
    /// Seed of the shard and index hashes; give each table a random one.
    pub hash_seed: u64,
    /// Timeouts.
    pub timeouts: Timeouts,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_entries: 65_536,
            shards: 256,
            default_zone_limit: u32::MAX,
            zone_limits: Vec::new(),
            tcp_loose: false,
            tcp_max_retrans: 3,
            hash_seed: 0x5eed_c0ff_ee00_0001,
            timeouts: Timeouts::default(),
        }
    }
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
