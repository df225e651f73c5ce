//! SCTP (RFC 9260 §3): the common header ([`Packet`]), its CRC32c checksum ([`crc32c`],
//! RFC 9260 Appendix A / RFC 3309) and a chunk iterator ([`ChunksIter`]) so a connection tracker
//! can see INIT / INIT ACK / COOKIE ECHO / COOKIE ACK / SHUTDOWN / ABORT.
//!
//! Owns the common header, the chunk framing (type, flags, length, padding to 4 octets, §3.2) and
//! the checksum. The CRC32c is the reflected Castagnoli CRC (polynomial 0x1EDC6F41, reflected
//! 0x82F63B78, initial and final XOR 0xFFFFFFFF) computed over the packet with the checksum field
//! zeroed; the 32-bit result is stored **least-significant byte first**, which is what RFC 9260
//! Appendix A's byte-reflection amounts to and what Linux (`cpu_to_le32`) and scapy put on the wire
//! (checked against a scapy capture in the tests). [`Packet::checksum`] returns the CRC value
//! decoded that way, so it compares equal to [`crc32c`]'s result. Invariants: after
//! [`Packet::new_checked`] the 12-octet common header is present so no accessor panics; the chunk
//! iterator never reads past the buffer and reports a chunk length below 4 as `Malformed` and an
//! overrun as `Truncated`. Table-driven, no allocation, no dependency; `Send + Sync` when the
//! buffer is.

use crate::field::{Field, Rest};
use crate::{Error, Result};

mod field {
    use super::{Field, Rest};
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const VERIFICATION_TAG: Field = 4..8;
    pub const CHECKSUM: Field = 8..12;
    pub const CHUNKS: Rest = 12..;
}

/// Length of the common header.
pub const HEADER_LEN: usize = field::CHUNKS.start;
/// Length of a chunk header (type, flags, length).
pub const CHUNK_HEADER_LEN: usize = 4;
/// Fixed part of an INIT / INIT ACK value: initiate tag, a_rwnd, streams out/in, initial TSN.
const INIT_FIXED_LEN: usize = 16;

/// CRC32c (Castagnoli) reflected polynomial.
const CRC32C_POLY: u32 = 0x82f6_3b78;

/// The 256-entry table for byte-at-a-time CRC32c, built at compile time.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ CRC32C_POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// Feeds `bytes` into a running (un-finalised) CRC32c state; start from `!0`, finish with `!`.
#[inline]
pub fn crc32c_update(mut state: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        state = (state >> 8) ^ CRC32C_TABLE[((state ^ u32::from(b)) & 0xff) as usize];
    }
    state
}

/// CRC32c of `bytes` (check value: `crc32c(b"123456789") == 0xE306_9283`).
#[inline]
pub fn crc32c(bytes: &[u8]) -> u32 {
    !crc32c_update(!0, bytes)
}

/// SCTP chunk types (RFC 9260 §3.2 and the IANA registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkType {
    /// 0: payload data.
    Data,
    /// 1: initiation.
    Init,
    /// 2: initiation acknowledgement.
    InitAck,
    /// 3: selective acknowledgement.
    Sack,
    /// 4: heartbeat request.
    Heartbeat,
    /// 5: heartbeat acknowledgement.
    HeartbeatAck,
    /// 6: abort.
    Abort,
    /// 7: shutdown.
    Shutdown,
    /// 8: shutdown acknowledgement.
    ShutdownAck,
    /// 9: operation error.
    Error,
    /// 10: state cookie.
    CookieEcho,
    /// 11: cookie acknowledgement.
    CookieAck,
    /// 14: shutdown complete.
    ShutdownComplete,
    /// Any other type (ECNE, I-DATA, FORWARD TSN, ASCONF, …).
    Unknown(u8),
}

impl From<u8> for ChunkType {
    fn from(v: u8) -> Self {
        match v {
            0 => ChunkType::Data,
            1 => ChunkType::Init,
            2 => ChunkType::InitAck,
            3 => ChunkType::Sack,
            4 => ChunkType::Heartbeat,
            5 => ChunkType::HeartbeatAck,
            6 => ChunkType::Abort,
            7 => ChunkType::Shutdown,
            8 => ChunkType::ShutdownAck,
            9 => ChunkType::Error,
            10 => ChunkType::CookieEcho,
            11 => ChunkType::CookieAck,
            14 => ChunkType::ShutdownComplete,
            other => ChunkType::Unknown(other),
        }
    }
}

