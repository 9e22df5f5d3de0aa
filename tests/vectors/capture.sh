#!/usr/bin/env bash
# Captures real BGP sessions for the codec's test vectors (run as root; needs gobgpd,
# gobgp, bird2, tshark). Two network namespaces joined by a veth pair whose host end is
# on a bridge named vmbr-dev:
#   A: GoBGP as a Cilium node would run it (iBGP AS 65100, active only, IPv4+IPv6
#      unicast over an IPv6 session, graceful restart, extended next hop) against a
#      passive BIRD; routes are added and deleted with the gobgp CLI, then gobgpd gets
#      SIGTERM (Cease).
#   B: BIRD active, eBGP AS 65200, exporting static IPv4 and IPv6 routes over an IPv6
#      session to a passive GoBGP (AS 65100).
# Each direction's TCP stream is split into messages, one hex line each, written to
# tests/vectors/{a-gobgp-node,a-bird-host,b-bird-ebgp,b-gobgp-passive}.hex.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
id=$$
node=cpnode$id host=cphost$id
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  ip netns del "$node" 2>/dev/null || true
  ip netns del "$host" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$node"
ip netns add "$host"
ip link add eth0 netns "$node" type veth peer name vport netns "$host"
ip -n "$host" link add vmbr-dev type bridge
ip -n "$host" link set vport master vmbr-dev
for ns in "$node" "$host"; do ip -n "$ns" link set lo up; done
ip -n "$host" link set vport up
ip -n "$host" link set vmbr-dev up
ip -n "$node" link set eth0 up
ip -n "$host" addr add 2001:db8:1::1/64 dev vmbr-dev nodad
ip -n "$host" addr add 192.0.2.1/24 dev vmbr-dev
ip -n "$node" addr add 2001:db8:1::11/64 dev eth0 nodad
ip -n "$node" addr add 192.0.2.11/24 dev eth0
sleep 1

gobgp_node_conf() { # $1 = port (-1: active only), $2 = peer AS, $3 = neighbor
cat <<CONF
[global.config]
  as = 65100
  router-id = "192.0.2.11"
  port = $1
[global.apply-policy.config]
  import-policy-list = ["allow-local"]
  default-import-policy = "reject-route"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "$3"
    peer-as = $2
  [neighbors.transport.config]
    local-address = "2001:db8:1::11"
    passive-mode = $([ "$1" = -1 ] && echo false || echo true)
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 90
    keepalive-interval = 30
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 120
    notification-enabled = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
[[policy-definitions]]
  name = "allow-local"
  [[policy-definitions.statements]]
    [policy-definitions.statements.conditions.bgp-conditions]
      route-type = "local"
    [policy-definitions.statements.actions]
      route-disposition = "accept-route"
CONF
}

wait_established() { # $1 = api port
  for _ in $(seq 1 60); do
    if ip netns exec "$node" gobgp -p "$1" neighbor 2>/dev/null | grep -q Establ; then return 0; fi
    sleep 0.5
  done
  echo "session did not come up" >&2
  ip netns exec "$node" gobgp -p "$1" neighbor >&2 || true
  return 1
}

split_streams() { # $1 = pcap, $2/$3 = files for node 0's/node 1's side, $4 = comment
  ip netns exec "$host" tshark -r "$1" -q -z follow,tcp,raw,0 > "$work/follow.txt"
  python3 - "$work/follow.txt" "$here/$2" "$here/$3" "$4" <<'PY'
import os, sys
follow, first, second, how = sys.argv[1:]
lines = open(follow).read().splitlines()
start = next(i for i, l in enumerate(lines) if l.startswith("Node 1:")) + 1
streams = {0: "", 1: ""}
for l in lines[start:]:
    if l.startswith("="):
        break
    side = 1 if l.startswith("\t") else 0
    streams[side] += l.strip()
for side, name in ((0, first), (1, second)):
    data = bytes.fromhex(streams[side])
    out = [f"# {how}", f"# This file: what {os.path.basename(name)[2:-4]} sent, one BGP message per line (hex)."]
    while len(data) >= 19:
        length = int.from_bytes(data[16:18], "big")
        out.append(data[:length].hex())
        data = data[length:]
    open(name, "w").write("\n".join(out) + "\n")
PY
}

versions="gobgpd $(gobgpd --version | awk '{print $3}'), BIRD $(bird --version 2>&1 | awk '{print $3}'), tshark $(tshark --version | head -1 | awk '{print $3}'), kernel $(uname -r)"

