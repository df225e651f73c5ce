//! TCP tracking scenarios driven with a virtual clock.
mod common;

use common::*;
use podswitch_conntrack::{
    Config, ConnState, Direction, Filter, InvalidReason, Nat, Table, TcpFlags, TcpState, Verdict,
};

fn state(t: &Table) -> TcpState {
    let e = t.entries(&Filter::All);
    assert_eq!(e.len(), 1, "exactly one entry");
    match e[0].state {
        ConnState::Tcp(s) => s,
        other => panic!("not TCP: {other:?}"),
    }
}

#[test]
fn handshake_data_and_client_close() {
    let t = small_table();
    let mut s = Session::new("10.0.0.1", 40000, "10.0.0.2", 80);
    let now = secs(1);
    s.handshake(&t, now);
    assert_eq!(state(&t), TcpState::Established);
    assert!(t.entries(&Filter::All)[0].assured);
    for _ in 0..5 {
        assert_eq!(
            s.send(&t, true, PSHACK, 100, now).verdict,
            Verdict::Established
        );
        assert_eq!(s.send(&t, false, PSHACK, 1400, now).verdict, Verdict::Reply);
    }
    // Client closes first.
    assert_eq!(s.send(&t, true, FIN, 0, now).verdict, Verdict::Established);
    assert_eq!(state(&t), TcpState::FinWait);
    assert_eq!(s.send(&t, false, ACK, 0, now).verdict, Verdict::Reply);
    assert_eq!(state(&t), TcpState::CloseWait);
    assert_eq!(s.send(&t, false, FIN, 0, now).verdict, Verdict::Reply);
    assert_eq!(state(&t), TcpState::LastAck);
    assert_eq!(s.send(&t, true, ACK, 0, now).verdict, Verdict::Established);
    assert_eq!(state(&t), TcpState::TimeWait);
    let e = t.entries(&Filter::All)[0];
    assert_eq!(e.packets, [9, 8]);
    // TIME_WAIT lasts 120 s by default.
    assert_eq!(e.expires, secs(121));
    t.check_invariants().unwrap();
}

#[test]
fn server_closes_first() {
    let t = small_table();
    let mut s = Session::new("fd00::1", 40000, "fd00::2", 443);
    let now = secs(10);
    s.handshake(&t, now);
    assert_eq!(s.send(&t, false, PSHACK, 10, now).verdict, Verdict::Reply);
    assert_eq!(s.send(&t, false, FIN, 0, now).verdict, Verdict::Reply);
    assert_eq!(state(&t), TcpState::FinWait);
    assert_eq!(s.send(&t, true, ACK, 0, now).verdict, Verdict::Established);
    assert_eq!(s.send(&t, true, FIN, 0, now).verdict, Verdict::Established);
    assert_eq!(state(&t), TcpState::LastAck);
    assert_eq!(s.send(&t, false, ACK, 0, now).verdict, Verdict::Reply);
    assert_eq!(state(&t), TcpState::TimeWait);
}

#[test]
fn simultaneous_open() {
    let t = small_table();
    let mut s = Session::new("10.0.0.1", 5000, "10.0.0.2", 6000);
    let now = secs(1);
    // Both send SYN; each then answers the other's SYN with a SYN/ACK (RFC 9293 figure 7).
    let a_syn = s.meta(true, SYN, 0);
    let b_syn = s.meta(false, SYN, 0);
    assert_eq!(t.lookup(&a_syn, now).verdict, Verdict::New);
    assert_eq!(
        t.commit(&a_syn, Nat::NONE, now).unwrap().verdict,
        Verdict::New
    );
    assert_eq!(t.lookup(&b_syn, now).verdict, Verdict::Reply);
    assert_eq!(state(&t), TcpState::SynSent2);
    s.advance(true, SYN, 0);
    s.advance(false, SYN, 0);
    // Each side's SYN/ACK re-sends its own SYN's sequence number.
    let mut a = s;
    a.client.seq -= 1;
    let a_synack = a.meta(true, SYNACK, 0);
    let mut b = s;
    b.server.seq -= 1;
    let b_synack = b.meta(false, SYNACK, 0);
    assert_eq!(t.lookup(&a_synack, now).verdict, Verdict::Established);
    assert_eq!(state(&t), TcpState::SynRecv);
    assert_eq!(t.lookup(&b_synack, now).verdict, Verdict::Reply);
    assert_eq!(s.send(&t, true, ACK, 0, now).verdict, Verdict::Established);
    assert_eq!(s.send(&t, false, ACK, 0, now).verdict, Verdict::Reply);
    assert_eq!(state(&t), TcpState::Established);
    assert_eq!(s.send(&t, false, PSHACK, 100, now).verdict, Verdict::Reply);
}