impl From<ChunkType> for u8 {
    fn from(t: ChunkType) -> u8 {
        match t {
            ChunkType::Data => 0,
            ChunkType::Init => 1,
            ChunkType::InitAck => 2,
            ChunkType::Sack => 3,
            ChunkType::Heartbeat => 4,
            ChunkType::HeartbeatAck => 5,
            ChunkType::Abort => 6,
            ChunkType::Shutdown => 7,
            ChunkType::ShutdownAck => 8,
            ChunkType::Error => 9,
            ChunkType::CookieEcho => 10,
            ChunkType::CookieAck => 11,
            ChunkType::ShutdownComplete => 14,
            ChunkType::Unknown(other) => other,
        }
    }
}

/// One chunk, borrowed from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chunk<'a> {
    /// Chunk type.
    pub chunk_type: ChunkType,
    /// Chunk flags.
    pub flags: u8,
    /// Chunk value: `length - 4` octets, padding excluded.
    pub value: &'a [u8],
}

impl<'a> Chunk<'a> {
    /// Parses the chunk at the start of `buffer`, returning it and the bytes after its padding.
    /// `Truncated` if the chunk header or the declared length does not fit; `Malformed` if the
    /// length is below 4 (RFC 9260 §3.2). Missing padding after the last chunk is tolerated.
    pub fn parse(buffer: &'a [u8]) -> Result<(Chunk<'a>, &'a [u8])> {
        let [t, flags, l0, l1, ..] = *buffer else {
            return Err(Error::Truncated);
        };
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if len < CHUNK_HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len > buffer.len() {
            return Err(Error::Truncated);
        }
        let next = len.next_multiple_of(4).min(buffer.len());
        Ok((
            Chunk {
                chunk_type: ChunkType::from(t),
                flags,
                value: &buffer[CHUNK_HEADER_LEN..len],
            },
            &buffer[next..],
        ))
    }

    /// Initiate tag of an INIT / INIT ACK (the verification tag the sender expects back).
    pub fn initiate_tag(&self) -> Option<u32> {
        match self.chunk_type {
            ChunkType::Init | ChunkType::InitAck => {
                let b = self.value.get(..4)?;
                Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            _ => None,
        }
    }

    /// The T bit of ABORT / SHUTDOWN COMPLETE: the verification tag is reflected (RFC 9260 §3.3.7).
    pub fn t_bit(&self) -> bool {
        matches!(
            self.chunk_type,
            ChunkType::Abort | ChunkType::ShutdownComplete
        ) && self.flags & 1 != 0
    }

    /// Octets the chunk occupies, padding included.
    pub fn buffer_len(&self) -> usize {
        (CHUNK_HEADER_LEN + self.value.len()).next_multiple_of(4)
    }

    /// Writes the chunk with zero padding at the start of `buffer`.
    ///
    /// # Panics
    /// If `buffer` is shorter than [`Chunk::buffer_len`] or the value exceeds 65531 octets.
    pub fn emit(&self, buffer: &mut [u8]) {
        let len = u16::try_from(CHUNK_HEADER_LEN + self.value.len())
            .expect("SCTP chunk longer than 65535 octets");
        let b = &mut buffer[..self.buffer_len()];
        b[0] = self.chunk_type.into();
        b[1] = self.flags;
        b[2..4].copy_from_slice(&len.to_be_bytes());
        let end = usize::from(len);
        b[CHUNK_HEADER_LEN..end].copy_from_slice(self.value);
        b[end..].fill(0);
    }
}

/// Iterator over the chunks after the common header. Yields `Err` once on a bad chunk and stops.
#[derive(Debug, Clone)]
pub struct ChunksIter<'a> {
    rest: &'a [u8],
}

