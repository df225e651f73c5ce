//! TCP connection tracking: the state machine and sequence-window checks of Linux
//! `nf_conntrack_proto_tcp.c`, which implements Guido van Rooij's "Real Stateful TCP Packet
//! Filtering in IP Filter" (per direction: `td_end`, the highest sequence number sent plus its
//! length; `td_maxend`, the highest right edge of the window the peer advertised; `td_maxwin`, the
//! largest window seen).
//!
//! A segment is in window when (I) `seq <= sender.td_maxend`, (II) `end >= sender.td_end -
//! receiver.td_maxwin`, (III) `ack <= receiver.td_end` and (IV) `ack >= receiver.td_end -
//! MAXACKWINDOW`. Windows are scaled per RFC 7323 §2.2 only when both SYNs carried the option.
//! SACK blocks are not read (the meta carries none): `sack == ack`, which is stricter, never
//! looser. All sequence comparisons are modulo 2^32 (RFC 9293 §3.4). No allocation, no I/O;
//! a `TcpConn` is plain data protected by its table shard's lock.

use crate::Direction;
use crate::meta::{TcpFlags, TcpMeta};
use crate::proto::Outcome;
use crate::table::InvalidReason;

/// The connection states of nf_conntrack's TCP tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// No packet yet (never stored).
    None = 0,
    /// A SYN was seen.
    SynSent = 1,
    /// A SYN/ACK was seen.
    SynRecv = 2,
    /// The handshake's final ACK was seen.
    Established = 3,
    /// A FIN was seen.
    FinWait = 4,
    /// The FIN was acknowledged.
    CloseWait = 5,
    /// FINs were seen in both directions.
    LastAck = 6,
    /// The last FIN was acknowledged.
    TimeWait = 7,
    /// The connection was reset.
    Close = 8,
    /// SYNs were seen in both directions (simultaneous open, RFC 9293 §3.5 figure 7).
    SynSent2 = 9,
}

const S_NO: u8 = 0;
const S_SS: u8 = 1;
const S_SR: u8 = 2;
const S_ES: u8 = 3;
const S_FW: u8 = 4;
const S_CW: u8 = 5;
const S_LA: u8 = 6;
const S_TW: u8 = 7;
const S_CL: u8 = 8;
const S_S2: u8 = 9;
/// Invalid transition.
const S_IV: u8 = 10;
/// Ignored: the packet may be valid but we are out of sync; let it pass without a state change.
const S_IG: u8 = 11;

const STATES: [TcpState; 10] = [
    TcpState::None,
    TcpState::SynSent,
    TcpState::SynRecv,
    TcpState::Established,
    TcpState::FinWait,
    TcpState::CloseWait,
    TcpState::LastAck,
    TcpState::TimeWait,
    TcpState::Close,
    TcpState::SynSent2,
];

const I_SYN: u8 = 0;
const I_SYNACK: u8 = 1;
const I_FIN: u8 = 2;
const I_ACK: u8 = 3;
const I_RST: u8 = 4;
const I_NONE: u8 = 5;

/// `tcp_conntracks[dir][flag index][old state]`, as in Linux (v6.x).
#[rustfmt::skip]
const TRANSITIONS: [[[u8; 10]; 6]; 2] = [
    [
        // ORIGINAL  sNO   sSS   sSR   sES   sFW   sCW   sLA   sTW   sCL   sS2
        /* syn    */ [S_SS, S_SS, S_IG, S_IG, S_IG, S_IG, S_IG, S_SS, S_SS, S_S2],
        /* synack */ [S_IV, S_IV, S_SR, S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, S_SR],
        /* fin    */ [S_IV, S_IV, S_FW, S_FW, S_LA, S_LA, S_LA, S_TW, S_CL, S_IV],
        /* ack    */ [S_ES, S_IV, S_ES, S_ES, S_CW, S_CW, S_TW, S_TW, S_CL, S_IV],
        /* rst    */ [S_IV, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL],
        /* none   */ [S_IV; 10],
    ],
    [
        // REPLY     sNO   sSS   sSR   sES   sFW   sCW   sLA   sTW   sCL   sS2
        /* syn    */ [S_IV, S_S2, S_IV, S_IV, S_IV, S_IV, S_IV, S_SS, S_IV, S_S2],
        /* synack */ [S_IV, S_SR, S_IG, S_IG, S_IG, S_IG, S_IG, S_IG, S_IG, S_SR],
        /* fin    */ [S_IV, S_IV, S_FW, S_FW, S_LA, S_LA, S_LA, S_TW, S_CL, S_IV],
        /* ack    */ [S_IV, S_IG, S_SR, S_ES, S_CW, S_CW, S_TW, S_TW, S_CL, S_IG],
        /* rst    */ [S_IV, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL, S_CL],
        /* none   */ [S_IV; 10],
    ],
];

