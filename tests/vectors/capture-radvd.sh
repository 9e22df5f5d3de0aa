#!/usr/bin/env bash
# Captures what radvd sends for a radvd.conf, as hex ICMPv6 messages (one per line).
# Usage (as root): [RDISC6=1] capture-radvd.sh RADVD_CONF SECONDS [final]
#   Two namespaces joined by a veth pair: radvd on r0 (MAC 02:00:00:00:00:01,
#   link-local fe80::1), tshark on h0. With "final", radvd is stopped with SIGTERM
#   before the capture ends, so its final RAs are captured too.
# The interface in the conf must be called r0. Prints "ra <hex>" lines (ICMPv6 only,
# checksum included; it depends on fe80::1 -> ff02::1).
set -euo pipefail
conf=$1; secs=$2; final=${3:-}
id=$$; R=racap-r-$id; H=racap-h-$id; tmp=$(mktemp -d)
cleanup() { ip netns del $R 2>/dev/null || true; ip netns del $H 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
ip netns add $R; ip netns add $H
ip -n $R link add r0 address 02:00:00:00:00:01 type veth peer name h0 netns $H address 02:00:00:00:00:02
ip netns exec $R sysctl -qw net.ipv6.conf.all.forwarding=1
ip netns exec $R sysctl -qw net.ipv6.conf.r0.addr_gen_mode=1
ip netns exec $H sysctl -qw net.ipv6.conf.h0.accept_ra=0
ip -n $R addr add fe80::1/64 dev r0 nodad
ip -n $R link set r0 up; ip -n $H link set h0 up
ip netns exec $H tshark -q -i h0 -F pcap -w "$tmp/cap.pcap" -f 'icmp6' >/dev/null 2>&1 &
tsh=$!
sleep 2
ip netns exec $R radvd -C "$conf" -p "$tmp/radvd.pid" -m stderr -n 2>"$tmp/radvd.log" &
rad=$!
sleep "$secs"
# With RDISC6=1 the host solicits once, so its RS and radvd's answer are captured too.
if [ -n "${RDISC6:-}" ]; then ip netns exec $H rdisc6 -1 -w 3000 h0 >/dev/null || true; fi
if [ "$final" = final ]; then kill -TERM $rad; fi
sleep 2
kill -TERM $rad 2>/dev/null || true; wait $rad 2>/dev/null || true
kill -INT $tsh; wait $tsh 2>/dev/null || true
python3 - "$tmp/cap.pcap" <<'PY'
import struct, sys
d = open(sys.argv[1], 'rb').read()
off = 24
while off < len(d):
    _, _, incl, _ = struct.unpack('<IIII', d[off:off+16]); off += 16
    pkt = d[off:off+incl]; off += incl
    if pkt[12:14] != b'\x86\xdd' or pkt[20] != 58: continue
    icmp = pkt[54:]
    kind = {133: 'rs', 134: 'ra'}.get(icmp[0])
    if kind: print(kind, 'hop_limit=%d' % pkt[21], icmp.hex())
PY
