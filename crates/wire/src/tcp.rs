//! TCP (RFC 9293 §3.1): a zero-copy [`Packet`] view, an allocation-free option iterator
//! ([`OptionsIter`] over [`TcpOption`]) and a [`Repr`] with the options as fixed fields.
//!
//! Owns the TCP header format, its options (MSS RFC 9293 §3.2, window scale RFC 7323 §2, SACK
//! RFC 2018, timestamps RFC 7323 §3) and the checksum over either pseudo-header. Invariants: after
//! [`Packet::new_checked`] the data offset is at least 5 and the header lies within the buffer, so
//! no accessor panics; option parsing never reads past the header and reports a bad option length
//! as [`Error::Malformed`]. A received window-scale shift above 14 is clamped to 14
//! (RFC 7323 §2.3). [`Repr`] keeps only the options it names; unknown options are dropped by
//! `parse` (RFC 9293 §3.2: unknown options are ignored). Pure data, no allocation; `Send + Sync` when
//! the buffer is.

use crate::checksum::{self, PseudoHeader};
use crate::field::Field;
use crate::ip::IpProtocol;
use crate::{Error, Result};

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
    pub const OPTIONS_START: usize = 20;

    pub const OPT_END: u8 = 0;
    pub const OPT_NOP: u8 = 1;
    pub const OPT_MSS: u8 = 2;
    pub const OPT_WS: u8 = 3;
    pub const OPT_SACKPERM: u8 = 4;
    pub const OPT_SACKRNG: u8 = 5;
    pub const OPT_TSTAMP: u8 = 8;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = field::OPTIONS_START;
/// Longest TCP header: data offset 15.
pub const MAX_HEADER_LEN: usize = 60;
/// Largest window-scale shift a receiver honours (RFC 7323 §2.3).
pub const MAX_WINDOW_SCALE: u8 = 14;
/// Most SACK blocks that fit in 40 octets of options (RFC 2018 §3).
pub const MAX_SACK_BLOCKS: usize = 4;