/// Per-direction window-tracking flags.
const F_WINDOW_SCALE: u8 = 0x01;
const F_SACK_PERM: u8 = 0x02;
const F_CLOSE_INIT: u8 = 0x04;
const F_BE_LIBERAL: u8 = 0x08;
const F_DATA_UNACK: u8 = 0x10;
const F_MAXACK_SET: u8 = 0x20;

/// The largest ACK window accepted below `td_end` (nf_conntrack's MAXACKWINCONST).
const MAXACKWINCONST: u32 = 66000;

#[inline]
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[inline]
fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// Window tracking of one direction (the sender's view).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Seen {
    td_end: u32,
    td_maxend: u32,
    td_maxwin: u32,
    td_maxack: u32,
    td_scale: u8,
    flags: u8,
}

impl Seen {
    const EMPTY: Seen = Seen {
        td_end: 0,
        td_maxend: 0,
        td_maxwin: 0,
        td_maxack: 0,
        td_scale: 0,
        flags: 0,
    };
}

/// The TCP part of a conntrack entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpConn {
    seen: [Seen; 2],
    state: u8,
    last_index: u8,
    last_dir: u8,
    retrans: u8,
    last_wscale: u8,
    last_flags: u8,
    last_seq: u32,
    last_ack: u32,
    last_end: u32,
    last_win: u32,
}

#[inline]
fn flag_index(f: TcpFlags) -> u8 {
    if f.contains(TcpFlags::RST) {
        I_RST
    } else if f.contains(TcpFlags::SYN) {
        if f.contains(TcpFlags::ACK) {
            I_SYNACK
        } else {
            I_SYN
        }
    } else if f.contains(TcpFlags::FIN) {
        I_FIN
    } else if f.contains(TcpFlags::ACK) {
        I_ACK
    } else {
        I_NONE
    }
}

/// The flag combinations nf_conntrack accepts (`tcp_valid_flags`), ignoring PSH, ECE and CWR.
pub(crate) fn valid_flags(f: TcpFlags) -> bool {
    const FIN: u8 = TcpFlags::FIN.0;
    const SYN: u8 = TcpFlags::SYN.0;
    const RST: u8 = TcpFlags::RST.0;
    const ACK: u8 = TcpFlags::ACK.0;
    const URG: u8 = TcpFlags::URG.0;
    let f = f.0 & (FIN | SYN | RST | ACK | URG);
    matches!(
        f,
        x if x == SYN
            || x == SYN | URG
            || x == SYN | ACK
            || x == RST
            || x == RST | ACK
            || x == FIN | ACK
            || x == FIN | ACK | URG
            || x == ACK
            || x == ACK | URG
    )
}

/// `seq + len`, counting SYN and FIN as one sequence number each (RFC 9293 §3.4).
#[inline]
fn segment_end(t: &TcpMeta) -> u32 {
    t.seq
        .wrapping_add(t.payload_len)
        .wrapping_add(u32::from(t.flags.contains(TcpFlags::SYN)))
        .wrapping_add(u32::from(t.flags.contains(TcpFlags::FIN)))
}