impl<'a> ChunksIter<'a> {
    /// Iterates over a chunk area.
    pub const fn new(chunks: &'a [u8]) -> ChunksIter<'a> {
        ChunksIter { rest: chunks }
    }
}

impl<'a> Iterator for ChunksIter<'a> {
    type Item = Result<Chunk<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match Chunk::parse(self.rest) {
            Ok((chunk, rest)) => {
                self.rest = rest;
                Some(Ok(chunk))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// A read/write view of an SCTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer and checks it with [`Packet::check_len`]; no accessor of the result panics.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the common header is present (`Truncated`).
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::SRC_PORT];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::DST_PORT];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Verification tag.
    pub fn verification_tag(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VERIFICATION_TAG];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The stored CRC32c value (decoded least-significant byte first; see the module docs).
    pub fn checksum(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::CHECKSUM];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The chunk area.
    pub fn chunks(&self) -> &[u8] {
        &self.buffer.as_ref()[field::CHUNKS]
    }

    /// Iterates over the chunks.
    pub fn chunks_iter(&self) -> ChunksIter<'_> {
        ChunksIter::new(self.chunks())
    }

    /// CRC32c over the packet with the checksum field taken as zero, without copying.
    pub fn compute_checksum(&self) -> u32 {
        let b = self.buffer.as_ref();
        let mut state = crc32c_update(!0, &b[..field::CHECKSUM.start]);
        state = crc32c_update(state, &[0; 4]);
        !crc32c_update(state, &b[field::CHUNKS])
    }

