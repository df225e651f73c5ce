//! Test helpers: a TCP session simulator that produces the metas of both peers with correct
//! sequence numbers, and small constructors.
#![allow(dead_code)]

use std::net::IpAddr;

use podswitch_conntrack::{
    Config, Instant, L4, Lookup, Nat, PacketMeta, SctpMeta, Table, TcpFlags, TcpMeta, Verdict,
};

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn secs(s: u64) -> Instant {
    Instant::from_secs(s)
}

pub fn small_table() -> Table {
    Table::new(&Config {
        max_entries: 1024,
        shards: 16,
        ..Config::default()
    })
}

pub const SYN: TcpFlags = TcpFlags::SYN;
pub const ACK: TcpFlags = TcpFlags::ACK;
pub const FIN: TcpFlags = TcpFlags(TcpFlags::FIN.0 | TcpFlags::ACK.0);
pub const RST: TcpFlags = TcpFlags::RST;
pub const SYNACK: TcpFlags = TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0);
pub const PSHACK: TcpFlags = TcpFlags(TcpFlags::PSH.0 | TcpFlags::ACK.0);

/// One TCP endpoint's view: next sequence number to send, next expected from the peer.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: IpAddr,
    pub port: u16,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub wscale: Option<u8>,
}

/// A TCP connection between a client and a server, producing metas as each side would send.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    pub client: Peer,
    pub server: Peer,
    pub zone: u16,
}

impl Session {
    pub fn new(client: &str, cport: u16, server: &str, sport: u16) -> Self {
        Session {
            client: Peer {
                addr: ip(client),
                port: cport,
                seq: 1000,
                ack: 0,
                window: 65535,
                wscale: None,
            },
            server: Peer {
                addr: ip(server),
                port: sport,
                seq: 50_000,
                ack: 0,
                window: 65535,
                wscale: None,
            },
            zone: 0,
        }
    }

    pub fn with_isn(mut self, c: u32, s: u32) -> Self {
        self.client.seq = c;
        self.server.seq = s;
        self
    }

    /// The meta of a segment from the client (`true`) or the server, without sending it.
    pub fn meta(&self, from_client: bool, flags: TcpFlags, len: u32) -> PacketMeta {
        let (a, b) = if from_client {
            (&self.client, &self.server)
        } else {
            (&self.server, &self.client)
        };
        let syn = flags.contains(TcpFlags::SYN);
        PacketMeta {
            zone: self.zone,
            src: a.addr,
            dst: b.addr,
            l4: L4::Tcp(TcpMeta {
                src_port: a.port,
                dst_port: b.port,
                flags,
                seq: a.seq,
                ack: if flags.contains(TcpFlags::ACK) {
                    a.ack
                } else {
                    0
                },
                window: a.window,
                payload_len: len,
                window_scale: if syn { a.wscale } else { None },
                sack_permitted: syn,
            }),
            len: 40 + len,
        }
    }

    /// Advances the sender past a segment and lets the receiver acknowledge it.
    pub fn advance(&mut self, from_client: bool, flags: TcpFlags, len: u32) {
        let n = len
            + u32::from(flags.contains(TcpFlags::SYN))
            + u32::from(flags.contains(TcpFlags::FIN));
        let (a, b) = if from_client {
            (&mut self.client, &mut self.server)
        } else {
            (&mut self.server, &mut self.client)
        };
        a.seq = a.seq.wrapping_add(n);
        b.ack = a.seq;
    }

    /// Sends a segment through the table (lookup; commit when new) and advances on success.
    pub fn send(
        &mut self,
        t: &Table,
        from_client: bool,
        flags: TcpFlags,
        len: u32,
        now: Instant,
    ) -> Lookup {
        let m = self.meta(from_client, flags, len);
        let mut l = t.lookup(&m, now);
        if l.verdict == Verdict::New {
            l = t.commit(&m, Nat::NONE, now).expect("commit");
        }
        if !matches!(l.verdict, Verdict::Invalid(_)) {
            self.advance(from_client, flags, len);
        }
        l
    }

    /// Full three-way handshake; asserts each verdict.
    pub fn handshake(&mut self, t: &Table, now: Instant) {
        assert_eq!(self.send(t, true, SYN, 0, now).verdict, Verdict::New);
        assert_eq!(self.send(t, false, SYNACK, 0, now).verdict, Verdict::Reply);
        assert_eq!(
            self.send(t, true, ACK, 0, now).verdict,
            Verdict::Established
        );
    }
}

pub fn udp(src: &str, sp: u16, dst: &str, dp: u16) -> PacketMeta {
    PacketMeta::udp(ip(src), ip(dst), sp, dp)
}

pub fn echo(src: &str, dst: &str, id: u16, request: bool) -> PacketMeta {
    PacketMeta {
        zone: 0,
        src: ip(src),
        dst: ip(dst),
        l4: L4::IcmpEcho { request, id },
        len: 84,
    }
}

pub fn sctp(src: &str, sp: u16, dst: &str, dp: u16, chunk: u8, vtag: u32) -> PacketMeta {
    PacketMeta {
        zone: 0,
        src: ip(src),
        dst: ip(dst),
        l4: L4::Sctp(SctpMeta {
            src_port: sp,
            dst_port: dp,
            verification_tag: vtag,
            chunk_type: chunk,
        }),
        len: 64,
    }
}
