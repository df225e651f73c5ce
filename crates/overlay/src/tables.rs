//! The overlay's tables: the [`LocalVtep`] configuration, remote [`Vtep`]s (by id, and by
//! (underlay address, VNI) for decapsulation), and remote endpoints (inner IP → VTEP and MAC).
//!
//! Invariants: a VTEP id is below [`MAX_VTEPS`]; every VTEP has the local address family and a VNI
//! the node serves; (address, VNI) identifies at most one VTEP; every endpoint names an existing
//! VTEP (removing a VTEP removes its endpoints). Built and mutated by the control plane
//! (`&mut self`, may allocate), then read by workers through `&self`; `Send + Sync`.

use core::net::IpAddr;

use hashbrown::{HashMap, HashSet};
use podswitch_wire::ethernet::Address;
use podswitch_wire::vxlan;

use crate::fasthash::{FastState, IpKey, TunnelKey};
use crate::tunnel::{OVERHEAD_V4, OVERHEAD_V6, Prebuilt};

/// VTEP ids index a dense array: they must be below this.
pub const MAX_VTEPS: u32 = 1 << 16;

/// Largest VNI (24 bits, RFC 7348 §5).
const MAX_VNI: u32 = (1 << 24) - 1;

/// This node's VTEP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalVtep {
    /// Our underlay address (outer source; decapsulated frames must be addressed to it).
    pub ip: IpAddr,
    /// Our underlay MAC (outer source MAC).
    pub mac: Address,
    /// The underlay IP MTU (e.g. 1500).
    pub underlay_mtu: u16,
    /// The VXLAN UDP port (4789, RFC 7348 §5).
    pub udp_port: u16,
    /// The VNIs this node serves.
    pub vnis: Vec<u32>,
}

impl LocalVtep {
    /// A local VTEP on the IANA port 4789.
    pub fn new(ip: IpAddr, mac: Address, underlay_mtu: u16, vnis: &[u32]) -> LocalVtep {
        LocalVtep {
            ip,
            mac,
            underlay_mtu,
            udp_port: vxlan::PORT,
            vnis: vnis.to_vec(),
        }
    }
}

/// A remote VTEP: one tunnel (a remote node's underlay address and one VNI).
///
/// A remote node that serves two VNIs is two `Vtep`s with the same address and different ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vtep {
    /// Id (what `Action::Encap { vtep }` names).
    pub id: u32,
    /// Remote underlay address.
    pub ip: IpAddr,
    /// MAC of the underlay next hop towards it (outer destination MAC).
    pub next_hop_mac: Address,
    /// VNI of the tunnel.
    pub vni: u32,
    /// Whether the remote understands VXLAN-GBP (the G bit and group policy ID).
    pub gbp: bool,
}

/// A remote endpoint as installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The VTEP behind which it lives.
    pub vtep: u32,
    /// Its MAC (inner destination MAC).
    pub mac: Address,
}

/// A remote endpoint as routing needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RemoteEndpoint {
    /// The VTEP to encapsulate to.
    pub vtep: u32,
    /// Inner destination MAC.
    pub mac: Address,
    /// The tunnel's VNI.
    pub vni: u32,
}

/// Why an overlay table change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OverlayError {
    /// The underlay MTU leaves less than 68 bytes (RFC 791's minimum) for pods, or an IPv6
    /// underlay is below 1280 (RFC 8200 §5).
    #[error("underlay MTU {0} too small for VXLAN")]
    MtuTooSmall(u16),
    /// A VNI above 2^24 − 1.
    #[error("VNI {0} out of range (24 bits)")]
    VniOutOfRange(u32),
    /// A VTEP's VNI that this node does not serve.
    #[error("VNI {0} is not served by this node")]
    VniNotServed(u32),
    /// A VTEP id at or above `MAX_VTEPS`.
    #[error("VTEP id {0} out of range")]
    VtepIdOutOfRange(u32),
    /// A VTEP id already in use.
    #[error("VTEP id {0} already exists")]
    DuplicateVtep(u32),
    /// Another VTEP already has this address and VNI.
    #[error("VTEP {ip} on VNI {vni} already exists (id {existing})")]
    DuplicateAddress {
        /// The address.
        ip: IpAddr,
        /// The VNI.
        vni: u32,
        /// The VTEP holding it.
        existing: u32,
    },
    /// The VTEP's address family differs from the local underlay's.
    #[error("VTEP {0} is not in the local underlay's address family")]
    FamilyMismatch(IpAddr),
    /// An endpoint names an unknown VTEP.
    #[error("unknown VTEP id {0}")]
    UnknownVtep(u32),
    /// The UDP port is zero.
    #[error("UDP port 0 is not a valid VXLAN port")]
    BadPort,
}