    /// Whether the stored CRC32c matches.
    pub fn verify_checksum(&self) -> bool {
        self.compute_checksum() == self.checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the verification tag.
    pub fn set_verification_tag(&mut self, v: u32) {
        self.buffer.as_mut()[field::VERIFICATION_TAG].copy_from_slice(&v.to_be_bytes());
    }

    /// Stores a CRC32c value (least-significant byte first).
    pub fn set_checksum(&mut self, v: u32) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_le_bytes());
    }

    /// Mutable chunk area.
    pub fn chunks_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::CHUNKS]
    }

    /// Computes and stores the CRC32c.
    pub fn fill_checksum(&mut self) {
        let crc = self.compute_checksum();
        self.set_checksum(crc);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The high-level content of an SCTP packet: the common header and its validated chunk area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Verification tag.
    pub verification_tag: u32,
    /// The chunks, as on the wire (each padded to 4 octets); every chunk parsed in `parse`.
    pub chunks: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Parses a checked packet, verifying the CRC32c (skipped under `cfg(fuzzing)`) and walking
    /// every chunk.
    ///
    /// Errors: `Truncated` (short header or chunk), `Checksum`, `Malformed` when there is no chunk,
    /// a chunk length is below 4, an INIT / INIT ACK is shorter than its fixed part or has a zero
    /// initiate tag (RFC 9260 §3.3.2), or an INIT is bundled with other chunks or carried with a
    /// non-zero verification tag (RFC 9260 §3.3.2, §8.5.1).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>> {
        packet.check_len()?;
        #[allow(unexpected_cfgs)]
        let verify = !cfg!(fuzzing);
        if verify && !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        let chunks: &'a [u8] = &T::as_ref(packet.buffer)[field::CHUNKS];
        let mut count = 0usize;
        let mut has_init = false;
        for chunk in ChunksIter::new(chunks) {
            let chunk = chunk?;
            count += 1;
            if matches!(chunk.chunk_type, ChunkType::Init | ChunkType::InitAck) {
                if chunk.value.len() < INIT_FIXED_LEN || chunk.initiate_tag() == Some(0) {
                    return Err(Error::Malformed);
                }
                has_init |= chunk.chunk_type == ChunkType::Init;
            }
        }
        if count == 0 || (has_init && (count > 1 || packet.verification_tag() != 0)) {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            verification_tag: packet.verification_tag(),
            chunks,
        })
    }

    /// Iterates over the chunks.
    pub fn chunks_iter(&self) -> ChunksIter<'a> {
        ChunksIter::new(self.chunks)
    }

    /// The type of the first chunk (what a tracker keys its state transitions on).
    pub fn first_chunk_type(&self) -> Option<ChunkType> {
        self.chunks.first().map(|&t| ChunkType::from(t))
    }

    /// Bytes needed to emit this packet.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.chunks.len()
    }

    /// Writes the packet into `packet` (sized to [`Repr::buffer_len`]) and fills the CRC32c.
    ///
    /// # Panics
    /// If the buffer is shorter than [`Repr::buffer_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_verification_tag(self.verification_tag);
        packet.chunks_mut()[..self.chunks.len()].copy_from_slice(self.chunks);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// scapy: IP(src="10.0.0.1", dst="10.0.0.2")/SCTP(sport=5000, dport=36412, tag=0)
    /// /SCTPChunkInit(init_tag=0xdeadbeef, a_rwnd=106496, n_out_streams=10, n_in_streams=65535,
    /// init_tsn=0x01020304); scapy computed the CRC32c (bytes b0 08 25 20).
    const INIT_BYTES: [u8; 32] = [
        0x13, 0x88, 0x8e, 0x3c, 0x00, 0x00, 0x00, 0x00, 0xb0, 0x08, 0x25, 0x20, 0x01, 0x00, 0x00,
        0x14, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0xa0, 0x00, 0x00, 0x0a, 0xff, 0xff, 0x01, 0x02,
        0x03, 0x04,
    ];
    /// scapy: IP(src="10.0.0.2", dst="10.0.0.1")/SCTP(sport=36412, dport=5000, tag=0xdeadbeef)
    /// /SCTPChunkCookieAck()/SCTPChunkData(tsn=1, stream_id=0, stream_seq=0, proto_id=46, data=b"abcde")
    const COOKIE_ACK_DATA_BYTES: [u8; 40] = [
        0x8e, 0x3c, 0x13, 0x88, 0xde, 0xad, 0xbe, 0xef, 0x5e, 0x6e, 0x6e, 0x4c, 0x0b, 0x00, 0x00,
        0x04, 0x00, 0x00, 0x00, 0x15, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x2e, 0x61, 0x62, 0x63, 0x64, 0x65, 0x00, 0x00, 0x00,
    ];

    /// Bit-at-a-time CRC32c, the oracle for the table.
    fn crc32c_bitwise(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0x82f6_3b78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn crc32c_known_vectors() {
        // The CRC catalogue check value for CRC-32C, and RFC 3720 §B.4's 32 zero octets
        // (transmitted as aa 36 91 8a, i.e. least-significant byte first).
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0u8; 32]).to_le_bytes(), [0xaa, 0x36, 0x91, 0x8a]);
        assert_eq!(
            crc32c(&[0xffu8; 32]).to_le_bytes(),
            [0x43, 0xab, 0xa8, 0x62]
        );
        assert_eq!(crc32c(&[]), 0);
    }

    #[test]
    fn captured_init_matches_scapy_crc() {
        let p = Packet::new_checked(&INIT_BYTES[..]).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.verification_tag()),
            (5000, 36412, 0)
        );
        // scapy stores the CRC least-significant byte first: b0 08 25 20 is 0x202508b0.
        assert_eq!(p.checksum(), 0x2025_08b0);
        assert_eq!(p.compute_checksum(), 0x2025_08b0);
        let mut zeroed = INIT_BYTES;
        zeroed[8..12].fill(0);
        assert_eq!(crc32c(&zeroed), p.checksum());
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.first_chunk_type(), Some(ChunkType::Init));
        let chunks: Vec<_> = r.chunks_iter().collect::<Result<_>>().unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].initiate_tag(), Some(0xdead_beef));
        assert_eq!(chunks[0].value.len(), 16);
        let mut buf = [0xa5u8; 32];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, INIT_BYTES);
    }

    #[test]
    fn captured_bundle_with_padding() {
        let p = Packet::new_checked(&COOKIE_ACK_DATA_BYTES[..]).unwrap();
        assert!(p.verify_checksum());
        let chunks: Vec<_> = p.chunks_iter().collect::<Result<_>>().unwrap();
        assert_eq!(
            chunks.iter().map(|c| c.chunk_type).collect::<Vec<_>>(),
            [ChunkType::CookieAck, ChunkType::Data]
        );
        // DATA length 21: 16 octets of header fields + "abcde", then 3 octets of padding.
        assert_eq!(chunks[1].value.len(), 17);
        assert_eq!(&chunks[1].value[12..], b"abcde");
        assert_eq!(chunks[1].initiate_tag(), None);
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.verification_tag, 0xdead_beef);
        let mut buf = [0xa5u8; 40];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, COOKIE_ACK_DATA_BYTES);
    }

    fn refill(mut b: Vec<u8>) -> Vec<u8> {
        Packet::new_unchecked(&mut b[..]).fill_checksum();
        b
    }

    #[test]
    fn every_error_variant() {
        let parse = |b: &[u8]| Packet::new_checked(b).and_then(|p| Repr::parse(&p).map(|_| ()));
        assert_eq!(parse(&INIT_BYTES[..11]), Err(Error::Truncated));
        let mut b = INIT_BYTES;
        b[20] ^= 1;
        assert_eq!(parse(&b), Err(Error::Checksum));
        // Chunk header cut short, and chunk length overrunning the packet.
        assert_eq!(
            parse(&refill(INIT_BYTES[..14].to_vec())),
            Err(Error::Truncated)
        );
        assert_eq!(
            parse(&refill(INIT_BYTES[..31].to_vec())),
            Err(Error::Truncated)
        );
        // Chunk length below 4.
        let mut b = INIT_BYTES.to_vec();
        b[15] = 3;
        assert_eq!(parse(&refill(b)), Err(Error::Malformed));
        // No chunk at all.
        assert_eq!(
            parse(&refill(INIT_BYTES[..12].to_vec())),
            Err(Error::Malformed)
        );
        // INIT with a non-zero verification tag; with a zero initiate tag; too short; bundled.
        let mut b = INIT_BYTES.to_vec();
        b[7] = 1;
        assert_eq!(parse(&refill(b)), Err(Error::Malformed));
        let mut b = INIT_BYTES.to_vec();
        b[16..20].fill(0);
        assert_eq!(parse(&refill(b)), Err(Error::Malformed));
        let mut b = INIT_BYTES[..28].to_vec();
        b[15] = 16;
        assert_eq!(parse(&refill(b)), Err(Error::Malformed));
        let mut b = INIT_BYTES.to_vec();
        b.extend_from_slice(&[11, 0, 0, 4]);
        assert_eq!(parse(&refill(b)), Err(Error::Malformed));
    }

    #[test]
    fn last_chunk_padding_may_be_missing() {
        let b = refill(COOKIE_ACK_DATA_BYTES[..37].to_vec());
        let p = Packet::new_checked(&b[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.chunks_iter().count(), 2);
    }

    #[test]
    fn abort_t_bit() {
        let chunk = Chunk {
            chunk_type: ChunkType::Abort,
            flags: 1,
            value: &[],
        };
        let mut buf = [0xa5u8; 4];
        chunk.emit(&mut buf);
        let (parsed, rest) = Chunk::parse(&buf).unwrap();
        assert!(parsed.t_bit() && rest.is_empty());
        assert!(
            !Chunk {
                chunk_type: ChunkType::Data,
                flags: 1,
                value: &[]
            }
            .t_bit()
        );
    }

    proptest! {
        #[test]
        fn table_matches_bitwise(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(crc32c(&bytes), crc32c_bitwise(&bytes));
        }

        #[test]
        fn round_trip(
            ports in any::<(u16, u16)>(), vtag in 1u32.., chunks in proptest::collection::vec(
                (prop_oneof![Just(0u8), 3u8..=14, 15u8..], any::<u8>(), proptest::collection::vec(any::<u8>(), 0..24)), 1..4),
        ) {
            let mut area = Vec::new();
            for (t, flags, value) in &chunks {
                let c = Chunk { chunk_type: ChunkType::from(*t), flags: *flags, value };
                let at = area.len();
                area.resize(at + c.buffer_len(), 0xa5);
                c.emit(&mut area[at..]);
            }
            let r = Repr { src_port: ports.0, dst_port: ports.1, verification_tag: vtag, chunks: &area };
            let mut buf = vec![0xa5u8; r.buffer_len()];
            r.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum());
            let parsed = Repr::parse(&p).unwrap();
            prop_assert_eq!(parsed, r);
            let types: Vec<u8> = parsed.chunks_iter().map(|c| u8::from(c.unwrap().chunk_type)).collect();
            prop_assert_eq!(types, chunks.iter().map(|c| c.0).collect::<Vec<_>>());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.src_port(), p.dst_port(), p.verification_tag(), p.checksum(), p.verify_checksum());
                for c in p.chunks_iter().flatten() {
                    let _ = (c.initiate_tag(), c.t_bit(), c.buffer_len());
                    prop_assert!(c.value.len() + 4 <= p.chunks().len());
                }
                let _ = Repr::parse(&p);
            }
        }
    }
}