/// Reads the SYN options into `s` (window scale capped at 14, RFC 7323 §2.3).
fn options(t: &TcpMeta, s: &mut Seen) {
    if let Some(ws) = t.window_scale {
        s.flags |= F_WINDOW_SCALE;
        s.td_scale = ws.min(14);
    }
    if t.sack_permitted {
        s.flags |= F_SACK_PERM;
    }
}

/// Why a segment that is not in window failed, in the order nf_conntrack reports it.
fn window_reason(seq_ok: bool, in_recv_win: bool, ack_le: bool) -> InvalidReason {
    if !seq_ok {
        InvalidReason::TcpSeqAboveWindow
    } else if !in_recv_win {
        InvalidReason::TcpSeqBelowWindow
    } else if !ack_le {
        InvalidReason::TcpAckAboveWindow
    } else {
        InvalidReason::TcpAckBelowWindow
    }
}

impl TcpConn {
    /// Whether `t` may start a connection: a SYN, or (with `loose`) any valid segment but a RST.
    /// Flag combinations nf_conntrack calls invalid never start one.
    pub(crate) fn check_new(t: &TcpMeta, loose: bool) -> Result<(), InvalidReason> {
        if !valid_flags(t.flags) {
            return Err(InvalidReason::TcpFlags);
        }
        let state = TRANSITIONS[0][usize::from(flag_index(t.flags))][usize::from(S_NO)];
        if state == S_SS || (loose && state == S_ES) {
            Ok(())
        } else if state == S_IV || state == S_ES {
            Err(InvalidReason::TcpNoConnection)
        } else {
            Err(InvalidReason::TcpState)
        }
    }

    /// The entry created by the first segment `t` (`tcp_new`); call [`check_new`] first, then
    /// [`packet`](Self::packet) with the same segment in the original direction.
    pub(crate) fn new(t: &TcpMeta) -> TcpConn {
        let mut c = TcpConn::EMPTY;
        c.start(t);
        c
    }

    /// No segment seen.
    pub(crate) const EMPTY: TcpConn = TcpConn {
        seen: [Seen::EMPTY; 2],
        state: S_NO,
        last_index: I_NONE,
        last_dir: 0,
        retrans: 0,
        last_wscale: 0,
        last_flags: 0,
        last_seq: 0,
        last_ack: 0,
        last_end: 0,
        last_win: 0,
    };

    /// Records the first segment `t` into an [`EMPTY`](Self::EMPTY) state, in place (what
    /// [`new`](Self::new) returns; a table writes it straight into a fresh entry).
    #[inline]
    pub(crate) fn start(&mut self, t: &TcpMeta) {
        let s = &mut self.seen[0];
        s.td_end = segment_end(t);
        s.td_maxwin = u32::from(t.window).max(1);
        if t.flags.contains(TcpFlags::SYN) {
            s.td_maxend = s.td_end;
            options(t, s);
        } else {
            // Mid-stream pickup: the history is lost, so be liberal in both directions, as
            // nf_conntrack does with `tcp_loose`.
            s.td_maxend = s.td_end.wrapping_add(s.td_maxwin);
            self.seen[0].flags = F_SACK_PERM | F_BE_LIBERAL;
            self.seen[1].flags = F_SACK_PERM | F_BE_LIBERAL;
        }
    }

    pub(crate) fn state(&self) -> TcpState {
        STATES[usize::from(self.state.min(S_S2))]
    }

    /// Whether either side has unacknowledged data.
    pub(crate) fn data_unacknowledged(&self) -> bool {
        (self.seen[0].flags | self.seen[1].flags) & F_DATA_UNACK != 0
    }

    pub(crate) fn retransmissions(&self) -> u8 {
        self.retrans
    }

