//! Interface settings the datapath depends on, read and written with `SIOCETHTOOL` in the calling
//! thread's network namespace (the CNI plugin calls these from inside the pod's namespace).
//!
//! Why offloads matter: a pod's veth end offloads TX checksums and segmentation by default, so
//! frames leave the pod with partial checksums (or as 64 KiB GSO super-frames) and reach AF_XDP
//! copy mode in that state; TCP through the switch then fails (shared/AFXDP.md). Turning every
//! TX checksum and segmentation feature off on the pod end makes the pod's kernel emit finished,
//! MTU-sized frames. This goes through the named-feature interface (`ETHTOOL_GSTRINGS` of the
//! feature string set, then `ETHTOOL_[GS]FEATURES`) exactly like `ethtool -K`: the legacy
//! per-feature commands miss features newer than them (e.g. `tx-tcp-accecn-segmentation` stays on).
//! Queue counts matter because an `XskPort` serves one RX queue. [`enter_netns`] lets a thread
//! (the CNI plugin, a test) act inside a pod's namespace before calling these.
//! Thread-safety: stateless; `enter_netns` changes only the calling thread's namespace.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use crate::sys::{self, EthtoolChannels};

const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;
/// More feature words than any kernel has (64 features today, two words).
const MAX_FEATURE_WORDS: usize = 8;

/// TX offload state of an interface: whether any feature of each family is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "a report of independent on/off features"
)]
pub struct TxOffloads {
    /// Any `tx-checksum-*` feature.
    pub checksum: bool,
    /// `tx-scatter-gather`.
    pub scatter_gather: bool,
    /// Any `tx-tcp*-segmentation` feature.
    pub tso: bool,
    /// `tx-generic-segmentation`.
    pub gso: bool,
    /// Any other `tx-*segmentation` feature (UDP, tunnels, SCTP…).
    pub other_segmentation: bool,
}

