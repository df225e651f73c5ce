//! `PcapPort`: a [`Port`] that receives the frames of a classic pcap file and writes what it
//! transmits to another pcap file; plus the small [`PcapReader`] / [`PcapWriter`] it is built on.
//!
//! Format (libpcap's savefile): a 24-byte global header (magic, version 2.4, thiszone, sigfigs,
//! snaplen, linktype) and, per frame, a 16-byte record header (ts_sec, ts_usec, incl_len,
//! orig_len) followed by `incl_len` bytes. We read either byte order and both the microsecond
//! (0xa1b2c3d4) and nanosecond (0xa1b23c4d) magics, accept only linktype 1 (Ethernet), and write
//! little-endian microsecond files with snaplen 65535. A record longer than [`MAX_RECORD`] or a
//! truncated record is `PortError::Malformed`, never a panic; the reader reuses one buffer.
//! Written timestamps come from the wall clock at `send` (this crate may read the clock).
//! Thread-safety: `Send` when its reader and writer are.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::RawFd;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::port::{Port, PortError, PortStats};

const MAGIC_USEC: u32 = 0xa1b2_c3d4;
const MAGIC_NSEC: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;
/// Largest record accepted when reading (libpcap's own MAXIMUM_SNAPLEN).
pub const MAX_RECORD: usize = 262_144;
const SNAPLEN: u32 = 65_535;

/// Reads frames from a pcap stream.
#[derive(Debug)]
pub struct PcapReader<R> {
    input: R,
    big_endian: bool,
    nanos: bool,
    buf: Vec<u8>,
}

/// One record's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcapRecord {
    pub ts_sec: u32,
    /// Microseconds (or nanoseconds for nanosecond files, see [`PcapReader::is_nanosecond`]).
    pub ts_frac: u32,
    pub orig_len: u32,
}

fn read_exact_or_eof<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<bool, PortError> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(PortError::Malformed),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(PortError::from_io(&e)),
        }
    }
    Ok(true)
}

impl<R: Read> PcapReader<R> {
    /// Reads and checks the global header.
    pub fn new(mut input: R) -> Result<Self, PortError> {
        let mut h = [0u8; 24];
        if !read_exact_or_eof(&mut input, &mut h)? {
            return Err(PortError::Malformed);
        }
        let magic_le = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let (big_endian, nanos) = match magic_le {
            MAGIC_USEC => (false, false),
            MAGIC_NSEC => (false, true),
            m if m.swap_bytes() == MAGIC_USEC => (true, false),
            m if m.swap_bytes() == MAGIC_NSEC => (true, true),
            _ => return Err(PortError::Malformed),
        };
        let reader = Self {
            input,
            big_endian,
            nanos,
            buf: Vec::new(),
        };
        if reader.u32_at(&h, 20) & 0x0fff_ffff != LINKTYPE_ETHERNET {
            return Err(PortError::Malformed);
        }
        Ok(reader)
    }

    fn u32_at(&self, b: &[u8], at: usize) -> u32 {
        let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.big_endian {
            u32::from_be_bytes(w)
        } else {
            u32::from_le_bytes(w)
        }
    }

    pub fn is_nanosecond(&self) -> bool {
        self.nanos
    }

    /// The next frame, or `Ok(None)` at a clean end of file.
    pub fn next_frame(&mut self) -> Result<Option<(PcapRecord, &[u8])>, PortError> {
        let mut h = [0u8; 16];
        if !read_exact_or_eof(&mut self.input, &mut h)? {
            return Ok(None);
        }
        let rec = PcapRecord {
            ts_sec: self.u32_at(&h, 0),
            ts_frac: self.u32_at(&h, 4),
            orig_len: self.u32_at(&h, 12),
        };
        let incl = self.u32_at(&h, 8) as usize;
        if incl > MAX_RECORD {
            return Err(PortError::Malformed);
        }
        self.buf.resize(incl, 0);
        if incl > 0 && !read_exact_or_eof(&mut self.input, &mut self.buf)? {
            return Err(PortError::Malformed);
        }
        Ok(Some((rec, &self.buf)))
    }
}

