#!/bin/bash
# podswitch on the baselines' topologies, with the baselines' own measurements
# (../shared/baselines/anchors-lib.sh), so its figures sit in the same CSV as OVS and the kernel.
#
#   podswitch-anchor.sh setup    [ab|c|all]   pods + node namespaces (the daemon starts per case)
#   podswitch-anchor.sh measure  [A|B|C ...]  run metrics, append to $RESULTS
#   podswitch-anchor.sh teardown              stop daemons, delete our namespaces
#
# Topologies (same addresses as kernel-path.sh and ovs-userspace.sh):
#   ab: ps-pod-a(eth0 10.244.1.2) -- veth-a [ps-node: podswitchd] veth-b -- ps-pod-b(eth0 10.244.1.3)
#       case A: no NetworkPolicy; case B: the stateful firewall as NetworkPolicy — pod-b admits new
#       connections only from pod-a on TCP/UDP 5201, pod-a admits none; replies pass by conntrack.
#   c : ps-c-pod-a -- [ps-node1: podswitchd, uplink ul0 172.31.0.1] ==veth underlay==
#       [ps-node2: podswitchd, uplink ul0 172.31.0.2] -- ps-c-pod-b; VXLAN VNI 100, pod MTU 1450.
# The daemon: release build, one worker in adaptive poll mode pinned to CPU 1 (as the OVS PMD's
# mask 0x2), default rings; pods' tx offloads off (what the CNI plugin does).
#
# Knobs (env): PODSWITCHD (binary; default <repo>/target/release/podswitchd), RESULTS, TCP_SECS,
#   UDP_SECS, TG_SECS, CRR_SECS, CRR_CONC, METRICS, PS_POLL (adaptive|busy), PS_CPUS (default [1]).
set -euo pipefail
SYS=podswitch
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BASELINES=${BASELINES:-$REPO/../shared/baselines}
STATE=${PODSWITCH_ANCHOR_STATE:-/tmp/anchors-podswitch}
VARIANT=${VARIANT:-afxdp-${PS_POLL:-adaptive}}
BIN=${PODSWITCHD:-$REPO/target/release/podswitchd}
NS_A=ps-pod-a NS_B=ps-pod-b
NODE=ps-node NODE1=ps-node1 NODE2=ps-node2
ALL_NS="ps-pod-a ps-pod-b ps-c-pod-a ps-c-pod-b $NODE $NODE1 $NODE2"
ROUTER_MAC=02:50:53:00:00:01
GATEWAY=10.244.1.1
UL1_MAC=02:50:53:00:aa:01 UL2_MAC=02:50:53:00:aa:02
[[ -f $BASELINES/anchors-lib.sh ]] || { echo "no $BASELINES/anchors-lib.sh" >&2; exit 1; }
# shellcheck source=../../shared/baselines/anchors-lib.sh
. "$BASELINES/anchors-lib.sh"