#[test]
fn retransmissions_pass_and_shorten_the_timeout() {
    let cfg = Config {
        shards: 4,
        max_entries: 64,
        ..Config::default()
    };
    let t = Table::new(&cfg);
    let mut s = Session::new("10.0.0.1", 1234, "10.0.0.2", 80);
    let now = secs(1);
    // A retransmitted SYN (same ISN) is fine and keeps SYN_SENT.
    let syn = s.meta(true, SYN, 0);
    assert_eq!(
        t.commit(&syn, Nat::NONE, now).unwrap().verdict,
        Verdict::New
    );
    assert_eq!(t.lookup(&syn, secs(2)).verdict, Verdict::Established);
    assert_eq!(state(&t), TcpState::SynSent);
    s.advance(true, SYN, 0);
    // Retransmitted SYN/ACK is ignored but passes.
    let synack = s.meta(false, SYNACK, 0);
    assert_eq!(t.lookup(&synack, now).verdict, Verdict::Reply);
    assert_eq!(t.lookup(&synack, now).verdict, Verdict::Reply);
    s.advance(false, SYNACK, 0);
    assert_eq!(s.send(&t, true, ACK, 0, now).verdict, Verdict::Established);
    // A data segment retransmitted (same seq) is in window.
    let data = s.meta(true, PSHACK, 500);
    for _ in 0..5 {
        assert_eq!(t.lookup(&data, now).verdict, Verdict::Established);
    }
    // Unacknowledged data and identical retransmissions cap the 5-day timeout at 300 s.
    let e = t.entries(&Filter::All)[0];
    assert_eq!(e.expires, secs(301));
    s.advance(true, PSHACK, 500);
    // Once acknowledged the established timeout is back.
    assert_eq!(s.send(&t, false, ACK, 0, now).verdict, Verdict::Reply);
    assert_eq!(t.entries(&Filter::All)[0].expires, secs(1 + 5 * 24 * 3600));
}

#[test]
fn out_of_window_data_and_acks_are_invalid() {
    let t = small_table();
    let mut s = Session::new("10.0.0.1", 1234, "10.0.0.2", 80);
    let now = secs(1);
    s.handshake(&t, now);
    // Data far beyond the advertised window.
    let mut far = s;
    far.client.seq = far.client.seq.wrapping_add(10_000_000);
    assert_eq!(
        t.lookup(&far.meta(true, PSHACK, 100), now).verdict,
        Verdict::Invalid(InvalidReason::TcpSeqAboveWindow)
    );
    // Old data: ends before the window.
    let mut old = s;
    old.client.seq = old.client.seq.wrapping_sub(5_000_000);
    assert_eq!(
        t.lookup(&old.meta(true, PSHACK, 100), now).verdict,
        Verdict::Invalid(InvalidReason::TcpSeqBelowWindow)
    );
    // ACK of data never sent.
    let mut ahead = s;
    ahead.server.ack = ahead.server.ack.wrapping_add(1_000_000);
    assert_eq!(
        t.lookup(&ahead.meta(false, ACK, 0), now).verdict,
        Verdict::Invalid(InvalidReason::TcpAckAboveWindow)
    );
    // ACK far in the past.
    let mut behind = s;
    behind.server.ack = behind.server.ack.wrapping_sub(1_000_000);
    assert_eq!(
        t.lookup(&behind.meta(false, ACK, 0), now).verdict,
        Verdict::Invalid(InvalidReason::TcpAckBelowWindow)
    );
    // The connection is unharmed and the counters saw each reason.
    assert_eq!(
        s.send(&t, true, PSHACK, 10, now).verdict,
        Verdict::Established
    );
    let st = t.stats();
    for r in [
        InvalidReason::TcpSeqAboveWindow,
        InvalidReason::TcpSeqBelowWindow,
        InvalidReason::TcpAckAboveWindow,
        InvalidReason::TcpAckBelowWindow,
    ] {
        assert_eq!(st.invalid(r), 1, "{r:?}");
    }
}