/// One node's overlay state: local VTEP, remote VTEPs with prebuilt headers, remote endpoints.
#[derive(Debug, Clone)]
pub struct Overlay {
    pub(crate) local: LocalVtep,
    pub(crate) vnis: HashSet<u32, FastState>,
    pub(crate) vteps: Vec<Option<Prebuilt>>,
    pub(crate) by_addr: HashMap<TunnelKey, u32, FastState>,
    endpoints: HashMap<IpKey, (IpAddr, Endpoint), FastState>,
}

impl Overlay {
    /// An overlay with no remote VTEPs; validates the local configuration.
    pub fn new(local: LocalVtep) -> Result<Overlay, OverlayError> {
        let overhead = if local.ip.is_ipv6() {
            OVERHEAD_V6
        } else {
            OVERHEAD_V4
        };
        let too_small = usize::from(local.underlay_mtu) < overhead + 68
            || (local.ip.is_ipv6() && local.underlay_mtu < 1280);
        if too_small {
            return Err(OverlayError::MtuTooSmall(local.underlay_mtu));
        }
        if local.udp_port == 0 {
            return Err(OverlayError::BadPort);
        }
        if let Some(&v) = local.vnis.iter().find(|&&v| v > MAX_VNI) {
            return Err(OverlayError::VniOutOfRange(v));
        }
        Ok(Overlay {
            vnis: local.vnis.iter().copied().collect(),
            local,
            vteps: Vec::new(),
            by_addr: HashMap::with_hasher(FastState),
            endpoints: HashMap::with_hasher(FastState),
        })
    }

    /// The local configuration.
    pub fn local(&self) -> &LocalVtep {
        &self.local
    }

    /// Whether the node serves `vni`.
    #[inline]
    pub fn serves(&self, vni: u32) -> bool {
        self.vnis.contains(&vni)
    }

    /// Bytes the outer headers add (50 over IPv4, 70 over IPv6).
    pub fn overhead(&self) -> usize {
        if self.local.ip.is_ipv6() {
            OVERHEAD_V6
        } else {
            OVERHEAD_V4
        }
    }

    /// The pod (inner IP) MTU: underlay MTU − 50 (IPv4 underlay) or − 70 (IPv6 underlay).
    pub fn pod_mtu(&self) -> u16 {
        crate::tunnel::pod_mtu(self.local.underlay_mtu, self.local.ip.is_ipv6())
    }

    /// Adds a remote VTEP and builds its outer header.
    pub fn add_vtep(&mut self, vtep: Vtep) -> Result<(), OverlayError> {
        if vtep.id >= MAX_VTEPS {
            return Err(OverlayError::VtepIdOutOfRange(vtep.id));
        }
        if vtep.vni > MAX_VNI {
            return Err(OverlayError::VniOutOfRange(vtep.vni));
        }
        if !self.serves(vtep.vni) {
            return Err(OverlayError::VniNotServed(vtep.vni));
        }
        if vtep.ip.is_ipv6() != self.local.ip.is_ipv6() {
            return Err(OverlayError::FamilyMismatch(vtep.ip));
        }
        if self.vtep(vtep.id).is_some() {
            return Err(OverlayError::DuplicateVtep(vtep.id));
        }
        if let Some(&existing) = self.by_addr.get(&TunnelKey::new(vtep.ip, vtep.vni)) {
            return Err(OverlayError::DuplicateAddress {
                ip: vtep.ip,
                vni: vtep.vni,
                existing,
            });
        }
        let built =
            Prebuilt::new(&self.local, vtep).ok_or(OverlayError::FamilyMismatch(vtep.ip))?;
        let at = vtep.id as usize;
        if self.vteps.len() <= at {
            self.vteps.resize(at + 1, None);
        }
        self.vteps[at] = Some(built);
        self.by_addr
            .insert(TunnelKey::new(vtep.ip, vtep.vni), vtep.id);
        Ok(())
    }