/// The device feature names, indexed by feature bit.
fn feature_names(ifname: &str) -> io::Result<Vec<String>> {
    // struct ethtool_sset_info { cmd, reserved, sset_mask (u64), data[1] }.
    let mut info = [ETHTOOL_GSSET_INFO, 0, 0, 0, 0];
    let mask = 1u64 << ETH_SS_FEATURES;
    info[2..4].copy_from_slice(&[mask as u32, (mask >> 32) as u32]);
    sys::ethtool_words(ifname, &mut info)?;
    let returned = u64::from(info[2]) | (u64::from(info[3]) << 32);
    if returned & mask == 0 {
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    }
    let count = info[4] as usize;
    if count > MAX_FEATURE_WORDS * 32 {
        return Err(io::Error::from(io::ErrorKind::InvalidData));
    }
    // struct ethtool_gstrings { cmd, string_set, len, data[len * 32] }.
    let mut buf = vec![0u32; 3 + count * ETH_GSTRING_LEN / 4];
    buf[..3].copy_from_slice(&[ETHTOOL_GSTRINGS, ETH_SS_FEATURES, count as u32]);
    sys::ethtool_words(ifname, &mut buf)?;
    let bytes: Vec<u8> = buf[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
    Ok(bytes
        .chunks(ETH_GSTRING_LEN)
        .take((buf[2] as usize).min(count))
        .map(|s| {
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        })
        .collect())
}

/// The active feature bits (`ETHTOOL_GFEATURES`), one bool per feature bit.
fn active_features(ifname: &str) -> io::Result<(Vec<bool>, usize)> {
    // struct ethtool_gfeatures { cmd, size, features[size] { available, requested, active, never_changed } }.
    let mut buf = vec![0u32; 2 + 4 * MAX_FEATURE_WORDS];
    buf[..2].copy_from_slice(&[ETHTOOL_GFEATURES, MAX_FEATURE_WORDS as u32]);
    sys::ethtool_words(ifname, &mut buf)?;
    let words = (buf[1] as usize).min(MAX_FEATURE_WORDS);
    let active = (0..words * 32)
        .map(|bit| buf[2 + 4 * (bit / 32) + 2] & (1 << (bit % 32)) != 0)
        .collect();
    Ok((active, words))
}

fn is_tx_checksum(name: &str) -> bool {
    name.starts_with("tx-checksum-")
}

fn is_tx_segmentation(name: &str) -> bool {
    name.starts_with("tx-") && name.ends_with("segmentation")
}

/// Reads the TX offload state of `ifname`.
pub fn tx_offloads(ifname: &str) -> io::Result<TxOffloads> {
    let names = feature_names(ifname)?;
    let (active, _) = active_features(ifname)?;
    let on = |pred: &dyn Fn(&str) -> bool| names.iter().zip(&active).any(|(n, &a)| a && pred(n));
    Ok(TxOffloads {
        checksum: on(&is_tx_checksum),
        scatter_gather: on(&|n| n == "tx-scatter-gather"),
        tso: on(&|n| n.starts_with("tx-tcp") && n.ends_with("segmentation")),
        gso: on(&|n| n == "tx-generic-segmentation"),
        other_segmentation: on(&|n| {
            is_tx_segmentation(n) && !n.starts_with("tx-tcp") && n != "tx-generic-segmentation"
        }),
    })
}

/// Turns every TX checksum and TX segmentation feature off on `ifname` (what
/// `ethtool -K <if> tx off tso off gso off` does, plus UDP/tunnel/SCTP segmentation), so the
/// interface emits complete, MTU-sized frames. Features the driver cannot change are left as
/// they are (the kernel ignores them); the result is read back by [`tx_offloads`].
pub fn disable_tx_offloads(ifname: &str) -> io::Result<()> {
    let names = feature_names(ifname)?;
    let (_, words) = active_features(ifname)?;
    // struct ethtool_sfeatures { cmd, size, features[size] { valid, requested } }: only `valid`
    // bits change, to the value in `requested` (zero: off).
    let mut buf = vec![0u32; 2 + 2 * words];
    buf[..2].copy_from_slice(&[ETHTOOL_SFEATURES, words as u32]);
    for (bit, name) in names.iter().enumerate().take(words * 32) {
        if is_tx_checksum(name) || is_tx_segmentation(name) {
            buf[2 + 2 * (bit / 32)] |= 1 << (bit % 32);
        }
    }
    sys::ethtool_words(ifname, &mut buf)
}

/// Moves the calling thread into the network namespace at `path` (`/run/netns/<name>`,
/// `/proc/<pid>/ns/net`, or the `CNI_NETNS` path). Affects only this thread: sockets it creates
/// afterwards, interface names it resolves and the `SIOCETHTOOL` calls above then act in that
/// namespace; sockets created earlier keep theirs. Use a dedicated thread.
pub fn enter_netns(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    sys::setns_net(file.as_fd())
}

/// Active RX queues of `ifname` (`rx` + `combined` channels); `Ok(None)` when the driver does not
/// report channels.
pub fn rx_queue_count(ifname: &str) -> io::Result<Option<u32>> {
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..EthtoolChannels::default()
    };
    match sys::ethtool(ifname, &mut ch) {
        Ok(()) => Ok(Some((ch.rx_count + ch.combined_count).max(1))),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_refused() {
        assert!(tx_offloads("").is_err());
        assert!(tx_offloads("a-name-longer-than-15").is_err());
        assert_eq!(
            rx_queue_count("psx-absent0").map_err(|e| e.raw_os_error()),
            Err(Some(libc::ENODEV))
        );
    }

    #[test]
    fn entering_a_missing_namespace_fails_cleanly() {
        let err = enter_netns(Path::new("/run/netns/psx-absent-ns")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        // A file that is not a namespace is refused by the kernel.
        assert_eq!(
            enter_netns(Path::new("/proc/self/stat"))
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EINVAL)
        );
    }

    #[test]
    fn feature_families() {
        assert!(is_tx_checksum("tx-checksum-ip-generic"));
        assert!(!is_tx_checksum("rx-checksum"));
        assert!(is_tx_segmentation("tx-tcp-accecn-segmentation"));
        assert!(is_tx_segmentation("tx-generic-segmentation"));
        assert!(!is_tx_segmentation("rx-gro-hw"));
        assert!(!is_tx_segmentation("tx-scatter-gather"));
    }

    /// Loopback exists in every namespace and reports the feature string set.
    #[test]
    fn loopback_feature_names_are_read() {
        let names = feature_names("lo").expect("feature names");
        assert!(
            names.iter().any(|n| n == "tx-generic-segmentation"),
            "{names:?}"
        );
        assert!(names.iter().any(|n| n == "tx-scatter-gather"));
    }
}