#[test]
fn invalid_flags_and_no_connection() {
    let t = small_table();
    let s = Session::new("10.0.0.1", 1234, "10.0.0.2", 80);
    let now = secs(1);
    let xmas = s.meta(true, TcpFlags(0x29), 0);
    assert_eq!(
        t.lookup(&xmas, now).verdict,
        Verdict::Invalid(InvalidReason::TcpFlags)
    );
    let synfin = s.meta(true, TcpFlags(0x03), 0);
    assert_eq!(
        t.lookup(&synfin, now).verdict,
        Verdict::Invalid(InvalidReason::TcpFlags)
    );
    let ack = s.meta(true, ACK, 0);
    assert_eq!(
        t.lookup(&ack, now).verdict,
        Verdict::Invalid(InvalidReason::TcpNoConnection)
    );
    assert!(t.commit(&ack, Nat::NONE, now).is_err());
    assert_eq!(t.occupancy(), 0);
    let mut s2 = s;
    s2.handshake(&t, now);
    let xmas = s2.meta(true, TcpFlags(0x29), 0);
    assert_eq!(
        t.lookup(&xmas, now).verdict,
        Verdict::Invalid(InvalidReason::TcpFlags)
    );
    // SYN/ACK from the client of an established connection is invalid.
    assert_eq!(
        t.lookup(&s2.meta(true, SYNACK, 0), now).verdict,
        Verdict::Invalid(InvalidReason::TcpState)
    );
    assert_eq!(t.stats().invalid(InvalidReason::TcpFlags), 3);
}

#[test]
fn loose_pickup_is_a_config_choice() {
    let t = Table::new(&Config {
        tcp_loose: true,
        shards: 4,
        max_entries: 16,
        ..Config::default()
    });
    let mut s = Session::new("10.0.0.1", 1234, "10.0.0.2", 80);
    s.client.ack = 777;
    s.server.seq = 777;
    let now = secs(1);
    let mid = s.meta(true, PSHACK, 100);
    assert_eq!(t.lookup(&mid, now).verdict, Verdict::New);
    assert_eq!(
        t.commit(&mid, Nat::NONE, now).unwrap().verdict,
        Verdict::New
    );
    s.advance(true, PSHACK, 100);
    assert_eq!(s.send(&t, false, PSHACK, 50, now).verdict, Verdict::Reply);
    assert_eq!(s.send(&t, true, ACK, 0, now).verdict, Verdict::Established);
    assert_eq!(state(&t), TcpState::Established);
}

#[test]
fn rst_in_window_closes_out_of_window_is_invalid() {
    let t = small_table();
    let mut s = Session::new("10.0.0.1", 1234, "10.0.0.2", 80);
    let now = secs(1);
    s.handshake(&t, now);
    s.send(&t, true, PSHACK, 100, now);
    s.send(&t, false, ACK, 0, now);
    // RST below what the peer already acknowledged.
    let mut stale = s;
    stale.client.seq = stale.client.seq.wrapping_sub(50);
    assert_eq!(
        t.lookup(&stale.meta(true, RST, 0), now).verdict,
        Verdict::Invalid(InvalidReason::TcpRst)
    );
    // RST far beyond the window.
    let mut far = s;
    far.client.seq = far.client.seq.wrapping_add(100_000_000);
    assert!(matches!(
        t.lookup(&far.meta(true, RST, 0), now).verdict,
        Verdict::Invalid(_)
    ));
    // In-window but not exact (RFC 5961 §3.2): passes, connection kept.
    let mut near = s;
    near.client.seq = near.client.seq.wrapping_add(10);
    assert_eq!(
        t.lookup(&near.meta(true, RST, 0), now).verdict,
        Verdict::Established
    );
    assert_eq!(state(&t), TcpState::Established);
    // Exact RST closes.
    assert_eq!(
        t.lookup(&s.meta(true, RST, 0), now).verdict,
        Verdict::Established
    );
    assert_eq!(state(&t), TcpState::Close);
    assert_eq!(t.entries(&Filter::All)[0].expires, secs(11));
}

#[test]
fn rst_answering_a_syn_removes_the_entry() {
    let t = small_table();
    let mut s = Session::new("10.0.0.1", 1234, "10.0.0.2", 81);
    let now = secs(1);
    assert_eq!(s.send(&t, true, SYN, 0, now).verdict, Verdict::New);
    // Closed port: RST+ACK with seq 0 acknowledging the SYN.
    let rst = s.meta(false, TcpFlags(TcpFlags::RST.0 | TcpFlags::ACK.0), 0);
    assert_eq!(t.lookup(&rst, now).verdict, Verdict::Reply);
    assert_eq!(t.occupancy(), 0);
    t.check_invariants().unwrap();
}