# Scenario A: GoBGP (Cilium node) active -> BIRD passive.
cat > "$work/bird-a.conf" <<CONF
router id 192.0.2.1;
protocol device {}
protocol bgp cilium {
  local 2001:db8:1::1 as 65100;
  neighbor 2001:db8:1::11 as 65100;
  direct;
  passive;
  graceful restart on;
  ipv4 { extended next hop yes; import all; export none; };
  ipv6 { import all; export none; };
}
CONF
gobgp_node_conf -1 65100 2001:db8:1::1 > "$work/gobgp-a.toml"
ip netns exec "$host" tshark -q -i vmbr-dev -f "tcp port 179" -w "$work/a.pcap" 2>/dev/null &
pids+=($!)
sleep 2
ip netns exec "$host" bird -c "$work/bird-a.conf" -s "$work/bird-a.ctl" -P "$work/bird-a.pid"
pids+=($(cat "$work/bird-a.pid"))
ip netns exec "$node" gobgpd -f "$work/gobgp-a.toml" -r -p --api-hosts 127.0.0.1:50161 --pprof-disable > "$work/gobgpd-a.log" 2>&1 &
gobgpd_a=$!
pids+=($gobgpd_a)
wait_established 50161
sleep 3
g() { ip netns exec "$node" gobgp -p 50161 "$@"; }
g global rib add -a ipv4 10.244.1.0/24 origin igp; sleep 1
g global rib add -a ipv6 fd00:ff00:1::/64 origin igp; sleep 1
g global rib add -a ipv4 10.244.2.0/24 origin incomplete med 20 community 65100:42 large-community 65100:1:2; sleep 1
g global rib del -a ipv4 10.244.1.0/24; sleep 1
g global rib del -a ipv6 fd00:ff00:1::/64; sleep 1
kill -TERM "$gobgpd_a"; sleep 2
kill "${pids[0]}"; sleep 1
split_streams "$work/a.pcap" a-gobgp-node.hex a-bird-host.hex \
  "Captured by tests/vectors/capture.sh, scenario A ($versions): GoBGP iBGP AS 65100 active from 2001:db8:1::11 to passive BIRD 2001:db8:1::1; adds 10.244.1.0/24, fd00:ff00:1::/64, 10.244.2.0/24 (med 20, community 65100:42, large 65100:1:2), deletes the first two, then SIGTERM."
kill "$(cat "$work/bird-a.pid")" 2>/dev/null || true
sleep 1

# Scenario B: BIRD active eBGP -> GoBGP passive.
cat > "$work/bird-b.conf" <<CONF
router id 192.0.2.1;
protocol device {}
protocol direct { ipv6; interface "vmbr-dev"; }
protocol static { ipv6; route fd00:ff00:2::/64 unreachable; }
protocol static { ipv4; route 198.51.100.0/24 unreachable; }
protocol bgp gobgp {
  local 2001:db8:1::1 as 65200;
  neighbor 2001:db8:1::11 as 65100;
  direct;
  connect retry time 1;
  graceful restart on;
  ipv4 { extended next hop yes; import none; export where source = RTS_STATIC; };
  ipv6 { import none; export where source = RTS_STATIC; };
}
CONF
gobgp_node_conf 179 65200 2001:db8:1::1 > "$work/gobgp-b.toml"
ip netns exec "$host" tshark -q -i vmbr-dev -f "tcp port 179" -w "$work/b.pcap" 2>/dev/null &
tshark_b=$!
pids+=($tshark_b)
sleep 2
ip netns exec "$node" gobgpd -f "$work/gobgp-b.toml" --api-hosts 127.0.0.1:50162 --pprof-disable > "$work/gobgpd-b.log" 2>&1 &
pids+=($!)
sleep 1
ip netns exec "$host" bird -c "$work/bird-b.conf" -s "$work/bird-b.ctl" -P "$work/bird-b.pid"
pids+=($(cat "$work/bird-b.pid"))
wait_established 50162
sleep 3
ip netns exec "$host" birdc -s "$work/bird-b.ctl" disable gobgp > /dev/null; sleep 2
kill "$tshark_b"; sleep 1
split_streams "$work/b.pcap" b-bird-ebgp.hex b-gobgp-passive.hex \
  "Captured by tests/vectors/capture.sh, scenario B ($versions): BIRD eBGP AS 65200 active from 2001:db8:1::1 to passive GoBGP AS 65100 2001:db8:1::11; BIRD exports static fd00:ff00:2::/64 and 198.51.100.0/24, then is disabled (Cease)."
echo "vectors written to $here"
