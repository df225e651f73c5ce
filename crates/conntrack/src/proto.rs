//! Per-protocol state of an entry and the rules shared by all protocols: what a packet's
//! processing decided ([`Outcome`]), which timeout applies, when an entry becomes *assured* (a
//! connection that may never be evicted) and which eviction class it is in. Plain data guarded
//! by the owning shard's lock.

use crate::Direction;
use crate::config::{Config, nanos};
use crate::meta::{L4, PacketMeta};
use crate::sctp::{SctpConn, SctpState};
use crate::table::InvalidReason;
use crate::tcp::{TcpConn, TcpState};

/// What processing a packet against an entry decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Valid; the state may have changed.
    Accept,
    /// Passed without changing state (nf_conntrack's "ignore").
    Ignore,
    /// Rejected; the entry is unchanged.
    Invalid(InvalidReason),
    /// A SYN reopening a closed connection: delete the entry and treat the packet as new
    /// (RFC 1122 §4.2.2.13 allows a SYN to reopen from TIME-WAIT).
    Reopen,
    /// Accepted, but the entry must go: the only reply to a SYN was a RST.
    AcceptAndRemove,
}

/// A connection's protocol state, as listed to the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnState {
    /// TCP with its state.
    Tcp(TcpState),
    /// UDP.
    Udp,
    /// ICMP or ICMPv6 echo.
    IcmpEcho,
    /// SCTP with its state.
    Sctp(SctpState),
    /// Another protocol.
    Other,
}

/// Protocol part of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Tcp(TcpConn),
    Sctp(SctpConn),
    Udp,
    Icmp,
    Other,
}

/// Eviction class: entries that may be pushed out when the table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Not (yet) assured: half-open TCP, unreplied UDP, ICMP, handshaking SCTP.
    Unassured = 0,
    /// Closing: TCP FIN/RST states, SCTP shutdown/closed.
    Closing = 1,
    /// Assured and open: never evicted.
    Assured = 2,
}

/// Timeouts in nanoseconds, resolved once at table creation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolved {
    tcp: [u64; 10],
    tcp_retrans: u64,
    tcp_unack: u64,
    udp: [u64; 2],
    icmp: u64,
    sctp: [u64; 6],
    generic: u64,
    max_retrans: u8,
}

impl Resolved {
    pub(crate) fn new(c: &Config) -> Self {
        let t = &c.timeouts;
        let n = nanos;
        Resolved {
            tcp: [
                n(t.tcp_syn_sent),
                n(t.tcp_syn_sent),
                n(t.tcp_syn_recv),
                n(t.tcp_established),
                n(t.tcp_fin_wait),
                n(t.tcp_close_wait),
                n(t.tcp_last_ack),
                n(t.tcp_time_wait),
                n(t.tcp_close),
                n(t.tcp_syn_sent),
            ],
            tcp_retrans: n(t.tcp_retrans),
            tcp_unack: n(t.tcp_unacknowledged),
            udp: [n(t.udp_unreplied), n(t.udp_replied)],
            icmp: n(t.icmp),
            sctp: [
                n(t.sctp_closed),
                n(t.sctp_cookie),
                n(t.sctp_cookie),
                n(t.sctp_established),
                n(t.sctp_shutdown),
                n(t.sctp_shutdown),
            ],
            generic: n(t.generic),
            max_retrans: c.tcp_max_retrans,
        }
    }
}

impl Proto {
    /// Whether `meta` may create an entry (the protocol's "new" check).
    pub(crate) fn check_new(meta: &PacketMeta, loose: bool) -> Result<(), InvalidReason> {
        match &meta.l4 {
            L4::Tcp(t) => TcpConn::check_new(t, loose),
            L4::Sctp(s) => SctpConn::check_new(s),
            L4::IcmpEcho { request: true, .. } | L4::Udp { .. } | L4::Other(_) => Ok(()),
            L4::IcmpEcho { request: false, .. } => Err(InvalidReason::IcmpNoConnection),
            L4::IcmpError { .. } => Err(InvalidReason::IcmpUnrelated),
        }
    }

