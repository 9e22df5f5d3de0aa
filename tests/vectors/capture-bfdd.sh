#!/usr/bin/env bash
# Captures FRR bfdd's BFD Control packets for the codec's test vectors (run as root; needs
# frr, tcpdump, tshark). Two network namespaces on a veth pair, one bfdd in each, peering
# over IPv4 and IPv6 with 300 ms intervals: A starts first (Down, Your Discriminator 0 at
# the slow rate), B joins (Init, Up with Poll, Final, Up), then A's IPv6 peer is shut down
# (AdminDown; B answers Down with diag 3). Writes tests/vectors/bfdd.hex: one UDP payload
# per line, each after a comment saying which frame it is.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
id=$$
a=cpbfda$id b=cpbfdb$id
work=$(mktemp -d)
cleanup() {
  for f in "$work"/a/bfdd.pid "$work"/b/bfdd.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  [ -n "${dump:-}" ] && kill "$dump" 2>/dev/null || true
  sleep 0.3
  ip netns del "$a" 2>/dev/null || true
  ip netns del "$b" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$a"
ip netns add "$b"
ip link add eth0 netns "$a" type veth peer name eth0 netns "$b"
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; ip -n "$ns" link set eth0 up; done
ip -n "$a" addr add 2001:db8:7::1/64 dev eth0 nodad
ip -n "$b" addr add 2001:db8:7::2/64 dev eth0 nodad
ip -n "$a" addr add 192.0.2.1/24 dev eth0
ip -n "$b" addr add 192.0.2.2/24 dev eth0
conf() { # local6 peer6 local4 peer4
  cat <<CONF
bfd
 peer $2 local-address $1
  receive-interval 300
  transmit-interval 300
 !
 peer $4 local-address $3
  receive-interval 300
  transmit-interval 300
 !
!
CONF
}
mkdir -p "$work/a" "$work/b"
conf 2001:db8:7::1 2001:db8:7::2 192.0.2.1 192.0.2.2 > "$work/a/bfdd.conf"
conf 2001:db8:7::2 2001:db8:7::1 192.0.2.2 192.0.2.1 > "$work/b/bfdd.conf"
chown -R frr:frr "$work"
bfdd() { ip netns exec "$1" /usr/lib/frr/bfdd -f "$work/$2/bfdd.conf" -i "$work/$2/bfdd.pid" --vty_socket "$work/$2" -u frr -g frr -d; }

ip netns exec "$a" tcpdump -i eth0 -U -w "$work/cap.pcap" udp port 3784 2>/dev/null &
dump=$!
sleep 1
bfdd "$a" a
sleep 2.5
bfdd "$b" b
sleep 3
ip netns exec "$a" vtysh --vty_socket "$work/a" -c "conf t" -c "bfd" \
  -c "peer 2001:db8:7::2 local-address 2001:db8:7::1" -c "shutdown"
sleep 1
kill "$dump"; dump=
sleep 0.3

version=$(dpkg-query -W -f='${Version}' frr)
fields() { tshark -r "$work/cap.pcap" -Y "$1" -T fields -e frame.number -e udp.payload 2>/dev/null | head -1; }
{
  echo "# Captured by tests/vectors/capture-bfdd.sh (FRR bfdd $version, kernel $(uname -r)): two bfdd,"
  echo "# 300 ms x 3, over IPv6 (2001:db8:7::1 and ::2) and IPv4. One UDP payload per line."
  emit() { # comment, display filter
    local line; line=$(fields "$2")
    [ -n "$line" ] || { echo "no frame for $2" >&2; exit 1; }
    echo "# $1 (frame ${line%%$'\t'*})"
    echo "${line#*$'\t'}"
  }
  emit "A alone: Down, Your Discriminator 0, 1 s slow rate" 'ipv6.src == 2001:db8:7::1 && bfd.sta == 1'
  emit "B answers: Init" 'ipv6.src == 2001:db8:7::2 && bfd.sta == 2'
  emit "A: Up with Poll (300 ms now)" 'ipv6.src == 2001:db8:7::1 && bfd.sta == 3 && bfd.flags.p == 1'
  emit "B: Up with Final" 'ipv6.src == 2001:db8:7::2 && bfd.sta == 3 && bfd.flags.f == 1'
  emit "B: Up, periodic" 'ipv6.src == 2001:db8:7::2 && bfd.sta == 3 && bfd.flags == 0xc0'
  emit "A shut down: AdminDown, diag 0" 'ipv6.src == 2001:db8:7::1 && bfd.sta == 0'
  emit "B: Down, diag 3 (Neighbor Signaled Session Down), Your Discriminator 0" 'ipv6.src == 2001:db8:7::2 && bfd.sta == 1 && bfd.diag == 3'
  emit "A over IPv4: Up, periodic" 'ip.src == 192.0.2.1 && bfd.sta == 3 && bfd.flags == 0xc0'
} > "$here/bfdd.hex"
echo "TTL/hop limits seen: $(tshark -r "$work/cap.pcap" -T fields -e ip.ttl -e ipv6.hlim 2>/dev/null | sort -u | tr '\n\t' '  ')"
echo "source ports seen: $(tshark -r "$work/cap.pcap" -T fields -e udp.srcport 2>/dev/null | sort -u | tr '\n' ' ')"
cat "$here/bfdd.hex"