    /// Processes a segment of an existing connection (`tcp_packet`). `replied` / `assured` are
    /// the entry's status before this packet; the caller sets `assured` when this returns
    /// `Accept` and [`becomes_assured`](Self::becomes_assured) held.
    #[inline(always)]
    pub(crate) fn packet(
        &mut self,
        dir: Direction,
        t: &TcpMeta,
        replied: bool,
        assured: bool,
    ) -> Outcome {
        if !valid_flags(t.flags) {
            return Outcome::Invalid(InvalidReason::TcpFlags);
        }
        let d = dir.index();
        let index = flag_index(t.flags);
        let mut old_state = self.state;
        let mut new_state = TRANSITIONS[d][usize::from(index)][usize::from(old_state.min(S_S2))];
        let mut skip_window = false;

        match new_state {
            S_SS | S_IG => {
                if new_state == S_SS && old_state < S_TW {
                    // Retransmitted SYN, or the original SYN.
                } else {
                    if new_state == S_SS
                        && ((self.seen[d].flags | self.seen[1 - d].flags) & F_CLOSE_INIT != 0
                            || (usize::from(self.last_dir) == d && self.last_index == I_RST))
                    {
                        // Reopening a closed or aborted connection: the caller deletes the
                        // entry and the packet is looked up again as new.
                        return Outcome::Reopen;
                    }
                    if index == I_SYNACK
                        && self.last_index == I_SYN
                        && usize::from(self.last_dir) != d
                        && t.ack == self.last_end
                    {
                        // This SYN/ACK acknowledges a SYN we ignored: client and server are in
                        // sync, we are not. Resynchronise from the annotated SYN.
                        let ld = usize::from(self.last_dir);
                        old_state = S_SS;
                        new_state = S_SR;
                        self.seen[ld] = Seen {
                            td_end: self.last_end,
                            td_maxend: self.last_end,
                            td_maxwin: self.last_win.max(1),
                            td_maxack: 0,
                            td_scale: self.last_wscale,
                            flags: self.last_flags,
                        };
                        self.seen[d] = Seen::default();
                    } else {
                        // Annotate and let it through unchanged.
                        self.last_index = index;
                        self.last_dir = d as u8;
                        self.last_seq = t.seq;
                        self.last_ack = t.ack;
                        self.last_end = segment_end(t);
                        self.last_win = u32::from(t.window);
                        if index == I_SYN && dir == Direction::Original {
                            let mut s = Seen::default();
                            options(t, &mut s);
                            self.last_flags = s.flags;
                            self.last_wscale = s.td_scale;
                        } else {
                            self.last_flags = 0;
                            self.last_wscale = 0;
                        }
                        return Outcome::Ignore;
                    }
                }
            }
            S_IV => return Outcome::Invalid(InvalidReason::TcpState),
            S_CL if index == I_RST => {
                let other = &self.seen[1 - d];
                if other.flags & F_MAXACK_SET != 0 {
                    if before(t.seq, other.td_maxack) {
                        // The peer already acknowledged beyond this RST's sequence number.
                        return Outcome::Invalid(InvalidReason::TcpRst);
                    }
                    let exact = t.seq == other.td_maxack;
                    let train = self.last_index == I_ACK
                        && usize::from(self.last_dir) == d
                        && t.seq == self.last_end;
                    if old_state == S_ES && !exact && !train {
                        // RFC 5961 §3.2: an in-window RST not at the expected sequence number
                        // only triggers a challenge ACK; keep the connection, pass the RST.
                        if self.in_window(d, index, t) {
                            return Outcome::Ignore;
                        }
                        return Outcome::Invalid(InvalidReason::TcpSeqAboveWindow);
                    }
                }
                if ((replied && self.last_index == I_SYN) || (!assured && self.last_index == I_ACK))
                    && t.ack == self.last_end
                {
                    // RST answering a SYN or ACK we let through while out of sync.
                    skip_window = true;
                }
            }
            _ => {}
        }

        if !skip_window && !self.in_window(d, index, t) {
            return Outcome::Invalid(self.last_reason(d, t));
        }

        self.last_index = index;
        self.last_dir = d as u8;
        if old_state != new_state && new_state == S_FW {
            self.seen[d].flags |= F_CLOSE_INIT;
        }
        self.state = new_state;
        if !replied && t.flags.contains(TcpFlags::RST) && dir == Direction::Reply {
            // "If only reply is a RST, we can consider ourselves not to have an established
            // connection" (nf_conntrack): remove the entry at once.
            return Outcome::AcceptAndRemove;
        }
        Outcome::Accept
    }