#[test]
fn syn_to_time_wait_reopens() {
    let t = small_table();
    let mut s = Session::new("10.0.0.1", 1234, "10.0.0.2", 80);
    let now = secs(1);
    s.handshake(&t, now);
    s.send(&t, true, FIN, 0, now);
    s.send(&t, false, FIN, 0, now);
    s.send(&t, true, ACK, 0, now);
    assert_eq!(state(&t), TcpState::TimeWait);
    // A new SYN with a higher ISN: the old entry goes, the packet is new again.
    let mut again = s.with_isn(s.client.seq.wrapping_add(100_000), 9_000_000);
    let syn = again.meta(true, SYN, 0);
    assert_eq!(t.lookup(&syn, secs(2)).verdict, Verdict::New);
    assert_eq!(t.occupancy(), 0);
    assert_eq!(
        t.commit(&syn, Nat::NONE, secs(2)).unwrap().verdict,
        Verdict::New
    );
    again.advance(true, SYN, 0);
    assert_eq!(
        again.send(&t, false, SYNACK, 0, secs(2)).verdict,
        Verdict::Reply
    );
    assert_eq!(
        again.send(&t, true, ACK, 0, secs(2)).verdict,
        Verdict::Established
    );
    assert_eq!(state(&t), TcpState::Established);
    // Committing the reopening SYN directly (without a lookup first) also replaces the entry.
    again.send(&t, true, FIN, 0, secs(3));
    again.send(&t, false, FIN, 0, secs(3));
    again.send(&t, true, ACK, 0, secs(3));
    assert_eq!(state(&t), TcpState::TimeWait);
    let third = again.with_isn(again.client.seq.wrapping_add(100_000), 1);
    let l = t
        .commit(&third.meta(true, SYN, 0), Nat::NONE, secs(4))
        .unwrap();
    assert_eq!(l.verdict, Verdict::New);
    assert!(l.handle.is_some());
    assert_eq!(state(&t), TcpState::SynSent);
    t.check_invariants().unwrap();
}

#[test]
fn window_scaling_is_applied_only_when_both_sides_offer_it() {
    // Both offer scaling: the server advertises 1000 << 7 = 128000 bytes, so a segment 100 kB
    // ahead is in window.
    let t = small_table();
    let mut s = Session::new("10.0.0.1", 1234, "10.0.0.2", 80);
    s.client.wscale = Some(7);
    s.server.wscale = Some(7);
    s.client.window = 1000;
    s.server.window = 1000;
    let now = secs(1);
    s.handshake(&t, now);
    s.send(&t, false, ACK, 0, now); // a scaled window update from the server
    let mut ahead = s;
    ahead.client.seq = ahead.client.seq.wrapping_add(100_000);
    assert_eq!(
        t.lookup(&ahead.meta(true, PSHACK, 100), now).verdict,
        Verdict::Established
    );

    // Only the client offers it: windows are not scaled, 100 kB ahead is out of window.
    let t = small_table();
    let mut s = Session::new("10.0.0.1", 1234, "10.0.0.2", 80);
    s.client.wscale = Some(7);
    s.client.window = 1000;
    s.server.window = 1000;
    s.handshake(&t, now);
    s.send(&t, false, ACK, 0, now);
    let mut ahead = s;
    ahead.client.seq = ahead.client.seq.wrapping_add(100_000);
    assert_eq!(
        t.lookup(&ahead.meta(true, PSHACK, 100), now).verdict,
        Verdict::Invalid(InvalidReason::TcpSeqAboveWindow)
    );
}

#[test]
fn sequence_numbers_wrap() {
    let t = small_table();
    let mut s = Session::new("10.0.0.1", 1234, "10.0.0.2", 80).with_isn(0xffff_ff00, 0xffff_fff0);
    let now = secs(1);
    s.handshake(&t, now);
    for _ in 0..10 {
        assert_eq!(
            s.send(&t, true, PSHACK, 100, now).verdict,
            Verdict::Established
        );
        assert_eq!(s.send(&t, false, ACK, 0, now).verdict, Verdict::Reply);
    }
    assert!(s.client.seq < 0x1000, "wrapped");
}

