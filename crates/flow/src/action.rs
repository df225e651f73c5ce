//! What the datapath does with a frame: [`Action`], the fixed-capacity inline list [`Actions`]
//! that a flow-cache entry holds, and [`DropReason`], the table of named drop counters.
//!
//! Invariants: an [`Actions`] never holds more than [`Actions::CAPACITY`] actions and never
//! allocates; [`DropReason::as_index`] is stable (`ALL[r.as_index()] == r`), so per-worker counter
//! arrays can be indexed by it and merged by name. Pure values; thread-safe.

use core::fmt;

use podswitch_wire::ethernet::Address;

/// Why a frame was dropped: one named counter per reason (VPP's habit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// The frame did not parse.
    ParseError,
    /// No route or endpoint for the destination.
    NoRoute,
    /// Network policy denied it.
    PolicyDenied,
    /// Connection tracking found it invalid (out of window, bad state).
    ConntrackInvalid,
    /// The conntrack table (or a zone limit) is full.
    ConntrackFull,
    /// The source address is not the one the port or VTEP owns.
    SpoofedSource,
    /// TTL or hop limit reached zero.
    TtlExpired,
    /// Larger than the egress (or tunnel) MTU.
    MtuExceeded,
    /// Not enough headroom in the buffer to prepend a header.
    NoHeadroom,
    /// A VXLAN frame with a bad header (I flag clear, truncated, not UDP to the VXLAN port).
    VxlanBadHeader,
    /// A VXLAN frame whose outer destination (IP address or MAC) is not our VTEP's.
    VxlanNotLocal,
    /// A fragmented VXLAN outer datagram (RFC 7348 §4.3: VTEPs must not fragment; we do not
    /// reassemble).
    VxlanFragment,
    /// A VNI this node does not serve.
    UnknownVni,
    /// The outer source is not a known VTEP, or an encap names an unknown VTEP.
    UnknownVtep,
    /// The flow cache could not take the entry.
    CacheFull,
    /// A rate limiter (QoS) refused it.
    RateLimited,
    /// The input or output port is unknown or down.
    UnknownPort,
    /// A Service has no ready endpoint.
    NoEndpoint,
    /// The transmit ring was full.
    TxFull,
    /// A frame of a kind the datapath does not handle.
    Unsupported,
    /// The slow-path queue was full.
    SlowPathFull,
}

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [DropReason; 21] = [
        DropReason::ParseError,
        DropReason::NoRoute,
        DropReason::PolicyDenied,
        DropReason::ConntrackInvalid,
        DropReason::ConntrackFull,
        DropReason::SpoofedSource,
        DropReason::TtlExpired,
        DropReason::MtuExceeded,
        DropReason::NoHeadroom,
        DropReason::VxlanBadHeader,
        DropReason::VxlanNotLocal,
        DropReason::VxlanFragment,
        DropReason::UnknownVni,
        DropReason::UnknownVtep,
        DropReason::CacheFull,
        DropReason::RateLimited,
        DropReason::UnknownPort,
        DropReason::NoEndpoint,
        DropReason::TxFull,
        DropReason::Unsupported,
        DropReason::SlowPathFull,
    ];

    /// Number of reasons (the length of a counter array).
    pub const COUNT: usize = Self::ALL.len();

    /// Stable index into a counter array.
    #[inline]
    pub const fn as_index(self) -> usize {
        self as usize
    }

    /// The reason at `index`, if any.
    pub const fn from_index(index: usize) -> Option<DropReason> {
        if index < Self::COUNT {
            Some(Self::ALL[index])
        } else {
            None
        }
    }

    /// The counter name (snake case, stable: metrics and dumps use it).
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::ParseError => "parse_error",
            DropReason::NoRoute => "no_route",
            DropReason::PolicyDenied => "policy_denied",
            DropReason::ConntrackInvalid => "conntrack_invalid",
            DropReason::ConntrackFull => "conntrack_full",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::MtuExceeded => "mtu_exceeded",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::VxlanBadHeader => "vxlan_bad_header",
            DropReason::VxlanNotLocal => "vxlan_not_local",
            DropReason::VxlanFragment => "vxlan_fragment",
            DropReason::UnknownVni => "unknown_vni",
            DropReason::UnknownVtep => "unknown_vtep",
            DropReason::CacheFull => "cache_full",
            DropReason::RateLimited => "rate_limited",
            DropReason::UnknownPort => "unknown_port",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::TxFull => "tx_full",
            DropReason::Unsupported => "unsupported",
            DropReason::SlowPathFull => "slow_path_full",
        }
    }

    /// The reason with counter name `name`.
    pub fn from_name(name: &str) -> Option<DropReason> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One step of a cached decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Transmit on a port.
    Output {
        /// Output port.
        port: u32,
    },
    /// Rewrite the Ethernet addresses (routing to the next hop).
    SetMacs {
        /// New source MAC.
        src: Address,
        /// New destination MAC.
        dst: Address,
    },
    /// Decrement TTL / hop limit (RFC 1812 §5.3.1), dropping at zero.
    DecTtl,
    /// VXLAN-encapsulate towards a VTEP (an id in the overlay's VTEP table).
    Encap {
        /// VTEP id.
        vtep: u32,
    },
    /// Strip the VXLAN outer headers.
    Decap,
    /// Apply the NAT that connection tracking holds for this connection.
    Nat,
    /// Drop and count.
    Drop {
        /// Counter to bump.
        reason: DropReason,
    },
    /// Hand the frame to the slow path (ARP, ND, unknown flows, …).
    ToSlowPath,
}