    /// Whether this accepted packet makes the entry assured (a valid ACK in ESTABLISHED after
    /// SYN_RECV, or a valid answer for a picked-up connection).
    pub(crate) fn becomes_assured(&self, old: TcpState, replied: bool) -> bool {
        replied && matches!(old, TcpState::SynRecv | TcpState::Established) && self.state == S_ES
    }

    /// Recomputes why the window check failed (only on the rejection path).
    fn last_reason(&self, d: usize, t: &TcpMeta) -> InvalidReason {
        let sender = &self.seen[d];
        let receiver = &self.seen[1 - d];
        let mut seq = t.seq;
        let mut end = segment_end(t);
        let ack = if t.flags.contains(TcpFlags::ACK) {
            t.ack
        } else {
            receiver.td_end
        };
        if t.flags.contains(TcpFlags::RST) && seq == 0 && self.state == S_SS {
            seq = sender.td_end;
            end = seq;
        }
        let seq_ok = before(seq, sender.td_maxend.wrapping_add(1));
        let in_recv_win = receiver.td_maxwin == 0
            || after(
                end,
                sender
                    .td_end
                    .wrapping_sub(receiver.td_maxwin)
                    .wrapping_sub(1),
            );
        let ack_le = before(ack, receiver.td_end.wrapping_add(1));
        window_reason(seq_ok, in_recv_win, ack_le)
    }