/// Writes frames to a pcap stream (little-endian, microseconds, linktype 1).
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    output: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header.
    pub fn new(mut output: W) -> io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&MAGIC_USEC.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        h.extend_from_slice(&SNAPLEN.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        output.write_all(&h)?;
        Ok(Self { output })
    }

    /// Appends one record (truncated to the snaplen, with `orig_len` the full length).
    pub fn write(&mut self, ts_sec: u32, ts_usec: u32, frame: &[u8]) -> io::Result<()> {
        let incl = frame.len().min(SNAPLEN as usize);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&ts_sec.to_le_bytes());
        h[4..8].copy_from_slice(&ts_usec.to_le_bytes());
        h[8..12].copy_from_slice(&(incl as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.output.write_all(&h)?;
        self.output.write_all(&frame[..incl])
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.output.flush()
    }

    pub fn into_inner(self) -> W {
        self.output
    }
}

type BoxRead = Box<dyn Read + Send>;
type BoxWrite = Box<dyn Write + Send>;

/// A port backed by pcap streams. See the module documentation.
pub struct PcapPort {
    name: String,
    reader: Option<PcapReader<BoxRead>>,
    writer: Option<PcapWriter<BoxWrite>>,
    stats: PortStats,
}

impl std::fmt::Debug for PcapPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapPort")
            .field("name", &self.name)
            .field("reading", &self.reader.is_some())
            .field("writing", &self.writer.is_some())
            .field("stats", &self.stats)
            .finish()
    }
}

impl PcapPort {
    /// A port reading frames from `input` (if any) and writing transmitted frames to `output`
    /// (if any; without one, sends are counted and discarded).
    pub fn new(
        name: &str,
        input: Option<BoxRead>,
        output: Option<BoxWrite>,
    ) -> Result<Self, io::Error> {
        let reader = input
            .map(PcapReader::new)
            .transpose()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let writer = output.map(PcapWriter::new).transpose()?;
        Ok(Self {
            name: name.to_owned(),
            reader,
            writer,
            stats: PortStats::default(),
        })
    }

    /// Opens `input` for reading and creates (truncates) `output` for writing.
    pub fn open(name: &str, input: Option<&Path>, output: Option<&Path>) -> io::Result<Self> {
        let input = input
            .map(|p| File::open(p).map(|f| Box::new(BufReader::new(f)) as BoxRead))
            .transpose()?;
        let output = output
            .map(|p| File::create(p).map(|f| Box::new(BufWriter::new(f)) as BoxWrite))
            .transpose()?;
        Self::new(name, input, output)
    }
}

