//! The one-pass classifier parse: [`parse_frame`] walks L2 → L3 → L4 once and returns offsets plus
//! every field a flow key needs, without allocation.
//!
//! (Contract fixed by the workspace skeleton; the walk itself is being written.)

/// The layer at which a frame failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Ethernet II and its VLAN tags.
    Ethernet,
    /// ARP.
    Arp,
    /// IPv4.
    Ipv4,
    /// IPv6 fixed header or an extension header.
    Ipv6,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
    /// ICMPv4.
    Icmpv4,
    /// ICMPv6.
    Icmpv6,
}

/// Why a frame failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Shorter than the header or than a length field claims.
    Truncated,
    /// A field holds a forbidden value.
    Malformed,
    /// A checksum did not verify.
    Checksum,
    /// A well-formed header of a kind not handled.
    Unsupported,
    /// The IPv6 extension-header chain is longer than the bounded walk allows.
    TooManyExtensionHeaders,
}

/// A typed, `Copy` parse error naming the layer and the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParseError {
    /// Where parsing stopped.
    pub layer: Layer,
    /// Why.
    pub reason: Reason,
}

/// Offsets and flow-key fields of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Headers {}

/// Parses one frame.
pub fn parse_frame(_frame: &[u8]) -> Result<Headers, ParseError> {
    Err(ParseError { layer: Layer::Ethernet, reason: Reason::Unsupported })
}
