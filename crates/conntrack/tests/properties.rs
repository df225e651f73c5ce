//! Property: for random interleavings of valid packets of many TCP connections (with random
//! idle gaps), a connection that completed its handshake is `Established` — its packets are
//! accepted and its state is ESTABLISHED — until it closes or times out.
mod common;

use std::time::Duration;

use common::*;
use podswitch_conntrack::{
    Config, ConnState, Filter, InvalidReason, Table, TcpState, Timeouts, Tuple, Verdict,
};
use podswitch_wire::IpProtocol;
use proptest::prelude::*;

const EST_TIMEOUT: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Handshake(u8),
    Data(u32),
    Closing(u8),
    Done,
}

struct Conn {
    s: Session,
    phase: Phase,
    last: u64,
}

fn conn_state(t: &Table, s: &Session) -> Option<TcpState> {
    let tuple = Tuple::new(
        s.client.addr,
        s.server.addr,
        IpProtocol::Tcp,
        s.client.port,
        s.server.port,
    );
    t.entries(&Filter::Tuple { zone: 0, tuple })
        .first()
        .map(|e| match e.state {
            ConnState::Tcp(st) => st,
            o => panic!("{o:?}"),
        })
}

fn run(n: usize, steps: &[(usize, u64, u32)]) -> Result<(), TestCaseError> {
    let timeouts = Timeouts {
        tcp_established: Duration::from_secs(EST_TIMEOUT),
        ..Timeouts::default()
    };
    let t = Table::new(&Config {
        max_entries: 256,
        shards: 16,
        timeouts,
        ..Config::default()
    });
    let mut conns: Vec<Conn> = (0..n)
        .map(|i| Conn {
            s: Session::new(
                &format!("10.0.0.{}", i + 1),
                1000 + i as u16,
                "10.0.1.1",
                80,
            )
            .with_isn(
                0x1000_0000u32.wrapping_mul(i as u32 + 1),
                0xf000_0000u32.wrapping_add(i as u32),
            ),
            phase: Phase::Handshake(0),
            last: 0,
        })
        .collect();
    let mut now = 0u64;
    for &(pick, dt, len) in steps {
        now += dt;
        let c = &mut conns[pick % n];
        let idle = now - c.last;
        let at = secs(now);
        match c.phase {
            Phase::Handshake(k) => {
                // Handshake timeouts (60-120 s) may pass: then the connection is abandoned.
                if k > 0 && idle >= 60 {
                    c.phase = Phase::Done;
                    continue;
                }
                let (from_client, flags, expect) = match k {
                    0 => (true, SYN, Verdict::New),
                    1 => (false, SYNACK, Verdict::Reply),
                    _ => (true, ACK, Verdict::Established),
                };
                let v = c.s.send(&t, from_client, flags, 0, at).verdict;
                prop_assert_eq!(v, expect);
                c.phase = if k == 2 {
                    Phase::Data(0)
                } else {
                    Phase::Handshake(k + 1)
                };
            }
            Phase::Data(i) => {
                if idle >= EST_TIMEOUT {
                    // Timed out: the next segment has no connection.
                    let v = c.s.send(&t, true, PSHACK, len, at).verdict;
                    prop_assert_eq!(v, Verdict::Invalid(InvalidReason::TcpNoConnection));
                    c.phase = Phase::Done;
                    continue;
                }
                prop_assert_eq!(conn_state(&t, &c.s), Some(TcpState::Established));
                // Alternate: the client sends data, the server acknowledges; then the reverse.
                let (from_client, flags, l) = match i % 4 {
                    0 => (true, PSHACK, len),
                    1 => (false, ACK, 0),
                    2 => (false, PSHACK, len),
                    _ => (true, ACK, 0),
                };
                let v = c.s.send(&t, from_client, flags, l, at).verdict;
                let expect = if from_client {
                    Verdict::Established
                } else {
                    Verdict::Reply
                };
                prop_assert_eq!(v, expect);
                prop_assert_eq!(conn_state(&t, &c.s), Some(TcpState::Established));
                c.phase = if i >= 8 && len % 3 == 0 {
                    Phase::Closing(0)
                } else {
                    Phase::Data(i + 1)
                };
            }
            Phase::Closing(k) => {
                if idle >= 30 {
                    c.phase = Phase::Done;
                    continue;
                }
                let (from_client, flags) = match k {
                    0 => (true, FIN),
                    1 => (false, ACK),
                    2 => (false, FIN),
                    _ => (true, ACK),
                };
                let v = c.s.send(&t, from_client, flags, 0, at).verdict;
                prop_assert!(
                    matches!(v, Verdict::Established | Verdict::Reply),
                    "{:?}",
                    v
                );
                c.phase = if k == 3 {
                    Phase::Done
                } else {
                    Phase::Closing(k + 1)
                };
                if k == 3 {
                    prop_assert_eq!(conn_state(&t, &c.s), Some(TcpState::TimeWait));
                }
            }
            Phase::Done => continue,
        }
        c.last = now;
        if now.is_multiple_of(7) {
            t.sweep(at, 16);
        }
    }
    t.check_invariants()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn established_until_closed_or_timed_out(
        n in 1usize..10,
        steps in prop::collection::vec((0usize..10, 0u64..45, 1u32..1400), 1..300),
    ) {
        run(n, &steps)?;
    }
}