impl Port for PcapPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn recv(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> Result<usize, PortError> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(0);
        };
        let mut n = 0;
        while n < max {
            match reader.next_frame() {
                Ok(Some((_, frame))) => {
                    self.stats.rx_packets += 1;
                    self.stats.rx_bytes += frame.len() as u64;
                    f(frame);
                    n += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    // A malformed file yields nothing more: drop the reader so later calls are
                    // a clean end of input rather than repeated errors.
                    self.stats.rx_dropped += 1;
                    self.reader = None;
                    return if n > 0 { Ok(n) } else { Err(e) };
                }
            }
        }
        Ok(n)
    }

    fn send(&mut self, frame: &[u8]) -> Result<bool, PortError> {
        if frame.len() > SNAPLEN as usize {
            return Err(PortError::FrameTooLarge {
                len: frame.len(),
                max: SNAPLEN as usize,
            });
        }
        if let Some(w) = self.writer.as_mut() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            w.write(now.as_secs() as u32, now.subsec_micros(), frame)
                .map_err(|e| PortError::from_io(&e))?;
        }
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += frame.len() as u64;
        Ok(true)
    }

    fn flush(&mut self) -> Result<(), PortError> {
        match self.writer.as_mut() {
            Some(w) => w.flush().map_err(|e| PortError::from_io(&e)),
            None => Ok(()),
        }
    }

    fn poll_fd(&self) -> Option<RawFd> {
        None
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A `Write` whose bytes the test can read back after the port took ownership.
    #[derive(Clone, Default)]
    struct SharedBuf(Arc<Mutex<Vec<u8>>>);
    impl Write for SharedBuf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn frames() -> Vec<Vec<u8>> {
        (0..5u8)
            .map(|i| {
                (0..60 + usize::from(i) * 100)
                    .map(|b| (b as u8) ^ i)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn written_file_has_the_libpcap_layout() {
        let out = SharedBuf::default();
        let mut port = PcapPort::new("cap", None, Some(Box::new(out.clone()))).unwrap();
        assert!(port.send(&[0xaa; 60]).unwrap());
        port.flush().unwrap();
        let bytes = out.0.lock().unwrap().clone();
        assert_eq!(bytes.len(), 24 + 16 + 60);
        assert_eq!(&bytes[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(&bytes[4..8], &[2, 0, 4, 0]);
        assert_eq!(&bytes[16..20], &65535u32.to_le_bytes());
        assert_eq!(&bytes[20..24], &1u32.to_le_bytes());
        assert_eq!(&bytes[32..36], &60u32.to_le_bytes(), "incl_len");
        assert_eq!(&bytes[36..40], &60u32.to_le_bytes(), "orig_len");
        assert!(bytes[40..].iter().all(|&b| b == 0xaa));
    }

    #[test]
    fn send_then_recv_round_trips_through_a_file() {
        let dir = std::env::temp_dir().join(format!("psx-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.pcap");
        {
            let mut w = PcapPort::open("w", None, Some(&path)).unwrap();
            for f in frames() {
                assert!(w.send(&f).unwrap());
            }
            w.flush().unwrap();
        }
        let mut r = PcapPort::open("r", Some(&path), None).unwrap();
        let mut got = Vec::new();
        assert_eq!(r.recv(3, &mut |f| got.push(f.to_vec())).unwrap(), 3);
        assert_eq!(r.recv(64, &mut |f| got.push(f.to_vec())).unwrap(), 2);
        assert_eq!(r.recv(64, &mut |f| got.push(f.to_vec())).unwrap(), 0);
        assert_eq!(got, frames());
        assert_eq!(r.stats().rx_packets, 5);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_big_endian_nanosecond_files() {
        let mut file = Vec::new();
        file.extend_from_slice(&MAGIC_NSEC.to_be_bytes());
        file.extend_from_slice(&[0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
        file.extend_from_slice(&65535u32.to_be_bytes());
        file.extend_from_slice(&1u32.to_be_bytes());
        for (i, len) in [14u32, 3].into_iter().enumerate() {
            file.extend_from_slice(&(100 + i as u32).to_be_bytes());
            file.extend_from_slice(&999_999_999u32.to_be_bytes());
            file.extend_from_slice(&len.to_be_bytes());
            file.extend_from_slice(&(len + 10).to_be_bytes());
            file.extend((0..len).map(|b| b as u8));
        }
        let mut r = PcapReader::new(&file[..]).unwrap();
        assert!(r.is_nanosecond());
        let (rec, f) = r.next_frame().unwrap().unwrap();
        assert_eq!(
            (rec.ts_sec, rec.ts_frac, rec.orig_len, f.len()),
            (100, 999_999_999, 24, 14)
        );
        let (rec, f) = r.next_frame().unwrap().unwrap();
        assert_eq!((rec.ts_sec, f), (101, &[0u8, 1, 2][..]));
        assert!(r.next_frame().unwrap().is_none());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        // Bad magic, short header, wrong linktype.
        assert!(PcapReader::new(&[0u8; 24][..]).is_err());
        assert!(PcapReader::new(&[0xd4, 0xc3, 0xb2, 0xa1][..]).is_err());
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(1, 2, &[1, 2, 3, 4, 5, 6]).unwrap();
        let good = w.into_inner();
        let mut wrong_link = good.clone();
        wrong_link[20] = 105;
        assert!(PcapReader::new(&wrong_link[..]).is_err());
        // Every truncation of a valid file is either a clean prefix or Malformed.
        assert!(
            PcapReader::new(&good[..24])
                .unwrap()
                .next_frame()
                .unwrap()
                .is_none()
        );
        for cut in 25..good.len() {
            let mut r = PcapReader::new(&good[..cut]).unwrap();
            assert_eq!(
                r.next_frame().err(),
                Some(PortError::Malformed),
                "cut at {cut}"
            );
        }
        // Oversized record length.
        let mut huge = good.clone();
        huge[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut port = PcapPort::new("p", Some(Box::new(io::Cursor::new(huge))), None).unwrap();
        assert_eq!(port.recv(8, &mut |_| {}), Err(PortError::Malformed));
        assert_eq!(
            port.recv(8, &mut |_| {}),
            Ok(0),
            "reader dropped after the error"
        );
        assert_eq!(port.stats().rx_dropped, 1);
    }
}