#[test]
fn handle_update_matches_lookup_and_goes_stale() {
    let t = small_table();
    let mut s = Session::new("10.0.0.1", 1234, "10.0.0.2", 80);
    let now = secs(1);
    s.handshake(&t, now);
    let m = s.meta(true, PSHACK, 10);
    let l = t.lookup(&m, now);
    let h = l.handle.unwrap();
    assert_eq!(h.direction(), Direction::Original);
    s.advance(true, PSHACK, 10);
    let m = s.meta(true, PSHACK, 10);
    assert_eq!(t.update(h, &m, now).unwrap().verdict, Verdict::Established);
    // A packet of the other direction does not match the handle.
    assert!(t.update(h, &s.meta(false, ACK, 0), now).is_none());
    // Nor do packets of other connections (the check reads a fingerprint of the key, not the
    // key: every neighbouring tuple must still be told apart).
    for (sp, dst, dp) in [
        (1235, "10.0.0.2", 80),
        (1234, "10.0.0.3", 80),
        (1234, "10.0.0.2", 81),
    ] {
        let mut other = Session::new("10.0.0.1", sp, dst, dp);
        other.handshake(&t, now);
        assert!(
            t.update(h, &other.meta(true, ACK, 0), now).is_none(),
            "{sp} {dst} {dp}"
        );
    }
    assert!(t.remove(h));
    assert!(t.update(h, &m, now).is_none());
    assert!(!t.remove(h));
}

#[test]
fn expiry_is_lazy_and_swept() {
    let t = small_table();
    let mut s = Session::new("10.0.0.1", 1234, "10.0.0.2", 80);
    s.send(&t, true, SYN, 0, secs(0));
    // SYN_SENT lasts 120 s.
    assert_eq!(t.sweep(secs(119), 1 << 20), 0);
    assert_eq!(t.occupancy(), 1);
    assert_eq!(t.sweep(secs(120), 1 << 20), 1);
    assert_eq!(t.occupancy(), 0);
    // Lazy: an expired entry found by lookup is removed and the SYN/ACK has no connection.
    let mut s = Session::new("10.0.0.1", 1235, "10.0.0.2", 80);
    s.send(&t, true, SYN, 0, secs(0));
    let synack = s.meta(false, SYNACK, 0);
    assert_eq!(
        t.lookup(&synack, secs(500)).verdict,
        Verdict::Invalid(InvalidReason::TcpNoConnection)
    );
    assert_eq!(t.occupancy(), 0);
    assert_eq!(t.stats().expirations, 2);
}

#[test]
fn sweep_is_incremental() {
    let t = Table::new(&Config {
        max_entries: 4096,
        shards: 64,
        ..Config::default()
    });
    for i in 0..1000u16 {
        let mut s = Session::new("10.0.0.1", 1000 + i, "10.0.0.2", 80);
        s.send(&t, true, SYN, 0, secs(0));
    }
    let mut removed = 0;
    let mut rounds = 0;
    while t.occupancy() > 0 {
        let n = t.sweep(secs(1000), 100);
        assert!(n <= 100);
        removed += n;
        rounds += 1;
        assert!(rounds < 1000, "sweep makes progress");
    }
    assert_eq!(removed, 1000);
    assert!(rounds > 10, "work was spread over many calls");
    t.check_invariants().unwrap();
}

#[test]
fn ignored_syn_then_answering_synack_resynchronises() {
    // The firewall holds an ESTABLISHED entry the client has forgotten (e.g. it rebooted): its
    // new SYN is let through unchanged ("ignored"), and the server's SYN/ACK acknowledging that
    // SYN resynchronises the entry, as nf_conntrack does.
    let t = small_table();
    let mut s = Session::new("10.0.0.1", 1234, "10.0.0.2", 80);
    let now = secs(1);
    s.handshake(&t, now);
    let mut fresh = s.with_isn(0x7000_0000, 0x0900_0000);
    let syn = fresh.meta(true, SYN, 0);
    assert_eq!(t.lookup(&syn, now).verdict, Verdict::Established);
    assert_eq!(state(&t), TcpState::Established, "ignored: no state change");
    fresh.advance(true, SYN, 0);
    assert_eq!(
        fresh.send(&t, false, SYNACK, 0, now).verdict,
        Verdict::Reply
    );
    assert_eq!(state(&t), TcpState::SynRecv);
    assert_eq!(
        fresh.send(&t, true, ACK, 0, now).verdict,
        Verdict::Established
    );
    assert_eq!(state(&t), TcpState::Established);
    assert_eq!(
        fresh.send(&t, true, PSHACK, 100, now).verdict,
        Verdict::Established
    );
    assert_eq!(fresh.send(&t, false, ACK, 0, now).verdict, Verdict::Reply);
}