    /// `tcp_in_window`: checks the segment against the window and updates both directions'
    /// tracking when it fits.
    #[inline(always)]
    fn in_window(&mut self, d: usize, index: u8, t: &TcpMeta) -> bool {
        let state = self.state;
        let [s0, s1] = &mut self.seen;
        let (sender, receiver) = if d == 0 { (s0, s1) } else { (s1, s0) };
        let mut seq = t.seq;
        let mut ack = t.ack;
        let mut win = u32::from(t.window);
        let mut end = segment_end(t);
        let syn = t.flags.contains(TcpFlags::SYN);
        let has_ack = t.flags.contains(TcpFlags::ACK);
        let rst = t.flags.contains(TcpFlags::RST);

        if sender.td_maxwin == 0 {
            // First packet of this direction.
            if syn {
                // SYN/ACK answering the SYN, or the reply SYN of a simultaneous open.
                sender.td_end = end;
                sender.td_maxend = end;
                sender.td_maxwin = win.max(1);
                options(t, sender);
                // RFC 7323 §1.3: scaling is used only if both sides sent the option.
                if !(sender.flags & F_WINDOW_SCALE != 0 && receiver.flags & F_WINDOW_SCALE != 0) {
                    sender.td_scale = 0;
                    receiver.td_scale = 0;
                }
                if !has_ack {
                    return true;
                }
            } else {
                // Mid-connection: use what this packet tells.
                sender.td_end = end;
                let swin = win << sender.td_scale;
                sender.td_maxwin = swin.max(1);
                sender.td_maxend = end.wrapping_add(sender.td_maxwin);
                if receiver.td_maxwin == 0 {
                    receiver.td_end = ack;
                    receiver.td_maxend = ack;
                } else if ack == receiver.td_end.wrapping_add(1) {
                    // Likely a reply to a keepalive.
                    receiver.td_end = receiver.td_end.wrapping_add(1);
                }
            }
        } else if ((state == S_SS && d == 0) || (state == S_SR && d == 1))
            && after(end, sender.td_end)
        {
            // RFC 9293: a reinitialised TCP must use higher sequence numbers; a retransmitted
            // SYN (or SYN/ACK) with a new ISN restarts tracking of this direction.
            sender.td_end = end;
            sender.td_maxend = end;
            sender.td_maxwin = win.max(1);
            options(t, sender);
        }

        if !has_ack || (rst && ack == 0) {
            // No ACK (or a broken stack's RST+ACK with ack 0): pretend it acknowledged td_end.
            ack = receiver.td_end;
        }
        if rst && seq == 0 && state == S_SS {
            // RST answering a SYN.
            seq = sender.td_end;
            end = seq;
        }

        let liberal = sender.flags & F_BE_LIBERAL != 0;
        let in_recv_win = receiver.td_maxwin == 0
            || after(
                end,
                sender
                    .td_end
                    .wrapping_sub(receiver.td_maxwin)
                    .wrapping_sub(1),
            );
        let maxackwin = sender.td_maxwin.max(MAXACKWINCONST);
        let ok = before(seq, sender.td_maxend.wrapping_add(1))
            && in_recv_win
            && before(ack, receiver.td_end.wrapping_add(1))
            && after(ack, receiver.td_end.wrapping_sub(maxackwin).wrapping_sub(1));
        if !(ok || liberal) {
            return false;
        }

        if !syn {
            win <<= sender.td_scale;
        }
        // Update the sender.
        let swin = win; // sack == ack
        if sender.td_maxwin < swin {
            sender.td_maxwin = swin;
        }
        if after(end, sender.td_end) {
            sender.td_end = end;
            sender.flags |= F_DATA_UNACK;
        }
        if has_ack {
            if sender.flags & F_MAXACK_SET == 0 {
                sender.td_maxack = ack;
                sender.flags |= F_MAXACK_SET;
            } else if after(ack, sender.td_maxack) {
                sender.td_maxack = ack;
            }
        }
        // Update the receiver.
        if receiver.td_maxwin != 0 && after(end, sender.td_maxend) {
            receiver.td_maxwin = receiver
                .td_maxwin
                .wrapping_add(end.wrapping_sub(sender.td_maxend));
        }
        if after(ack.wrapping_add(win), receiver.td_maxend.wrapping_sub(1)) {
            receiver.td_maxend = ack.wrapping_add(win);
            if win == 0 {
                receiver.td_maxend = receiver.td_maxend.wrapping_add(1);
            }
        }
        if ack == receiver.td_end {
            receiver.flags &= !F_DATA_UNACK;
        }
        // Count identical retransmissions (they shorten the timeout).
        if index == I_ACK {
            if usize::from(self.last_dir) == d
                && self.last_seq == seq
                && self.last_ack == ack
                && self.last_end == end
                && self.last_win == win
            {
                self.retrans = self.retrans.saturating_add(1);
            } else {
                self.last_dir = d as u8;
                self.last_seq = seq;
                self.last_ack = ack;
                self.last_end = end;
                self.last_win = win;
                self.retrans = 0;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_flag_combinations_match_nf_conntrack() {
        let f = |b: u8| valid_flags(TcpFlags(b));
        assert!(f(0x02) && f(0x12) && f(0x10) && f(0x11) && f(0x04) && f(0x14) && f(0x18));
        assert!(!f(0x00), "null scan");
        assert!(!f(0x03), "SYN+FIN");
        assert!(!f(0x01), "FIN without ACK");
        assert!(!f(0x29), "xmas");
        assert!(!f(0x06), "SYN+RST");
    }

    #[test]
    fn sequence_comparisons_wrap() {
        assert!(before(0xffff_fff0, 5));
        assert!(after(5, 0xffff_fff0));
        assert!(!before(5, 5));
    }

    #[test]
    fn only_syn_starts_a_connection_unless_loose() {
        let syn = TcpMeta {
            flags: TcpFlags::SYN,
            ..TcpMeta::default()
        };
        let ack = TcpMeta {
            flags: TcpFlags::ACK,
            ..TcpMeta::default()
        };
        let synack = TcpMeta {
            flags: TcpFlags::SYN | TcpFlags::ACK,
            ..TcpMeta::default()
        };
        assert_eq!(TcpConn::check_new(&syn, false), Ok(()));
        assert_eq!(
            TcpConn::check_new(&ack, false),
            Err(InvalidReason::TcpNoConnection)
        );
        assert_eq!(TcpConn::check_new(&ack, true), Ok(()));
        assert_eq!(
            TcpConn::check_new(&synack, true),
            Err(InvalidReason::TcpNoConnection)
        );
    }
}