switch_pids() { cat "$STATE"/*.pid 2>/dev/null || true; }

# The lib's trafgen addresses pod-b's MAC, as a bridge would carry it; podswitch routes every
# pod's traffic (pods resolve every peer to the router MAC), so the frames go to the router MAC.
m_udp_trafgen() {
    local case=$1 cfg=$STATE/trafgen.cfg macA
    macA=$(ip -n "$NS_A" -j link show eth0 | jq -r '.[0].address')
    echo "{ eth(da=$ROUTER_MAC, sa=$macA, type=0x0800), ipv4(saddr=$POD_A_IP, daddr=$POD_B_IP, ttl=64), udp(sport=40000, dport=$TEST_PORT), fill(0x00, 18) }" >"$cfg"
    ip netns exec "$NS_A" trafgen --dev eth0 --conf "$cfg" --cpus "${TG_CPUS:-1}" --no-sock-mem --notouch-irq >"$STATE/trafgen.log" 2>&1 &
    local tg=$!
    sleep 1
    local r0 s0 d0 r1 s1 d1 cpu
    r0=$(link_ctr "$NS_B" eth0 rx.packets); s0=$(link_ctr "$NS_A" eth0 tx.packets); d0=$(link_ctr "$NS_A" eth0 tx.dropped)
    cpu_begin; sleep "$TG_SECS"
    r1=$(link_ctr "$NS_B" eth0 rx.packets); s1=$(link_ctr "$NS_A" eth0 tx.packets); d1=$(link_ctr "$NS_A" eth0 tx.dropped)
    cpu=$(cpu_end)
    local kid; for kid in $(pgrep -P "$tg" || true); do kill -INT "$kid" 2>/dev/null || true; done
    kill -INT "$tg" 2>/dev/null || true; sleep 0.3; kill_pid "$tg"; wait "$tg" 2>/dev/null || true
    local rx=$(( (r1 - r0) / TG_SECS )) off=$(( (s1 - s0 + d1 - d0) / TG_SECS ))
    record "$case" udp64_trafgen_rx_pps "$rx" pps "$cpu" "trafgen ${TG_CPUS:-1} cpu; offered $off pps"
}

mac_of() { ip -n "$1" -j link show eth0 | jq -r '.[0].address'; }

# [[ports]] entry for pod namespace $1 on switch interface $2, port number $3.
port_toml() {
    cat <<EOF
[[ports]]
interface = "$2"
port = $3
mac = "$(mac_of "$1")"
ips = ["$4"]
namespace = "default"
pod = "$1"
labels = { app = "$5" }

EOF
}

node_toml() { # name
    cat <<EOF
[node]
name = "$1"
router_mac = "$ROUTER_MAC"
gateway_v4 = "$GATEWAY"

[workers]
poll = "${PS_POLL:-adaptive}"
cpus = ${PS_CPUS:-[1]}

[stats]
file_interval_ms = 1000
log_interval_secs = 0

[[namespaces]]
name = "default"
labels = { team = "bench" }

EOF
}

policy_b() {
    cat <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: pod-b-from-pod-a, namespace: default }
spec:
  podSelector: { matchLabels: { app: b } }
  policyTypes: [Ingress]
  ingress:
  - from: [ { podSelector: { matchLabels: { app: a } } } ]
    ports: [ { protocol: TCP, port: $TEST_PORT }, { protocol: UDP, port: $TEST_PORT } ]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: pod-a-closed, namespace: default }
spec:
  podSelector: { matchLabels: { app: a } }
  policyTypes: [Ingress]
EOF
}

start_daemon() { # node-ns config-file name
    local pidf=$STATE/$3.pid
    kill_pidfile "$pidf" podswitchd
    rm -f "$STATE/$3.stats.json" # a stale file would let the wait below pass early
    RUST_LOG=${RUST_LOG:-warn} ip netns exec "$1" "$BIN" --config "$2" --stats-file "$STATE/$3.stats.json" \
        >"$STATE/$3.log" 2>&1 &
    echo $! >"$pidf"
    local i
    # up = the stats file exists and every worker runs the configured generation (policy compiled)
    for i in $(seq 100); do
        jq -e '.generation as $g | (.realised | length > 0 and all(. == $g))' "$STATE/$3.stats.json" \
            >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "podswitchd $3 did not start: $(tail -5 "$STATE/$3.log")"
}

pod() { # ns switch-ns switch-if ip [mtu]
    mk_pod "$1" "$2" "$3" "$4" "${5:-1500}"
    ip netns exec "$2" sysctl -qw "net.ipv6.conf.$3.disable_ipv6=1"
    ip netns exec "$1" ethtool -K eth0 tx off tso off gso off >/dev/null
    ip -n "$1" route add default via "$GATEWAY" dev eth0 2>/dev/null || true
}

setup_ab() {
    ns_add "$NODE"
    pod "$NS_A" "$NODE" veth-a "$POD_A_IP"
    pod "$NS_B" "$NODE" veth-b "$POD_B_IP"
    log "ab ready"
}

setup_c() {
    ns_add "$NODE1"; ns_add "$NODE2"
    ip link add ul0 netns "$NODE1" type veth peer name ul0 netns "$NODE2"
    ip -n "$NODE1" link set ul0 address $UL1_MAC up
    ip -n "$NODE2" link set ul0 address $UL2_MAC up
    pod ps-c-pod-a "$NODE1" veth-a "$POD_A_IP" 1450
    pod ps-c-pod-b "$NODE2" veth-b "$POD_B_IP" 1450
    log "c ready"
}

run_ab_case() { # A|B
    local conf=$STATE/node-ab.toml
    {
        [[ $1 == B ]] && echo "policies = [\"$STATE/policies-b.yaml\"]"
        node_toml ps-bench
        port_toml "$NS_A" veth-a 1 "$POD_A_IP" a
        port_toml "$NS_B" veth-b 2 "$POD_B_IP" b
    } >"$conf"
    policy_b >"$STATE/policies-b.yaml"
    start_daemon "$NODE" "$conf" node
    if [[ $1 == A ]]; then
        wait_ping "$NS_A" "$POD_B_IP" 30 || die "A: pod-a cannot reach pod-b"
    else
        # pod-a reaches pod-b on 5201: refused (pod-b's RST, nothing listens yet) counts as reached,
        # only a timeout (124) means blocked
        local i rc
        for i in $(seq 20); do
            rc=0; ip netns exec "$NS_A" timeout 1 bash -c "echo >/dev/tcp/$POD_B_IP/5201" 2>/dev/null || rc=$?
            ((rc != 124)) && break
        done
        ((rc != 124)) || die "B: pod-a cannot reach pod-b on TCP 5201"
        # The firewall holds: ICMP and another port are denied (no reply, not even pod-b's RST).
        if ip netns exec "$NS_A" ping -c 1 -W 1 "$POD_B_IP" >/dev/null 2>&1; then die "B: ICMP not denied"; fi
        rc=0; ip netns exec "$NS_A" timeout 2 bash -c "echo >/dev/tcp/$POD_B_IP/5202" 2>/dev/null || rc=$?
        ((rc == 124)) || die "B: TCP 5202 not denied (exit $rc)"
    fi
    run_metrics "$1"
    kill_pidfile "$STATE/node.pid" podswitchd
}

run_c() {
    local i self other lip rip lmac rmac pod rpod pip rip_pod label rlabel
    for i in 1 2; do
        if [[ $i == 1 ]]; then
            self=$NODE1 lip=$UL1_IP rip=$UL2_IP lmac=$UL1_MAC rmac=$UL2_MAC pod=ps-c-pod-a rpod=ps-c-pod-b
            pip=$POD_A_IP rip_pod=$POD_B_IP label=a rlabel=b
        else
            self=$NODE2 lip=$UL2_IP rip=$UL1_IP lmac=$UL2_MAC rmac=$UL1_MAC pod=ps-c-pod-b rpod=ps-c-pod-a
            pip=$POD_B_IP rip_pod=$POD_A_IP label=b rlabel=a
        fi
        {
            node_toml "ps-bench-$i"
            port_toml "$pod" "veth-$label" 1 "$pip" "$label"
            cat <<EOF
[uplink]
interface = "ul0"
port = 1000
vtep_ip = "$lip"
vtep_mac = "$lmac"
underlay_mtu = 1500
vnis = [$VNI]

[[vteps]]
id = 1
ip = "$rip"
next_hop_mac = "$rmac"
vni = $VNI

[[remote_endpoints]]
vtep = 1
mac = "$(mac_of "$rpod")"
ips = ["$rip_pod"]
namespace = "default"
name = "$rpod"
kind = "pod"
labels = { app = "$rlabel" }
EOF
        } >"$STATE/node-c$i.toml"
        start_daemon "$self" "$STATE/node-c$i.toml" "node$i"
    done
    local a=$NS_A b=$NS_B
    NS_A=ps-c-pod-a NS_B=ps-c-pod-b
    wait_ping "$NS_A" "$POD_B_IP" 30 || die "c: pod-a cannot reach pod-b over VXLAN"
    run_metrics C
    NS_A=$a NS_B=$b
    kill_pidfile "$STATE/node1.pid" podswitchd
    kill_pidfile "$STATE/node2.pid" podswitchd
}

setup() {
    need_tools iperf3 trafgen jq ethtool ping gcc bc
    [[ -x $BIN ]] || die "no daemon at $BIN: cargo build --release -p podswitchd"
    mkdir -p "$STATE"; build_crr
    case ${1:-all} in
        ab) setup_ab ;;
        c) setup_c ;;
        all) setup_ab; setup_c ;;
        *) die "setup: ab|c|all" ;;
    esac
}

measure() {
    local cases=("$@"); ((${#cases[@]})) || cases=(A B C)
    [[ -d $STATE ]] || die "not set up: run $0 setup [ab|c|all]"
    local c
    for c in "${cases[@]}"; do
        case $c in
            A|B) ns_exists "$NODE" || die "run: $0 setup ab"; run_ab_case "$c" ;;
            C) ns_exists "$NODE1" || die "run: $0 setup c"; run_c ;;
            *) die "measure: A|B|C" ;;
        esac
    done
}

teardown() {
    local f
    for f in "$STATE"/*.pid; do [[ -e $f ]] && kill_pidfile "$f" podswitchd; done
    local n; for n in $ALL_NS; do ns_del "$n"; done
    rm -rf "$STATE"
}

case ${1:-} in
    setup) shift; setup "$@" ;;
    measure) shift; measure "$@" ;;
    teardown) teardown ;;
    summary) summarize "$RESULTS" ;;
    *) echo "usage: $0 setup [ab|c|all] | measure [A|B|C ...] | teardown | summary" >&2; exit 2 ;;
esac