/// The list was already at [`Actions::CAPACITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("action list full ({} actions)", Actions::CAPACITY)]
pub struct ActionsFull;

/// A fixed-capacity inline list of actions (no heap), executed in order.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Actions {
    len: u8,
    items: [Action; Actions::CAPACITY],
}

impl Actions {
    /// Maximum number of actions.
    pub const CAPACITY: usize = 6;

    /// An empty list.
    pub const fn new() -> Actions {
        Actions {
            len: 0,
            items: [Action::ToSlowPath; Actions::CAPACITY],
        }
    }

    /// A list holding one action.
    pub const fn one(action: Action) -> Actions {
        let mut a = Actions::new();
        a.items[0] = action;
        a.len = 1;
        a
    }

    /// `[Drop { reason }]`.
    pub const fn drop(reason: DropReason) -> Actions {
        Actions::one(Action::Drop { reason })
    }

    /// A list from a slice; `ActionsFull` if it is longer than [`Actions::CAPACITY`].
    pub fn from_slice(actions: &[Action]) -> Result<Actions, ActionsFull> {
        let mut a = Actions::new();
        for &x in actions {
            a.push(x)?;
        }
        Ok(a)
    }

    /// Appends an action.
    #[inline]
    pub fn push(&mut self, action: Action) -> Result<(), ActionsFull> {
        let slot = self
            .items
            .get_mut(usize::from(self.len))
            .ok_or(ActionsFull)?;
        *slot = action;
        self.len += 1;
        Ok(())
    }

    /// The actions, in order.
    #[inline]
    pub fn as_slice(&self) -> &[Action] {
        &self.items[..usize::from(self.len)]
    }

    /// Number of actions.
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the list is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Iterates over the actions.
    #[inline]
    pub fn iter(&self) -> core::slice::Iter<'_, Action> {
        self.as_slice().iter()
    }

    /// The drop reason if the list drops the frame.
    pub fn drop_reason(&self) -> Option<DropReason> {
        self.iter().find_map(|a| match a {
            Action::Drop { reason } => Some(*reason),
            _ => None,
        })
    }
}

impl Default for Actions {
    fn default() -> Self {
        Actions::new()
    }
}

impl fmt::Debug for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<'a> IntoIterator for &'a Actions {
    type Item = &'a Action;
    type IntoIter = core::slice::Iter<'a, Action>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl TryFrom<&[Action]> for Actions {
    type Error = ActionsFull;

    fn try_from(value: &[Action]) -> Result<Self, Self::Error> {
        Actions::from_slice(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reason_table_is_consistent() {
        let mut names = std::collections::HashSet::new();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.as_index(), i);
            assert_eq!(DropReason::from_index(i), Some(*r));
            assert_eq!(DropReason::from_name(r.name()), Some(*r));
            assert!(names.insert(r.name()), "duplicate name {}", r.name());
            assert_eq!(r.to_string(), r.name());
        }
        assert_eq!(DropReason::from_index(DropReason::COUNT), None);
        assert_eq!(DropReason::from_name("nope"), None);
    }

    #[test]
    fn actions_are_bounded_and_ordered() {
        let mut a = Actions::new();
        assert!(a.is_empty());
        let seq = [
            Action::DecTtl,
            Action::SetMacs {
                src: Address([2, 0, 0, 0, 0, 1]),
                dst: Address([2, 0, 0, 0, 0, 2]),
            },
            Action::Nat,
            Action::Encap { vtep: 3 },
            Action::Output { port: 1 },
            Action::Decap,
        ];
        for x in seq {
            a.push(x).unwrap();
        }
        assert_eq!(a.push(Action::ToSlowPath), Err(ActionsFull));
        assert_eq!(a.len(), Actions::CAPACITY);
        assert_eq!(a.as_slice(), &seq);
        assert_eq!(a.iter().copied().collect::<Vec<_>>(), seq.to_vec());
        assert_eq!(Actions::from_slice(&seq), Ok(a));
        assert!(Actions::from_slice(&[Action::Nat; 7]).is_err());
        assert_eq!(a.drop_reason(), None);
        let d = Actions::drop(DropReason::PolicyDenied);
        assert_eq!(d.drop_reason(), Some(DropReason::PolicyDenied));
        assert_eq!(format!("{d:?}"), "[Drop { reason: PolicyDenied }]");
        // Small enough to sit in a cache entry next to a key.
        assert!(core::mem::size_of::<Actions>() <= 104);
    }
}