    /// Sets `self` to [`Proto::new`]`(meta)` in place: a TCP state built on the stack and
    /// copied into the fresh entry stalled on store forwarding (half of a commit's time).
    #[inline]
    pub(crate) fn reset(&mut self, meta: &PacketMeta) {
        if let L4::Tcp(t) = &meta.l4 {
            *self = Proto::Tcp(TcpConn::EMPTY);
            if let Proto::Tcp(c) = self {
                c.start(t);
            }
        } else {
            *self = Proto::new(meta);
        }
    }

    /// The state of a new entry, before its first packet is processed.
    pub(crate) fn new(meta: &PacketMeta) -> Proto {
        match &meta.l4 {
            L4::Tcp(t) => Proto::Tcp(TcpConn::new(t)),
            L4::Sctp(_) => Proto::Sctp(SctpConn::new()),
            L4::Udp { .. } => Proto::Udp,
            L4::IcmpEcho { .. } => Proto::Icmp,
            L4::Other(_) | L4::IcmpError { .. } => Proto::Other,
        }
    }

    /// Processes a packet; returns the outcome and whether the entry is now assured.
    #[inline(always)]
    pub(crate) fn packet(
        &mut self,
        dir: Direction,
        meta: &PacketMeta,
        replied: bool,
        assured: bool,
    ) -> (Outcome, bool) {
        match (self, &meta.l4) {
            (Proto::Tcp(c), L4::Tcp(t)) => {
                let old = c.state();
                let out = c.packet(dir, t, replied, assured);
                let now_replied = replied || dir == crate::Direction::Reply;
                let assured =
                    assured || (out == Outcome::Accept && c.becomes_assured(old, now_replied));
                (out, assured)
            }
            (Proto::Sctp(c), L4::Sctp(s)) => {
                let out = c.packet(dir, s);
                (out, assured || c.state() == SctpState::Established)
            }
            // UDP and other protocols: a reply makes the flow a stream (nf_conntrack assures
            // UDP once traffic was seen both ways).
            (Proto::Udp, L4::Udp { .. }) | (Proto::Other, L4::Other(_)) => {
                (Outcome::Accept, assured || dir == Direction::Reply)
            }
            // ICMP echo is never assured: each exchange is short-lived.
            (Proto::Icmp, L4::IcmpEcho { .. }) => (Outcome::Accept, false),
            _ => (Outcome::Invalid(InvalidReason::Malformed), assured),
        }
    }

    pub(crate) fn timeout(&self, replied: bool, t: &Resolved) -> u64 {
        match self {
            Proto::Tcp(c) => {
                let base = t.tcp[c.state() as usize];
                if c.retransmissions() >= t.max_retrans {
                    base.min(t.tcp_retrans)
                } else if c.data_unacknowledged() {
                    base.min(t.tcp_unack)
                } else {
                    base
                }
            }
            Proto::Sctp(c) => t.sctp[c.state() as usize],
            Proto::Udp => t.udp[usize::from(replied)],
            Proto::Icmp => t.icmp,
            Proto::Other => t.generic,
        }
    }

    pub(crate) fn class(&self, assured: bool) -> Class {
        let closing = match self {
            Proto::Tcp(c) => matches!(
                c.state(),
                TcpState::FinWait
                    | TcpState::CloseWait
                    | TcpState::LastAck
                    | TcpState::TimeWait
                    | TcpState::Close
            ),
            Proto::Sctp(c) => {
                matches!(
                    c.state(),
                    SctpState::ShutdownSent | SctpState::ShutdownAckSent | SctpState::Closed
                )
            }
            _ => false,
        };
        if closing {
            Class::Closing
        } else if assured {
            Class::Assured
        } else {
            Class::Unassured
        }
    }

    pub(crate) fn info(&self) -> ConnState {
        match self {
            Proto::Tcp(c) => ConnState::Tcp(c.state()),
            Proto::Sctp(c) => ConnState::Sctp(c.state()),
            Proto::Udp => ConnState::Udp,
            Proto::Icmp => ConnState::IcmpEcho,
            Proto::Other => ConnState::Other,
        }
    }
}