/// The eight control bits of RFC 9293 §3.1 (CWR and ECE from RFC 3168).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// No more data from sender.
    pub const FIN: Flags = Flags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: Flags = Flags(0x02);
    /// Reset the connection.
    pub const RST: Flags = Flags(0x04);
    /// Push function.
    pub const PSH: Flags = Flags(0x08);
    /// Acknowledgment field is significant.
    pub const ACK: Flags = Flags(0x10);
    /// Urgent pointer field is significant.
    pub const URG: Flags = Flags(0x20);
    /// ECN-Echo (RFC 3168).
    pub const ECE: Flags = Flags(0x40);
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: Flags = Flags(0x80);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// FIN set.
    pub const fn fin(self) -> bool {
        self.contains(Self::FIN)
    }
    /// SYN set.
    pub const fn syn(self) -> bool {
        self.contains(Self::SYN)
    }
    /// RST set.
    pub const fn rst(self) -> bool {
        self.contains(Self::RST)
    }
    /// PSH set.
    pub const fn psh(self) -> bool {
        self.contains(Self::PSH)
    }
    /// ACK set.
    pub const fn ack(self) -> bool {
        self.contains(Self::ACK)
    }
    /// URG set.
    pub const fn urg(self) -> bool {
        self.contains(Self::URG)
    }
    /// ECE set.
    pub const fn ece(self) -> bool {
        self.contains(Self::ECE)
    }
    /// CWR set.
    pub const fn cwr(self) -> bool {
        self.contains(Self::CWR)
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// One TCP option, borrowed from the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpOption<'a> {
    /// Kind 0: end of option list; the rest of the option space is padding.
    EndOfList,
    /// Kind 1: padding between options.
    NoOperation,
    /// Kind 2, length 4: maximum segment size (RFC 9293 §3.2).
    MaxSegmentSize(u16),
    /// Kind 3, length 3: window-scale shift, clamped to 14 (RFC 7323 §2.3).
    WindowScale(u8),
    /// Kind 4, length 2: SACK permitted (RFC 2018 §2).
    SackPermitted,
    /// Kind 5, length 2 + 8n (n = 1..=4): SACK blocks `(left edge, right edge)` (RFC 2018 §3).
    SackRange([Option<(u32, u32)>; MAX_SACK_BLOCKS]),
    /// Kind 8, length 10: timestamps (RFC 7323 §3).
    Timestamps {
        /// TSval.
        tsval: u32,
        /// TSecr.
        tsecr: u32,
    },
    /// Any other kind, with its data (length byte excluded).
    Unknown {
        /// Option kind.
        kind: u8,
        /// Option data after the kind and length octets.
        data: &'a [u8],
    },
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl<'a> TcpOption<'a> {
    /// Parses the option at the start of `buffer` (the remaining option space), returning it and
    /// the bytes after it. An empty buffer is `Truncated`; a length octet that is missing, below 2,
    /// wrong for the kind, or overrunning the option space is `Malformed`.
    pub fn parse(buffer: &'a [u8]) -> Result<(TcpOption<'a>, &'a [u8])> {
        let (&kind, _) = buffer.split_first().ok_or(Error::Truncated)?;
        match kind {
            field::OPT_END => return Ok((TcpOption::EndOfList, &buffer[buffer.len()..])),
            field::OPT_NOP => return Ok((TcpOption::NoOperation, &buffer[1..])),
            _ => {}
        }
        let len = usize::from(*buffer.get(1).ok_or(Error::Malformed)?);
        if len < 2 || len > buffer.len() {
            return Err(Error::Malformed);
        }
        let data = &buffer[2..len];
        let rest = &buffer[len..];
        let option = match (kind, len) {
            (field::OPT_MSS, 4) => {
                TcpOption::MaxSegmentSize(u16::from_be_bytes([data[0], data[1]]))
            }
            (field::OPT_WS, 3) => TcpOption::WindowScale(data[0].min(MAX_WINDOW_SCALE)),
            (field::OPT_SACKPERM, 2) => TcpOption::SackPermitted,
            (field::OPT_SACKRNG, 10 | 18 | 26 | 34) => {
                let mut blocks = [None; MAX_SACK_BLOCKS];
                for (slot, b) in blocks.iter_mut().zip(data.chunks_exact(8)) {
                    *slot = Some((be32(&b[0..4]), be32(&b[4..8])));
                }
                TcpOption::SackRange(blocks)
            }
            (field::OPT_TSTAMP, 10) => TcpOption::Timestamps {
                tsval: be32(&data[0..4]),
                tsecr: be32(&data[4..8]),
            },
            (
                field::OPT_MSS
                | field::OPT_WS
                | field::OPT_SACKPERM
                | field::OPT_SACKRNG
                | field::OPT_TSTAMP,
                _,
            ) => {
                return Err(Error::Malformed);
            }
            (kind, _) => TcpOption::Unknown { kind, data },
        };
        Ok((option, rest))
    }

    /// Octets this option occupies on the wire.
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::SackRange(b) => 2 + 8 * b.iter().flatten().count(),
            TcpOption::Timestamps { .. } => 10,
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Writes the option at the start of `buffer` and returns the rest.
    ///
    /// # Panics
    /// If `buffer` is shorter than [`TcpOption::buffer_len`] or unknown data exceeds 253 octets.
    pub fn emit<'b>(&self, buffer: &'b mut [u8]) -> &'b mut [u8] {
        let len = self.buffer_len();
        let (head, rest) = buffer.split_at_mut(len);
        match *self {
            TcpOption::EndOfList => head[0] = field::OPT_END,
            TcpOption::NoOperation => head[0] = field::OPT_NOP,
            TcpOption::MaxSegmentSize(mss) => {
                head[..2].copy_from_slice(&[field::OPT_MSS, 4]);
                head[2..4].copy_from_slice(&mss.to_be_bytes());
            }
            TcpOption::WindowScale(shift) => head.copy_from_slice(&[field::OPT_WS, 3, shift]),
            TcpOption::SackPermitted => head.copy_from_slice(&[field::OPT_SACKPERM, 2]),
            TcpOption::SackRange(blocks) => {
                head[0] = field::OPT_SACKRNG;
                head[1] = len as u8;
                for (chunk, (l, r)) in head[2..].chunks_exact_mut(8).zip(blocks.iter().flatten()) {
                    chunk[..4].copy_from_slice(&l.to_be_bytes());
                    chunk[4..].copy_from_slice(&r.to_be_bytes());
                }
            }
            TcpOption::Timestamps { tsval, tsecr } => {
                head[..2].copy_from_slice(&[field::OPT_TSTAMP, 10]);
                head[2..6].copy_from_slice(&tsval.to_be_bytes());
                head[6..10].copy_from_slice(&tsecr.to_be_bytes());
            }
            TcpOption::Unknown { kind, data } => {
                head[0] = kind;
                head[1] = u8::try_from(len).expect("TCP option longer than 255 octets");
                head[2..].copy_from_slice(data);
            }
        }
        rest
    }
}

/// Iterator over the options of a header. Yields `Err` once on a malformed option and then
/// stops; stops after [`TcpOption::EndOfList`].
#[derive(Debug, Clone)]
pub struct OptionsIter<'a> {
    rest: &'a [u8],
}

