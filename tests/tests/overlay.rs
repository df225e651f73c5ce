//! The uplink and VXLAN (RFC 7348) with the Linux kernel's own vxlan device as the peer: a
//! "bare-metal server" namespace holds a kernel `vxlan0` (VNI 100, UDP 4789) behind a veth to the
//! switch's uplink port; a pod pings it and exchanges UDP with it through the overlay, the switch
//! encapsulating towards the server's VTEP and decapsulating its replies.

use podswitch_e2e::{HostLink, Netns, Node, ROUTER_MAC, pod, sh};

const VTEP_IP: &str = "192.168.77.1";
const VTEP_MAC: &str = "02:50:53:00:00:aa";
const BM_IP: &str = "192.168.77.2";
const BM_MAC: &str = "02:50:53:00:00:bb";
const BM_INNER_IP: &str = "10.30.0.99";
const BM_INNER_MAC: &str = "02:50:53:00:02:99";

#[test]
fn pod_talks_to_a_kernel_vxlan_peer() -> anyhow::Result<()> {
    let mut node = Node::up(vec![pod("o1", 1, "ovl")])?;
    // The bare-metal server: underlay veth to the switch's uplink, kernel vxlan on top.
    let uplink = format!("{}u", node.prefix);
    let bm = Netns::new(&format!("{}b", node.prefix))?;
    sh(
        "ip",
        &[
            "link", "add", &uplink, "type", "veth", "peer", "name", "eth0", "netns", &bm.name,
        ],
    )?;
    let _uplink = HostLink {
        name: uplink.clone(),
    };
    sh(
        "sysctl",
        &["-qw", &format!("net.ipv6.conf.{uplink}.disable_ipv6=1")],
    )?;
    sh("ip", &["link", "set", &uplink, "mtu", "1550", "up"])?;
    bm.sh("sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
    bm.sh(
        "ip",
        &[
            "link", "set", "eth0", "address", BM_MAC, "mtu", "1550", "up",
        ],
    )?;
    bm.sh(
        "ethtool",
        &["-K", "eth0", "tx", "off", "tso", "off", "gso", "off"],
    )?;
    bm.sh(
        "ip",
        &["addr", "add", &format!("{BM_IP}/24"), "dev", "eth0"],
    )?;
    // The switch answers no ARP on the underlay: the server knows the VTEP's MAC statically.
    bm.sh(
        "ip",
        &["neigh", "add", VTEP_IP, "lladdr", VTEP_MAC, "dev", "eth0"],
    )?;
    bm.sh(
        "ip",
        &[
            "link", "add", "vxlan0", "type", "vxlan", "id", "100", "local", BM_IP, "remote",
            VTEP_IP, "dstport", "4789", "dev", "eth0",
        ],
    )?;
    bm.sh(
        "ip",
        &["link", "set", "vxlan0", "address", BM_INNER_MAC, "up"],
    )?;
    bm.sh(
        "ip",
        &["addr", "add", &format!("{BM_INNER_IP}/24"), "dev", "vxlan0"],
    )?;
    let pod_ip = node.pod("o1").ip.clone();
    bm.sh(
        "ip",
        &[
            "neigh", "add", &pod_ip, "lladdr", ROUTER_MAC, "dev", "vxlan0",
        ],
    )?;

    node.extra_toml = format!(
        "[uplink]\ninterface = \"{uplink}\"\nport = 1000\nvtep_ip = \"{VTEP_IP}\"\n\
         vtep_mac = \"{VTEP_MAC}\"\nunderlay_mtu = 1550\nvnis = [100]\n\n\
         [[vteps]]\nid = 1\nip = \"{BM_IP}\"\nnext_hop_mac = \"{BM_MAC}\"\nvni = 100\n\n\
         [[remote_endpoints]]\nvtep = 1\nmac = \"{BM_INNER_MAC}\"\nips = [\"{BM_INNER_IP}\"]\n\
         namespace = \"ovl\"\nname = \"server\"\nkind = \"bare-metal\"\n"
    );
    node.start()?;
    let o1 = node.pod("o1");
    assert!(
        o1.ping(BM_INNER_IP, 3)?,
        "pod -> kernel vxlan peer and back"
    );
    let _server = {
        // The UDP echo server runs on the bare-metal side.
        let mut c = bm.spawn("python3", &["-u", "-c", podswitch_e2e::UDP_SERVER, "5400"])?;
        let out = c.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)?;
        assert!(line.starts_with("listening"), "{line}");
        c
    };
    assert!(
        o1.udp_requests(BM_INNER_IP, 5400, 10)?,
        "UDP through the overlay"
    );
    let s = node.wait_stats("tunnel traffic", |s| {
        s["ports"]["1000"]["rx_packets"].as_u64() >= Some(13)
            && s["ports"]["1000"]["tx_packets"].as_u64() >= Some(13)
    })?;
    assert_eq!(podswitch_e2e::drops(&s, "vxlan_bad_outer"), 0, "{s:#}");
    assert_eq!(podswitch_e2e::drops(&s, "vxlan_spoofed"), 0, "{s:#}");
    Ok(())
}