    /// Removes a VTEP and every endpoint behind it.
    pub fn remove_vtep(&mut self, id: u32) -> Option<Vtep> {
        let v = self.vteps.get_mut(id as usize)?.take()?.vtep;
        self.by_addr.remove(&TunnelKey::new(v.ip, v.vni));
        self.endpoints.retain(|_, (_, e)| e.vtep != id);
        Some(v)
    }

    /// The VTEP with this id.
    #[inline]
    pub fn vtep(&self, id: u32) -> Option<&Vtep> {
        self.vteps
            .get(id as usize)
            .and_then(Option::as_ref)
            .map(|p| &p.vtep)
    }

    /// The id of the VTEP at `ip` on `vni`.
    #[inline]
    pub fn vtep_by_addr(&self, ip: IpAddr, vni: u32) -> Option<u32> {
        self.by_addr.get(&TunnelKey::new(ip, vni)).copied()
    }

    /// Every VTEP, by id.
    pub fn vteps(&self) -> impl Iterator<Item = &Vtep> + '_ {
        self.vteps.iter().flatten().map(|p| &p.vtep)
    }

    /// Installs (or replaces) a remote endpoint; returns the previous one.
    pub fn insert_endpoint(
        &mut self,
        ip: IpAddr,
        endpoint: Endpoint,
    ) -> Result<Option<Endpoint>, OverlayError> {
        if self.vtep(endpoint.vtep).is_none() {
            return Err(OverlayError::UnknownVtep(endpoint.vtep));
        }
        Ok(self
            .endpoints
            .insert(IpKey::from(ip), (ip, endpoint))
            .map(|(_, e)| e))
    }

    /// Removes a remote endpoint.
    pub fn remove_endpoint(&mut self, ip: IpAddr) -> Option<Endpoint> {
        self.endpoints.remove(&IpKey::from(ip)).map(|(_, e)| e)
    }

    /// Where the inner destination `ip` lives: VTEP, MAC and VNI.
    #[inline]
    pub fn endpoint(&self, ip: IpAddr) -> Option<RemoteEndpoint> {
        let (_, e) = self.endpoints.get(&IpKey::from(ip))?;
        let v = self.vtep(e.vtep)?;
        Some(RemoteEndpoint {
            vtep: e.vtep,
            mac: e.mac,
            vni: v.vni,
        })
    }

    /// Every remote endpoint (for dumps), in no particular order.
    pub fn endpoints(&self) -> impl Iterator<Item = (IpAddr, Endpoint)> + '_ {
        self.endpoints.values().copied()
    }

    /// Number of remote endpoints.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    /// Anti-spoofing: whether the inner source `inner_src` of a frame decapsulated from `vtep`
    /// belongs to an endpoint behind that VTEP.
    #[inline]
    pub fn owns(&self, vtep: u32, inner_src: IpAddr) -> bool {
        self.endpoints
            .get(&IpKey::from(inner_src))
            .is_some_and(|(_, e)| e.vtep == vtep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    const MAC: Address = Address([2, 0, 0, 0, 0, 1]);
    const PEER_MAC: Address = Address([2, 0, 0, 0, 0, 2]);

    fn v4(d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, d))
    }

    fn overlay() -> Overlay {
        Overlay::new(LocalVtep::new(v4(1), MAC, 1500, &[42, 7])).unwrap()
    }

    fn vtep(id: u32, d: u8, vni: u32) -> Vtep {
        Vtep {
            id,
            ip: v4(d),
            next_hop_mac: PEER_MAC,
            vni,
            gbp: false,
        }
    }

    #[test]
    fn local_config_is_validated() {
        let small = LocalVtep::new(v4(1), MAC, 117, &[1]);
        assert_eq!(
            Overlay::new(small).unwrap_err(),
            OverlayError::MtuTooSmall(117)
        );
        assert!(Overlay::new(LocalVtep::new(v4(1), MAC, 118, &[1])).is_ok());
        let v6 = LocalVtep::new(IpAddr::V6(Ipv6Addr::LOCALHOST), MAC, 1279, &[1]);
        assert_eq!(
            Overlay::new(v6).unwrap_err(),
            OverlayError::MtuTooSmall(1279)
        );
        let big_vni = LocalVtep::new(v4(1), MAC, 1500, &[1 << 24]);
        assert_eq!(
            Overlay::new(big_vni).unwrap_err(),
            OverlayError::VniOutOfRange(1 << 24)
        );
        let mut port0 = LocalVtep::new(v4(1), MAC, 1500, &[1]);
        port0.udp_port = 0;
        assert_eq!(Overlay::new(port0).unwrap_err(), OverlayError::BadPort);
    }

    #[test]
    fn mtu_rules() {
        let o = overlay();
        assert_eq!((o.pod_mtu(), o.overhead()), (1450, 50));
        let o6 = Overlay::new(LocalVtep::new(
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            MAC,
            1500,
            &[1],
        ))
        .unwrap();
        assert_eq!((o6.pod_mtu(), o6.overhead()), (1430, 70));
    }

    #[test]
    fn vtep_table_rules() {
        let mut o = overlay();
        o.add_vtep(vtep(1, 2, 42)).unwrap();
        o.add_vtep(vtep(2, 2, 7)).unwrap();
        assert_eq!(o.vtep_by_addr(v4(2), 42), Some(1));
        assert_eq!(o.vtep_by_addr(v4(2), 7), Some(2));
        assert_eq!(o.vtep_by_addr(v4(3), 42), None);
        assert_eq!(o.vtep(1).map(|v| v.vni), Some(42));
        assert_eq!(o.vteps().count(), 2);
        assert_eq!(
            o.add_vtep(vtep(1, 3, 42)),
            Err(OverlayError::DuplicateVtep(1))
        );
        assert_eq!(
            o.add_vtep(vtep(3, 2, 42)),
            Err(OverlayError::DuplicateAddress {
                ip: v4(2),
                vni: 42,
                existing: 1
            })
        );
        assert_eq!(
            o.add_vtep(vtep(4, 4, 43)),
            Err(OverlayError::VniNotServed(43))
        );
        assert_eq!(
            o.add_vtep(vtep(4, 4, 1 << 24)),
            Err(OverlayError::VniOutOfRange(1 << 24))
        );
        assert_eq!(
            o.add_vtep(vtep(MAX_VTEPS, 4, 42)),
            Err(OverlayError::VtepIdOutOfRange(MAX_VTEPS))
        );
        let mut six = vtep(5, 5, 42);
        six.ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(o.add_vtep(six), Err(OverlayError::FamilyMismatch(six.ip)));
    }

    #[test]
    fn endpoints_route_and_check_ownership() {
        let mut o = overlay();
        o.add_vtep(vtep(1, 2, 42)).unwrap();
        o.add_vtep(vtep(2, 3, 42)).unwrap();
        let pod = IpAddr::V4(Ipv4Addr::new(10, 77, 42, 2));
        let pod_mac = Address([0xe6, 0x81, 0x74, 0x2f, 0x07, 0xed]);
        assert_eq!(
            o.insert_endpoint(
                pod,
                Endpoint {
                    vtep: 9,
                    mac: pod_mac
                }
            ),
            Err(OverlayError::UnknownVtep(9))
        );
        assert_eq!(
            o.insert_endpoint(
                pod,
                Endpoint {
                    vtep: 1,
                    mac: pod_mac
                }
            ),
            Ok(None)
        );
        assert_eq!(
            o.endpoint(pod),
            Some(RemoteEndpoint {
                vtep: 1,
                mac: pod_mac,
                vni: 42
            })
        );
        assert!(o.owns(1, pod));
        assert_eq!(
            o.endpoints().collect::<Vec<_>>(),
            vec![(
                pod,
                Endpoint {
                    vtep: 1,
                    mac: pod_mac
                }
            )]
        );
        assert!(
            !o.owns(2, pod),
            "another VTEP must not source this pod's address"
        );
        assert!(!o.owns(1, IpAddr::V4(Ipv4Addr::new(10, 77, 42, 3))));
        // Moving the endpoint to another node.
        assert!(
            o.insert_endpoint(
                pod,
                Endpoint {
                    vtep: 2,
                    mac: pod_mac
                }
            )
            .unwrap()
            .is_some()
        );
        assert!(o.owns(2, pod) && !o.owns(1, pod));
        // Removing the VTEP removes what sits behind it.
        assert_eq!(o.remove_vtep(2).map(|v| v.id), Some(2));
        assert_eq!(o.endpoint(pod), None);
        assert_eq!(o.endpoint_count(), 0);
        assert_eq!(o.endpoints().count(), 0);
        assert_eq!(o.vtep_by_addr(v4(3), 42), None);
        assert_eq!(o.remove_vtep(2), None);
        assert_eq!(o.remove_vtep(MAX_VTEPS + 10), None);
        assert_eq!(o.remove_endpoint(pod), None);
    }
}
