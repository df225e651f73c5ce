//! Basic SCTP association tracking (RFC 9260): the four-way handshake INIT → INIT ACK →
//! COOKIE ECHO → COOKIE ACK, data in ESTABLISHED, the SHUTDOWN sequence and ABORT, keyed on the
//! type of the packet's first chunk, with verification-tag checks (RFC 9260 §8.5).
//!
//! The meta carries the common header's verification tag, not the INIT's initiate tag, so each
//! direction's tag is learnt from its first packet after the INIT (the INIT ACK and the COOKIE
//! ECHO) and enforced afterwards. ABORT and SHUTDOWN COMPLETE may reflect the peer's tag (the
//! T bit, RFC 9260 §8.5.1), so either tag is accepted on them. Plain data behind a shard lock.

use crate::Direction;
use crate::meta::SctpMeta;
use crate::proto::Outcome;
use crate::table::InvalidReason;

/// SCTP association states tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SctpState {
    /// Closed (after ABORT or SHUTDOWN COMPLETE).
    Closed,
    /// INIT seen (and possibly INIT ACK).
    CookieWait,
    /// COOKIE ECHO seen.
    CookieEchoed,
    /// COOKIE ACK seen.
    Established,
    /// SHUTDOWN seen.
    ShutdownSent,
    /// SHUTDOWN ACK seen.
    ShutdownAckSent,
}

const INIT: u8 = 1;
const INIT_ACK: u8 = 2;
const ABORT: u8 = 6;
const SHUTDOWN: u8 = 7;
const SHUTDOWN_ACK: u8 = 8;
const COOKIE_ECHO: u8 = 10;
const COOKIE_ACK: u8 = 11;
const SHUTDOWN_COMPLETE: u8 = 14;

/// The SCTP part of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SctpConn {
    state: SctpState,
    vtag: [u32; 2],
    known: [bool; 2],
}

impl SctpConn {
    /// Only an INIT with a zero verification tag starts an association (RFC 9260 §8.5.1).
    pub(crate) fn check_new(m: &SctpMeta) -> Result<(), InvalidReason> {
        if m.chunk_type != INIT {
            Err(InvalidReason::SctpNoInit)
        } else if m.verification_tag != 0 {
            Err(InvalidReason::SctpVtag)
        } else {
            Ok(())
        }
    }

    pub(crate) fn new() -> Self {
        SctpConn {
            state: SctpState::Closed,
            vtag: [0; 2],
            known: [false; 2],
        }
    }

    pub(crate) fn state(&self) -> SctpState {
        self.state
    }

    pub(crate) fn packet(&mut self, dir: Direction, m: &SctpMeta) -> Outcome {
        use SctpState as S;
        let d = dir.index();
        let ct = m.chunk_type;
        if ct == INIT {
            if m.verification_tag != 0 {
                return Outcome::Invalid(InvalidReason::SctpVtag);
            }
        } else if self.known[d] {
            let reflected = matches!(ct, ABORT | SHUTDOWN_COMPLETE)
                && self.known[1 - d]
                && m.verification_tag == self.vtag[1 - d];
            if m.verification_tag != self.vtag[d] && !reflected {
                return Outcome::Invalid(InvalidReason::SctpVtag);
            }
        }
        let next = match (ct, dir, self.state) {
            (INIT, Direction::Original, S::Closed | S::CookieWait)
            | (INIT_ACK, Direction::Reply, S::CookieWait) => S::CookieWait,
            (COOKIE_ECHO, Direction::Original, S::CookieWait | S::CookieEchoed) => S::CookieEchoed,
            (COOKIE_ACK, Direction::Reply, S::CookieEchoed | S::Established) => S::Established,
            (ABORT, _, _) | (SHUTDOWN_COMPLETE, _, S::ShutdownAckSent | S::Closed) => S::Closed,
            (SHUTDOWN, _, S::Established | S::ShutdownSent) => S::ShutdownSent,
            (SHUTDOWN_ACK, _, S::ShutdownSent | S::ShutdownAckSent) => S::ShutdownAckSent,
            (INIT | INIT_ACK | COOKIE_ECHO | COOKIE_ACK | SHUTDOWN_COMPLETE, _, _) => {
                return Outcome::Invalid(InvalidReason::SctpState);
            }
            // DATA, SACK, HEARTBEAT, ERROR, ...: only inside an association.
            (_, _, S::Established | S::ShutdownSent | S::ShutdownAckSent | S::CookieEchoed) => {
                self.state
            }
            (_, _, _) => return Outcome::Invalid(InvalidReason::SctpState),
        };
        if ct != INIT && !self.known[d] {
            self.vtag[d] = m.verification_tag;
            self.known[d] = true;
        }
        self.state = next;
        Outcome::Accept
    }
}