impl<'a> OptionsIter<'a> {
    /// Iterates over an option space (the header bytes after the fixed 20).
    pub const fn new(options: &'a [u8]) -> OptionsIter<'a> {
        OptionsIter { rest: options }
    }
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match TcpOption::parse(self.rest) {
            Ok((option, rest)) => {
                self.rest = rest;
                Some(Ok(option))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// A read/write view of a TCP segment.
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

    /// Checks that the fixed header fits (`Truncated`), that the data offset is at least 5
    /// (`Malformed`, RFC 9293 §3.1) and that the header with its options fits (`Truncated`).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = usize::from(self.header_len());
        if header_len < HEADER_LEN {
            Err(Error::Malformed)
        } else if header_len > len {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, f: Field) -> u16 {
        let b = &self.buffer.as_ref()[f];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SEQ_NUM])
    }

    /// Acknowledgment number (meaningful when ACK is set).
    pub fn ack_number(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::ACK_NUM])
    }

    /// Data offset in 32-bit words.
    pub fn data_offset(&self) -> u8 {
        self.buffer.as_ref()[field::DATA_OFFSET] >> 4
    }

    /// Header length in octets (data offset × 4).
    pub fn header_len(&self) -> u8 {
        self.data_offset() * 4
    }

    /// The reserved bits between the data offset and the flags (the low nibble of octet 12).
    pub fn reserved(&self) -> u8 {
        self.buffer.as_ref()[field::DATA_OFFSET] & 0x0f
    }

    /// The control bits.
    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS])
    }

    /// FIN set.
    pub fn fin(&self) -> bool {
        self.flags().fin()
    }
    /// SYN set.
    pub fn syn(&self) -> bool {
        self.flags().syn()
    }
    /// RST set.
    pub fn rst(&self) -> bool {
        self.flags().rst()
    }
    /// PSH set.
    pub fn psh(&self) -> bool {
        self.flags().psh()
    }
    /// ACK set.
    pub fn ack(&self) -> bool {
        self.flags().ack()
    }
    /// URG set.
    pub fn urg(&self) -> bool {
        self.flags().urg()
    }
    /// ECE set.
    pub fn ece(&self) -> bool {
        self.flags().ece()
    }
    /// CWR set.
    pub fn cwr(&self) -> bool {
        self.flags().cwr()
    }

    /// Window size (unscaled).
    pub fn window_len(&self) -> u16 {
        self.u16_at(field::WIN_SIZE)
    }

    /// Stored checksum.
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Urgent pointer.
    pub fn urgent_at(&self) -> u16 {
        self.u16_at(field::URGENT)
    }

    /// The option space: header octets after the fixed 20 (empty if the data offset is too small).
    pub fn options(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = usize::from(self.header_len()).clamp(HEADER_LEN, b.len());
        &b[HEADER_LEN..end]
    }

    /// Iterates over the options.
    pub fn options_iter(&self) -> OptionsIter<'_> {
        OptionsIter::new(self.options())
    }

    /// The payload after the header (the whole rest of the buffer: the caller slices the buffer
    /// to the IP payload length).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let start = usize::from(self.header_len()).clamp(HEADER_LEN, b.len());
        &b[start..]
    }

    /// Sequence space this segment occupies: payload length plus one for SYN and one for FIN
    /// (RFC 9293 §3.4).
    pub fn segment_len(&self) -> usize {
        self.payload().len() + usize::from(self.syn()) + usize::from(self.fin())
    }

    /// Verifies the checksum over the pseudo-header and the whole buffer.
    pub fn verify_checksum(&self, ph: &PseudoHeader) -> bool {
        let b = self.buffer.as_ref();
        checksum::combine(&[ph.sum(IpProtocol::Tcp, b.len() as u32), checksum::data(b)]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_u16_at(&mut self, f: Field, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        self.set_u16_at(field::SRC_PORT, v);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        self.set_u16_at(field::DST_PORT, v);
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, v: u32) {
        self.buffer.as_mut()[field::SEQ_NUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, v: u32) {
        self.buffer.as_mut()[field::ACK_NUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the header length in octets (rounded down to a multiple of 4; reserved bits zeroed).
    pub fn set_header_len(&mut self, len: u8) {
        self.buffer.as_mut()[field::DATA_OFFSET] = (len / 4) << 4;
    }

    /// Sets the control bits.
    pub fn set_flags(&mut self, flags: Flags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    /// Sets the window.
    pub fn set_window_len(&mut self, v: u16) {
        self.set_u16_at(field::WIN_SIZE, v);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16_at(field::CHECKSUM, v);
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_at(&mut self, v: u16) {
        self.set_u16_at(field::URGENT, v);
    }

    /// Mutable option space.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.header_len()).clamp(HEADER_LEN, self.buffer.as_ref().len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = usize::from(self.header_len()).clamp(HEADER_LEN, self.buffer.as_ref().len());
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes and stores the checksum over the pseudo-header and the whole buffer.
    pub fn fill_checksum(&mut self, ph: &PseudoHeader) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let sum = checksum::combine(&[ph.sum(IpProtocol::Tcp, b.len() as u32), checksum::data(b)]);
        self.set_checksum(checksum::finish(sum));
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The high-level content of a TCP segment, with the options it understands as fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number (as on the wire, meaningful when `flags` has ACK).
    pub ack_number: u32,
    /// Control bits.
    pub flags: Flags,
    /// Window (unscaled).
    pub window_len: u16,
    /// Urgent pointer.
    pub urgent_at: u16,
    /// MSS option.
    pub max_seg_size: Option<u16>,
    /// Window-scale option (shift, at most 14).
    pub window_scale: Option<u8>,
    /// SACK-permitted option present.
    pub sack_permitted: bool,
    /// Timestamps option `(TSval, TSecr)`.
    pub timestamps: Option<(u32, u32)>,
    /// SACK blocks `(left, right)`; `None` slots come after the present ones.
    pub sack_ranges: [Option<(u32, u32)>; MAX_SACK_BLOCKS],
    /// Payload (borrowed from the parsed buffer).
    pub payload: &'a [u8],
}

/// Longest option space (data offset 15).
const MAX_OPTIONS_LEN: usize = MAX_HEADER_LEN - HEADER_LEN;

impl<'a> Repr<'a> {
    /// Parses a checked packet, verifying the checksum (skipped under `cfg(fuzzing)`).
    ///
    /// Errors: `Truncated`/`Malformed` from the header checks, `Malformed` for a bad option,
    /// `Checksum` if it does not verify. When an option kind repeats, the last one wins.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&'a T>,
        ph: &PseudoHeader,
    ) -> Result<Repr<'a>> {
        packet.check_len()?;
        #[allow(unexpected_cfgs)]
        let verify = !cfg!(fuzzing);
        if verify && !packet.verify_checksum(ph) {
            return Err(Error::Checksum);
        }
        let b: &'a [u8] = T::as_ref(packet.buffer);
        let mut repr = Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            urgent_at: packet.urgent_at(),
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            timestamps: None,
            sack_ranges: [None; MAX_SACK_BLOCKS],
            payload: &b[usize::from(packet.header_len())..],
        };
        for option in OptionsIter::new(&b[HEADER_LEN..usize::from(packet.header_len())]) {
            match option? {
                TcpOption::EndOfList => break,
                TcpOption::NoOperation | TcpOption::Unknown { .. } => {}
                TcpOption::MaxSegmentSize(v) => repr.max_seg_size = Some(v),
                TcpOption::WindowScale(v) => repr.window_scale = Some(v),
                TcpOption::SackPermitted => repr.sack_permitted = true,
                TcpOption::SackRange(r) => repr.sack_ranges = r,
                TcpOption::Timestamps { tsval, tsecr } => repr.timestamps = Some((tsval, tsecr)),
            }
        }
        Ok(repr)
    }

    fn sack_count(&self) -> usize {
        self.sack_ranges.iter().flatten().count()
    }

    /// Option bytes in the aligned layout Linux uses (MSS; SACK-permitted + timestamps;
    /// NOP NOP timestamps; NOP NOP SACK-permitted; NOP window scale; NOP NOP SACK blocks).
    fn aligned_options_len(&self) -> usize {
        let mut n = 0;
        if self.max_seg_size.is_some() {
            n += 4;
        }
        n += match (self.sack_permitted, self.timestamps.is_some()) {
            (_, true) => 12,
            (true, false) => 4,
            (false, false) => 0,
        };
        if self.window_scale.is_some() {
            n += 4;
        }
        if self.sack_count() > 0 {
            n += 4 + 8 * self.sack_count();
        }
        n
    }

    /// Option bytes with every option packed back to back, then rounded up to a multiple of 4.
    fn packed_options_len(&self) -> usize {
        let mut n = 0;
        if self.max_seg_size.is_some() {
            n += 4;
        }
        if self.window_scale.is_some() {
            n += 3;
        }
        if self.sack_permitted {
            n += 2;
        }
        if self.timestamps.is_some() {
            n += 10;
        }
        if self.sack_count() > 0 {
            n += 2 + 8 * self.sack_count();
        }
        n.next_multiple_of(4)
    }

    /// The option-space length `emit` writes: the aligned layout when it fits in 40 octets,
    /// else the packed one. Anything `parse` produced fits packed (it came from at most 40
    /// octets); a hand-built `Repr` with more options than fit is a caller bug.
    pub fn options_len(&self) -> usize {
        let aligned = self.aligned_options_len();
        if aligned <= MAX_OPTIONS_LEN {
            aligned
        } else {
            self.packed_options_len()
        }
    }

    /// Header length `emit` writes.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// Bytes needed to emit this segment.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Sequence space this segment occupies (payload, plus SYN, plus FIN).
    pub fn segment_len(&self) -> usize {
        self.payload.len() + usize::from(self.flags.syn()) + usize::from(self.flags.fin())
    }

    fn emit_options(&self, buf: &mut [u8]) {
        /// Writes `nops` NOPs (only in the aligned layout) then `option`, advancing `pos`.
        fn put(buf: &mut [u8], pos: &mut usize, aligned: bool, nops: usize, option: TcpOption<'_>) {
            if aligned {
                buf[*pos..*pos + nops].fill(field::OPT_NOP);
                *pos += nops;
            }
            let _ = option.emit(&mut buf[*pos..]);
            *pos += option.buffer_len();
        }
        let aligned = self.aligned_options_len() <= MAX_OPTIONS_LEN;
        let mut pos = 0;
        if let Some(mss) = self.max_seg_size {
            put(buf, &mut pos, aligned, 0, TcpOption::MaxSegmentSize(mss));
        }
        match (self.sack_permitted, self.timestamps) {
            (true, Some((tsval, tsecr))) => {
                put(buf, &mut pos, aligned, 0, TcpOption::SackPermitted);
                put(
                    buf,
                    &mut pos,
                    aligned,
                    0,
                    TcpOption::Timestamps { tsval, tsecr },
                );
            }
            (false, Some((tsval, tsecr))) => put(
                buf,
                &mut pos,
                aligned,
                2,
                TcpOption::Timestamps { tsval, tsecr },
            ),
            (true, None) => put(buf, &mut pos, aligned, 2, TcpOption::SackPermitted),
            (false, None) => {}
        }
        if let Some(shift) = self.window_scale {
            put(buf, &mut pos, aligned, 1, TcpOption::WindowScale(shift));
        }
        if self.sack_count() > 0 {
            let mut blocks = [None; MAX_SACK_BLOCKS];
            for (slot, b) in blocks.iter_mut().zip(self.sack_ranges.iter().flatten()) {
                *slot = Some(*b);
            }
            put(buf, &mut pos, aligned, 2, TcpOption::SackRange(blocks));
        }
        // Pad the option space to its 32-bit boundary with end-of-list (RFC 9293 §3.2).
        buf[pos..].fill(field::OPT_END);
    }

    /// Writes the segment into `packet` (sized to [`Repr::buffer_len`]) and fills the checksum.
    ///
    /// # Panics
    /// If the buffer is shorter than [`Repr::buffer_len`] or the options exceed 40 octets.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>, ph: &PseudoHeader) {
        let header_len = self.header_len();
        assert!(header_len <= MAX_HEADER_LEN, "TCP options exceed 40 octets");
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_header_len(header_len as u8);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_urgent_at(self.urgent_at);
        self.emit_options(packet.options_mut());
        let end = header_len + self.payload.len();
        packet.buffer.as_mut()[header_len..end].copy_from_slice(self.payload);
        packet.fill_checksum(ph);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};
    use proptest::prelude::*;

    /// scapy: IP(src="10.0.0.1", dst="10.0.0.2")/TCP(sport=43210, dport=80, seq=0x11223344,
    /// flags="S", window=64240, options=[MSS 1460, SAckOK, Timestamp (123456, 0), NOP, WScale 7])
    const SYN_BYTES: [u8; 40] = [
        0xa8, 0xca, 0x00, 0x50, 0x11, 0x22, 0x33, 0x44, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0x69, 0x4a, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01,
        0xe2, 0x40, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];
    /// scapy: IPv6(src="fd00::1", dst="fd00::2")/TCP(sport=443, dport=51000, seq=1000, ack=2000,
    /// flags="PA", window=501, options=[NOP, NOP, Timestamp (7, 8)])/b"hello, podswitch"
    const DATA_V6_BYTES: [u8; 48] = [
        0x01, 0xbb, 0xc7, 0x38, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x07, 0xd0, 0x80, 0x18, 0x01,
        0xf5, 0x91, 0xca, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00,
        0x00, 0x08, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x2c, 0x20, 0x70, 0x6f, 0x64, 0x73, 0x77, 0x69,
        0x74, 0x63, 0x68,
    ];
    /// scapy: IP(src="10.0.0.2", dst="10.0.0.1")/TCP(sport=80, dport=43210, seq=5, ack=6,
    /// flags="A", window=100, options=[NOP, NOP, SAck (100, 200, 300, 400)])
    const SACK_BYTES: [u8; 40] = [
        0x00, 0x50, 0xa8, 0xca, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x06, 0xa0, 0x10, 0x00,
        0x64, 0x98, 0x39, 0x00, 0x00, 0x01, 0x01, 0x05, 0x12, 0x00, 0x00, 0x00, 0x64, 0x00, 0x00,
        0x00, 0xc8, 0x00, 0x00, 0x01, 0x2c, 0x00, 0x00, 0x01, 0x90,
    ];

    const PH_SYN: PseudoHeader = PseudoHeader::V4 {
        src: Ipv4Addr::new(10, 0, 0, 1),
        dst: Ipv4Addr::new(10, 0, 0, 2),
    };
    const PH_SACK: PseudoHeader = PseudoHeader::V4 {
        src: Ipv4Addr::new(10, 0, 0, 2),
        dst: Ipv4Addr::new(10, 0, 0, 1),
    };
    const PH_V6: PseudoHeader = PseudoHeader::V6 {
        src: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
        dst: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
    };

    #[test]
    fn captured_syn() {
        let p = Packet::new_checked(&SYN_BYTES[..]).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number()),
            (43210, 80, 0x11223344, 0)
        );
        assert_eq!(
            (p.header_len(), p.flags(), p.window_len(), p.urgent_at()),
            (40, Flags::SYN, 64240, 0)
        );
        assert!(p.syn() && !p.ack() && !p.fin() && !p.rst());
        assert_eq!(p.segment_len(), 1);
        assert!(p.verify_checksum(&PH_SYN));
        let opts: Vec<_> = p.options_iter().collect::<Result<_>>().unwrap();
        assert_eq!(
            opts,
            [
                TcpOption::MaxSegmentSize(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamps {
                    tsval: 123456,
                    tsecr: 0
                },
                TcpOption::NoOperation,
                TcpOption::WindowScale(7),
            ]
        );
        let r = Repr::parse(&p, &PH_SYN).unwrap();
        assert_eq!(r.max_seg_size, Some(1460));
        assert_eq!(r.window_scale, Some(7));
        assert!(r.sack_permitted);
        assert_eq!(r.timestamps, Some((123456, 0)));
        assert_eq!(r.sack_ranges, [None; 4]);
        assert!(r.payload.is_empty());
        // The pseudo-header sum is symmetric in source and destination, so use another address.
        let elsewhere = PseudoHeader::V4 {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 3),
        };
        assert_eq!(Repr::parse(&p, &elsewhere), Err(Error::Checksum));
    }

    #[test]
    fn captured_data_v6_and_sack() {
        let p = Packet::new_checked(&DATA_V6_BYTES[..]).unwrap();
        let r = Repr::parse(&p, &PH_V6).unwrap();
        assert_eq!(
            (r.seq_number, r.ack_number, r.flags, r.window_len),
            (1000, 2000, Flags::PSH | Flags::ACK, 501)
        );
        assert_eq!(r.timestamps, Some((7, 8)));
        assert_eq!(r.payload, b"hello, podswitch");
        // Linux-aligned layout re-emits the identical bytes.
        let mut buf = [0xa5u8; 48];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]), &PH_V6);
        assert_eq!(buf, DATA_V6_BYTES);

        let p = Packet::new_checked(&SACK_BYTES[..]).unwrap();
        let r = Repr::parse(&p, &PH_SACK).unwrap();
        assert_eq!(
            r.sack_ranges,
            [Some((100, 200)), Some((300, 400)), None, None]
        );
        let mut buf = [0xa5u8; 40];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]), &PH_SACK);
        assert_eq!(buf, SACK_BYTES);
    }

    /// Our aligned layout for the SYN's options: MSS, SACK-perm + TS, NOP + WS (as Linux sends).
    #[test]
    fn emit_syn_layout() {
        let p = Packet::new_checked(&SYN_BYTES[..]).unwrap();
        let r = Repr::parse(&p, &PH_SYN).unwrap();
        assert_eq!(r.buffer_len(), 40);
        let mut buf = [0xa5u8; 40];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]), &PH_SYN);
        assert_eq!(buf, SYN_BYTES);
    }

    #[test]
    fn packed_layout_when_aligned_does_not_fit() {
        let r = Repr {
            src_port: 1,
            dst_port: 2,
            seq_number: 3,
            ack_number: 4,
            flags: Flags::ACK,
            window_len: 5,
            urgent_at: 0,
            max_seg_size: Some(1400),
            window_scale: Some(3),
            sack_permitted: true,
            timestamps: Some((9, 10)),
            sack_ranges: [Some((1, 2)), Some((3, 4)), None, None],
            payload: b"",
        };
        // Aligned would be 4 + 12 + 4 + 20 = 40: fits exactly.
        assert_eq!(r.options_len(), 40);
        let r2 = Repr {
            sack_ranges: [Some((1, 2)), Some((3, 4)), Some((5, 6)), None],
            max_seg_size: None,
            ..r
        };
        // Aligned 12 + 4 + 28 = 44 does not fit; packed 3 + 2 + 10 + 26 = 41 → 44 > 40 either.
        // Drop window scale: aligned 12 + 28 = 40.
        let r3 = Repr {
            window_scale: None,
            ..r2
        };
        assert_eq!(r3.options_len(), 40);
        let r4 = Repr {
            max_seg_size: Some(1),
            window_scale: None,
            sack_permitted: false,
            ..r2
        };
        // aligned 4 + 12 + 28 = 44; packed 4 + 10 + 26 = 40.
        assert_eq!(r4.options_len(), 40);
        let mut buf = vec![0xa5u8; r4.buffer_len()];
        r4.emit(&mut Packet::new_unchecked(&mut buf[..]), &PH_SYN);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Repr::parse(&p, &PH_SYN).unwrap(), r4);
        // Packed: the timestamps option follows MSS directly, with no NOP in between.
        assert_eq!(
            (p.options()[0], p.options()[4]),
            (field::OPT_MSS, field::OPT_TSTAMP)
        );
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            Packet::new_checked(&SYN_BYTES[..19]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&SYN_BYTES[..39]).unwrap_err(),
            Error::Truncated
        );
        let mut b = SYN_BYTES;
        b[12] = 0x40; // data offset 4 < 5
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        // A packet from new_unchecked still gets checked by Repr::parse.
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&b[..]), &PH_SYN),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn option_errors() {
        assert_eq!(TcpOption::parse(&[]), Err(Error::Truncated));
        // Kind without a length octet.
        assert_eq!(TcpOption::parse(&[2]), Err(Error::Malformed));
        // Length below 2, and overrunning the option space.
        assert_eq!(TcpOption::parse(&[30, 1]), Err(Error::Malformed));
        assert_eq!(TcpOption::parse(&[30, 5, 0, 0]), Err(Error::Malformed));
        // Wrong length for known kinds.
        for bad in [
            &[2u8, 3, 0][..],
            &[3, 4, 0, 0],
            &[4, 3, 0],
            &[5, 9, 0, 0, 0, 0, 0, 0, 0],
            &[5, 2],
            &[8, 9, 0, 0, 0, 0, 0, 0, 0],
        ] {
            assert_eq!(TcpOption::parse(bad), Err(Error::Malformed), "{bad:?}");
        }
        // Window scale above 14 is clamped (RFC 7323 §2.3).
        assert_eq!(
            TcpOption::parse(&[3, 3, 15]).unwrap().0,
            TcpOption::WindowScale(14)
        );
        // Unknown options are carried.
        assert_eq!(
            TcpOption::parse(&[30, 4, 7, 8, 9]).unwrap(),
            (
                TcpOption::Unknown {
                    kind: 30,
                    data: &[7, 8]
                },
                &[9u8][..]
            )
        );
        // The iterator yields an error once and stops; Repr::parse reports Malformed.
        let mut b = SYN_BYTES;
        b[21] = 40; // MSS length overruns the option space
        let p = Packet::new_checked(&b[..]).unwrap();
        let items: Vec<_> = p.options_iter().collect();
        assert_eq!(items, [Err(Error::Malformed)]);
        let mut pkt = Packet::new_unchecked(b);
        pkt.fill_checksum(&PH_SYN);
        let b = pkt.into_inner();
        assert_eq!(
            Repr::parse(&Packet::new_checked(&b[..]).unwrap(), &PH_SYN),
            Err(Error::Malformed)
        );
        // End-of-list stops the walk; trailing bytes are padding.
        let items: Vec<_> = OptionsIter::new(&[1, 0, 0xff, 0xff]).collect();
        assert_eq!(
            items,
            [Ok(TcpOption::NoOperation), Ok(TcpOption::EndOfList)]
        );
    }

    fn smoltcp_addrs(ph: &PseudoHeader) -> (smoltcp::wire::IpAddress, smoltcp::wire::IpAddress) {
        match *ph {
            PseudoHeader::V4 { src, dst } => (src.into(), dst.into()),
            PseudoHeader::V6 { src, dst } => (src.into(), dst.into()),
        }
    }

    #[test]
    fn differential_against_oracles() {
        for (bytes, ph) in [
            (&SYN_BYTES[..], PH_SYN),
            (&DATA_V6_BYTES[..], PH_V6),
            (&SACK_BYTES[..], PH_SACK),
        ] {
            let ours = Packet::new_checked(bytes).unwrap();
            let sm = smoltcp::wire::TcpPacket::new_checked(bytes).unwrap();
            let (s, d) = smoltcp_addrs(&ph);
            assert_eq!(
                (ours.src_port(), ours.dst_port()),
                (sm.src_port(), sm.dst_port())
            );
            assert_eq!(ours.seq_number(), sm.seq_number().0 as u32);
            assert_eq!(ours.ack_number(), sm.ack_number().0 as u32);
            assert_eq!(
                (
                    ours.syn(),
                    ours.ack(),
                    ours.fin(),
                    ours.rst(),
                    ours.psh(),
                    ours.urg(),
                    ours.ece(),
                    ours.cwr()
                ),
                (
                    sm.syn(),
                    sm.ack(),
                    sm.fin(),
                    sm.rst(),
                    sm.psh(),
                    sm.urg(),
                    sm.ece(),
                    sm.cwr()
                )
            );
            assert_eq!(ours.header_len(), sm.header_len());
            assert_eq!(ours.window_len(), sm.window_len());
            assert_eq!(ours.payload(), sm.payload());
            assert_eq!(ours.verify_checksum(&ph), sm.verify_checksum(&s, &d));
            let smr = smoltcp::wire::TcpRepr::parse(
                &sm,
                &s,
                &d,
                &smoltcp::phy::ChecksumCapabilities::default(),
            )
            .unwrap();
            let r = Repr::parse(&ours, &ph).unwrap();
            assert_eq!(r.max_seg_size, smr.max_seg_size);
            assert_eq!(r.window_scale, smr.window_scale);
            assert_eq!(r.sack_permitted, smr.sack_permitted);
            assert_eq!(r.timestamps, smr.timestamp.map(|t| (t.tsval, t.tsecr)));
            assert_eq!(r.sack_ranges[..3], smr.sack_ranges[..]);

            let (eh, payload) = etherparse::TcpHeader::from_slice(bytes).unwrap();
            assert_eq!(
                (
                    eh.source_port,
                    eh.destination_port,
                    eh.sequence_number,
                    eh.acknowledgment_number
                ),
                (r.src_port, r.dst_port, r.seq_number, r.ack_number)
            );
            assert_eq!(
                (eh.syn, eh.ack, eh.psh, eh.window_size, eh.checksum),
                (
                    r.flags.syn(),
                    r.flags.ack(),
                    r.flags.psh(),
                    r.window_len,
                    ours.checksum()
                )
            );
            assert_eq!(eh.options.as_slice(), ours.options());
            assert_eq!(payload, r.payload);

            let pn = pnet_packet::tcp::TcpPacket::new(bytes).unwrap();
            let pn_sum = match ph {
                PseudoHeader::V4 { src, dst } => pnet_packet::tcp::ipv4_checksum(&pn, &src, &dst),
                PseudoHeader::V6 { src, dst } => pnet_packet::tcp::ipv6_checksum(&pn, &src, &dst),
            };
            assert_eq!(pn_sum, ours.checksum());
            assert_eq!(u16::from(pn.get_flags()) as u8, ours.flags().0);
        }
    }

    fn ph_strategy() -> impl Strategy<Value = PseudoHeader> {
        prop_oneof![
            (any::<u32>(), any::<u32>()).prop_map(|(s, d)| PseudoHeader::V4 {
                src: s.into(),
                dst: d.into()
            }),
            (any::<u128>(), any::<u128>()).prop_map(|(s, d)| PseudoHeader::V6 {
                src: s.into(),
                dst: d.into()
            }),
        ]
    }

    prop_compose! {
        fn repr_parts()(
            ports in any::<(u16, u16)>(), seq in any::<u32>(), ack in any::<u32>(), flags in any::<u8>(),
            win in any::<u16>(), urg in any::<u16>(), mss in proptest::option::of(any::<u16>()),
            ws in proptest::option::of(0u8..=14), sackp in any::<bool>(), ts in proptest::option::of(any::<(u32, u32)>()),
            nsack in 0usize..=4, blocks in any::<[(u32, u32); 4]>(),
            payload in proptest::collection::vec(any::<u8>(), 0..32),
        ) -> (Repr<'static>, Vec<u8>) {
            let mut sack_ranges = [None; 4];
            for (slot, b) in sack_ranges.iter_mut().zip(blocks).take(nsack) {
                *slot = Some(b);
            }
            (Repr {
                src_port: ports.0, dst_port: ports.1, seq_number: seq, ack_number: ack, flags: Flags(flags),
                window_len: win, urgent_at: urg, max_seg_size: mss, window_scale: ws, sack_permitted: sackp,
                timestamps: ts, sack_ranges, payload: &[],
            }, payload)
        }
    }

    proptest! {
        #[test]
        fn round_trip((r, payload) in repr_parts(), ph in ph_strategy()) {
            let r = Repr { payload: &payload, ..r };
            // Only combinations that fit in 40 option octets can be sent at all.
            prop_assume!(r.options_len() <= 40);
            let mut buf = vec![0xa5u8; r.buffer_len()];
            r.emit(&mut Packet::new_unchecked(&mut buf[..]), &ph);
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum(&ph));
            prop_assert_eq!(usize::from(p.header_len()) % 4, 0);
            prop_assert_eq!(Repr::parse(&p, &ph).unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..70), ph in ph_strategy()) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number(), p.flags(), p.reserved());
                let _ = (p.window_len(), p.checksum(), p.urgent_at(), p.payload(), p.segment_len());
                let n = p.options_iter().count();
                prop_assert!(n <= 40);
                if let Ok(r) = Repr::parse(&p, &ph) {
                    prop_assert!(r.window_scale.is_none_or(|s| s <= 14));
                }
            }
        }
    }
}
