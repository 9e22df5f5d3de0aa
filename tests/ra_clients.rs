//! RA clients of their own as guests behind the host's bridge: dhcpcd 9 (Debian's
//! `dhcpcd-base`) and systemd-networkd, which do their own RA processing, and the kernel for
//! comparison. Each guest must end with a SLAAC address, the default route via the host's
//! link-local address with the RA's MTU, the Route Information routes where the client
//! supports them (dhcpcd 9 does not), and both DNS servers and search domains, from an RA that
//! fits one packet and from one that is split; must drop the default route and DNS on the
//! final RA; and must follow a DNS server added on reload within one RA interval.
//!
//! Each client runs in the guest's network namespace and in a mount namespace of its own
//! (`unshare --mount`) where the lab's files are bind-mounted over /run, /var/lib/dhcpcd and
//! /etc/resolv.conf (dhcpcd) or over /run and the .network directories (networkd, with /sys
//! read-only so it does not wait for udev, and no D-Bus): neither touches the machine's own.
//! Needs root, `ip`, `unshare`, and `dhcpcd` or /lib/systemd/systemd-networkd; skips with a
//! message otherwise.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{BRIDGE, Lab, lab_or_skip};

use cilium_peer::ra::RaConfig;
use cilium_peer::ra::advert::{self, LinkFacts};
use cilium_peer::ra::scheduler::{Destination, Transmit};

const NETWORKD: &str = "/lib/systemd/systemd-networkd";
/// MaxRtrAdvInterval in these tests: a reload must reach the guests within it.
const MAX_INTERVAL: u64 = 30;
/// A liveness bound for what should happen within a few RAs.
const DEADLINE: Duration = Duration::from_secs(30);
/// The bridge's MTU (a veth's default), which decides whether an RA is split.
const LINK_MTU: usize = 1500;
const SERVERS: [&str; 2] = ["2001:db8:1::53", "2001:db8:1::54"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Dhcpcd,
    Networkd,
    Kernel,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Dhcpcd => "dhcpcd",
            Client::Networkd => "networkd",
            Client::Kernel => "kernel",
        }
    }

    /// Why this client cannot run here, if it cannot.
    fn missing(self) -> Option<String> {
        let have = |program: &str| {
            Command::new("sh")
                .args(["-c", &format!("command -v {program}")])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if self != Client::Kernel && !have("unshare") {
            return Some("unshare (util-linux) is not installed".into());
        }
        match self {
            Client::Dhcpcd if !have("dhcpcd") => {
                Some("dhcpcd is not installed (apt-get install dhcpcd-base)".into())
            }
            Client::Dhcpcd if !Path::new("/usr/lib/dhcpcd/dhcpcd-run-hooks").exists() => {
                Some("dhcpcd's hook runner /usr/lib/dhcpcd/dhcpcd-run-hooks is missing".into())
            }
            Client::Networkd if !Path::new(NETWORKD).exists() => Some(format!(
                "{NETWORKD} is not installed (apt-get install systemd)"
            )),
            Client::Networkd
                if !Command::new("getent")
                    .args(["passwd", "systemd-network"])
                    .output()
                    .is_ok_and(|o| o.status.success()) =>
            {
                Some("there is no systemd-network user for networkd to run as".into())
            }
            _ => None,
        }
    }
}

/// The lab with one guest of `client`, or `None` after saying why this test cannot run.
fn lab_with_guest(test: &str, client: Client) -> Option<(Lab, Guest)> {
    if let Some(why) = client.missing() {
        common::skip(test, &why);
        return None;
    }
    let mut lab = lab_or_skip(test, &[])?;
    let guest = Guest::new(&mut lab, client);
    Some((lab, guest))
}

/// What a guest holds, read from the kernel and from the client's own files.
#[derive(Debug, Default)]
struct View {
    /// Global addresses in 2001:db8:1::/64 with a lifetime (SLAAC).
    addresses: Vec<String>,
    /// `ip -6 route show default dev eth0`.
    default: String,
    /// Routes into fd00:ff00::/32 (from Route Information options).
    routes: Vec<String>,
    /// The interface's IPv6 MTU.
    mtu: String,
    servers: BTreeSet<String>,
    domains: BTreeSet<String>,
}

struct Guest {
    client: Client,
    ns: String,
    /// The client's private files: its /run, state, resolv.conf, config, logs.
    dir: PathBuf,
}

impl Guest {
    fn new(lab: &mut Lab, client: Client) -> Guest {
        let ns = lab.node(&client.name()[..1], &[]);
        let sysctls: &[&str] = match client {
            // The client does RA itself: the kernel must take nothing before it starts.
            Client::Dhcpcd | Client::Networkd => &["net.ipv6.conf.eth0.accept_ra=0"],
            Client::Kernel => &[
                "net.ipv6.conf.eth0.accept_ra=2",
                "net.ipv6.conf.eth0.autoconf=1",
                "net.ipv6.conf.eth0.accept_ra_rt_info_max_plen=64",
            ],
        };
        for sysctl in sysctls {
            lab.exec(&ns, &["sysctl", "-qw", sysctl]);
        }
        let dir = lab.dir.join(client.name());
        fs::create_dir_all(&dir).unwrap();
        Guest { client, ns, dir }
    }

    /// Starts the client (the kernel needs nothing started).
    fn start(&self, lab: &mut Lab) {
        let script = match self.client {
            Client::Kernel => return,
            Client::Dhcpcd => self.dhcpcd_script(),
            Client::Networkd => self.networkd_script(),
        };
        let path = self.dir.join("run.sh");
        fs::write(&path, script).unwrap();
        lab.spawn(
            &self.ns,
            self.client.name(),
            &[
                "unshare",
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "sh",
                path.to_str().unwrap(),
            ],
        );
    }

    /// dhcpcd 9, IPv6 only, in the foreground, with its own /run, /var/lib/dhcpcd and
    /// /etc/resolv.conf. The hook logs the RA as dhcpcd passes it to hooks (nd1_* variables)
    /// and runs Debian's hooks, whose 20-resolv.conf writes /etc/resolv.conf itself when no
    /// resolvconf program is found (`resolvconf=/nonexistent` makes sure of that).
    fn dhcpcd_script(&self) -> String {
        let d = self.dir.display();
        for sub in ["run", "lib"] {
            fs::create_dir_all(self.dir.join(sub)).unwrap();
        }
        fs::write(self.dir.join("resolv.conf"), "").unwrap();
        fs::write(
            self.dir.join("dhcpcd.conf"),
            "ipv6only\nipv6rs\nslaac private\nnohook hostname\nnohook ntp-common.conf\n\
             nohook chrony.conf\nnohook timesyncd.conf\nnohook openntpd.conf\n",
        )
        .unwrap();
        let hook = self.dir.join("hook");
        fs::write(
            &hook,
            format!(
                "#!/bin/sh\n{{ echo \"== $reason\"; env | grep '^nd[0-9]' | sort; }} >> {d}/hook.log\n\
                 export resolvconf=/nonexistent\n. /usr/lib/dhcpcd/dhcpcd-run-hooks\n"
            ),
        )
        .unwrap();
        fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        format!(
            "set -e\n\
             mount --bind {d}/resolv.conf /etc/resolv.conf\n\
             mount --bind {d}/run /run\n\
             mount --bind {d}/lib /var/lib/dhcpcd\n\
             exec dhcpcd -B -6 --nodev -f {d}/dhcpcd.conf -c {d}/hook -j {d}/dhcpcd.log eth0\n"
        )
    }

    /// systemd-networkd with its own /run holding the only .network file, empty system
    /// .network directories, /sys read-only (so it does not wait for udev) and no D-Bus.
    fn networkd_script(&self) -> String {
        let d = self.dir.display();
        let network = self.dir.join("run/systemd/network");
        fs::create_dir_all(&network).unwrap();
        fs::create_dir_all(self.dir.join("empty")).unwrap();
        fs::write(
            network.join("50-eth0.network"),
            "[Match]\nName=eth0\n\n[Network]\nDHCP=no\nIPv6AcceptRA=yes\nLinkLocalAddressing=ipv6\n\n\
             [IPv6AcceptRA]\nUseDNS=yes\nUseDomains=yes\nDHCPv6Client=no\n",
        )
        .unwrap();
        format!(
            "set -e\n\
             mount --bind {d}/run /run\n\
             for dir in /etc/systemd/network /usr/lib/systemd/network; do\n\
             \x20 if [ -d $dir ]; then mount --bind {d}/empty $dir; fi\n\
             done\n\
             mount -o remount,bind,ro /sys\n\
             exec env -i SYSTEMD_LOG_LEVEL=debug {NETWORKD}\n"
        )
    }

    fn exec(&self, lab: &Lab, args: &[&str]) -> String {
        String::from_utf8_lossy(&lab.try_exec(&self.ns, args).stdout).into_owned()
    }

    fn view(&self, lab: &Lab) -> View {
        let addresses = self
            .exec(lab, &["ip", "-6", "-o", "addr", "show", "dev", "eth0"])
            .lines()
            .filter(|l| l.contains("inet6 2001:db8:1:") && l.contains("dynamic"))
            .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
            .collect();
        let default = self
            .exec(
                lab,
                &["ip", "-6", "route", "show", "default", "dev", "eth0"],
            )
            .trim()
            .to_string();
        let routes = self
            .exec(lab, &["ip", "-6", "route", "show"])
            .lines()
            .filter(|l| l.starts_with("fd00:ff00:"))
            .map(str::to_string)
            .collect();
        let mtu = self
            .exec(lab, &["cat", "/proc/sys/net/ipv6/conf/eth0/mtu"])
            .trim()
            .to_string();
        let (servers, domains) = match self.client {
            Client::Kernel => Default::default(),
            Client::Dhcpcd => {
                let conf = fs::read_to_string(self.dir.join("resolv.conf")).unwrap_or_default();
                let words = |key: &str| -> BTreeSet<String> {
                    conf.lines()
                        .filter_map(|l| l.strip_prefix(key))
                        .flat_map(|rest| rest.split_whitespace().map(str::to_string))
                        .collect()
                };
                (words("nameserver "), words("search "))
            }
            Client::Networkd => {
                // networkd's own record of the link (what `networkctl status` would show
                // over D-Bus), in its private /run.
                let ifindex = self.exec(lab, &["cat", "/sys/class/net/eth0/ifindex"]);
                let state = fs::read_to_string(
                    self.dir
                        .join("run/systemd/netif/links")
                        .join(ifindex.trim()),
                )
                .unwrap_or_default();
                let words = |key: &str| -> BTreeSet<String> {
                    state
                        .lines()
                        .filter_map(|l| l.strip_prefix(key))
                        .flat_map(|rest| rest.split_whitespace().map(str::to_string))
                        .collect()
                };
                (words("DNS="), words("DOMAINS="))
            }
        };
        View {
            addresses,
            default,
            routes,
            mtu,
            servers,
            domains,
        }
    }

    /// Polls until `check` holds on the guest's view, or panics with the last view and the
    /// client's logs.
    fn wait(&self, lab: &Lab, what: &str, limit: Duration, check: impl Fn(&View) -> bool) {
        let start = Instant::now();
        loop {
            let view = self.view(lab);
            if check(&view) {
                return;
            }
            if start.elapsed() > limit {
                let tail = |name: &str| {
                    let text = fs::read_to_string(self.dir.join(name)).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    lines[lines.len().saturating_sub(40)..].join("\n")
                };
                let own = match self.client {
                    Client::Dhcpcd => format!(
                        "--- dhcpcd.log\n{}\n--- hook.log (what dhcpcd told its hooks)\n{}",
                        tail("dhcpcd.log"),
                        tail("hook.log")
                    ),
                    Client::Networkd | Client::Kernel => String::new(),
                };
                panic!(
                    "{name}: timed out after {limit:?} waiting for {what}\n{view:#?}\n\
                     --- {name} output\n{}\n{own}\n--- cilium-peer\n{}",
                    lab.log(self.client.name()),
                    lab.log("cilium-peer"),
                    name = self.client.name(),
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the guest holds everything the RA of `ra` says.
    fn wait_configured(&self, lab: &Lab, ll: &str, ra: &Ra) {
        let via = format!("via {ll} ");
        self.wait(lab, "a SLAAC address in 2001:db8:1::/64", DEADLINE, |v| {
            !v.addresses.is_empty()
        });
        self.wait(
            lab,
            &format!("a default route via {ll} with MTU {}", ra.mtu),
            DEADLINE,
            |v| {
                v.default.starts_with("default")
                    && v.default.contains(&via)
                    && match self.client {
                        // The kernel puts the RA's MTU on the interface, the clients on the route.
                        Client::Kernel => v.mtu == ra.mtu.to_string(),
                        _ => v.default.contains(&format!(" mtu {} ", ra.mtu)),
                    }
            },
        );
        if self.client != Client::Dhcpcd {
            // dhcpcd 9.4 ignores Route Information options (RFC 4191).
            self.wait(
                lab,
                &format!("{} routes via {ll}", ra.routes.len()),
                DEADLINE,
                |v| {
                    ra.routes.iter().all(|prefix| {
                        v.routes
                            .iter()
                            .any(|r| r.starts_with(&format!("{prefix} ")) && r.contains(&via))
                    })
                },
            );
        }
        if self.client != Client::Kernel {
            self.wait(
                lab,
                &format!(
                    "DNS servers {:?} and search domains {:?}",
                    ra.servers, ra.domains
                ),
                DEADLINE,
                |v| v.servers == ra.servers && v.domains == ra.domains,
            );
        }
    }

    /// Waits until the final RA took the default route, the routes and DNS away.
    fn wait_withdrawn(&self, lab: &Lab) {
        self.wait(
            lab,
            "the default route, routes and DNS settings to go after the final RA",
            DEADLINE,
            |v| {
                v.default.is_empty()
                    && (self.client == Client::Dhcpcd || v.routes.is_empty())
                    && v.servers.is_empty()
                    && v.domains.is_empty()
            },
        );
    }
}

/// The RA settings of a test and what a guest should make of them.
struct Ra {
    mtu: u32,
    routes: Vec<String>,
    servers: BTreeSet<String>,
    domains: BTreeSet<String>,
}

impl Ra {
    fn new(routes: usize, servers: &[&str], domains: usize) -> Ra {
        let mut names = vec!["cluster.internal".to_string()];
        names.extend((1..domains).map(|i| format!("team{i:02}.cluster.internal")));
        Ra {
            mtu: 1400,
            routes: (0..routes)
                .map(|i| {
                    // As `ip route` prints it: fd00:ff00::/48, fd00:ff00:1::/48, ...
                    let net: ipnet::Ipv6Net = format!("fd00:ff00:{i:x}::/48").parse().unwrap();
                    net.to_string()
                })
                .collect(),
            servers: servers.iter().map(|s| s.to_string()).collect(),
            domains: names.into_iter().collect(),
        }
    }

    fn json(&self) -> serde_json::Value {
        let routes: Vec<serde_json::Value> = self
            .routes
            .iter()
            .map(|p| serde_json::json!({ "prefix": p }))
            .collect();
        serde_json::json!({
            "max_interval": MAX_INTERVAL,
            "mtu": self.mtu,
            "routes": routes,
            "rdnss": self.servers,
            "dnssl": self.domains,
        })
    }

    /// How many packets cilium-peer sends this RA in on the lab's bridge.
    fn packets(&self) -> usize {
        let config: RaConfig = serde_json::from_value(self.json()).unwrap();
        let prefixes = advert::prefix_information(&config, &["2001:db8:1::/64".parse().unwrap()]);
        let link = LinkFacts {
            mac: Some(vec![2, 0, 0, 0, 0, 1]),
            forwarding: true,
        };
        let transmit = Transmit::Advertisement(Destination::AllNodes);
        advert::burst(&config, &prefixes, &link, transmit, LINK_MTU).len()
    }

    /// cilium-peer's config: only the bridge, with these RA settings.
    fn config(&self, lab: &Lab) -> String {
        serde_json::json!({
            "router_id": "192.0.2.1",
            "asn": 65100,
            "bridges": { BRIDGE: { "prefixes": ["2001:db8:1::/64"], "ra": self.json() } },
            "control_socket": lab.socket(),
        })
        .to_string()
    }
}

/// The address cilium-peer sends its RAs from, as `show bridges` reports it.
fn host_link_local(lab: &Lab) -> String {
    common::wait_for(
        "cilium-peer to advertise from a link-local address",
        DEADLINE,
        || {
            let bridges = lab.show("bridges");
            bridges
                .as_array()?
                .iter()
                .find_map(|b| b["ra"]["link_local"].as_str().map(str::to_string))
        },
    )
}

/// The guest takes everything from `ra` and drops it all again when cilium-peer stops.
fn configured_then_withdrawn_on_stop(test: &str, client: Client, ra: Ra) {
    let Some((mut lab, guest)) = lab_with_guest(test, client) else {
        return;
    };
    lab.start_cilium_peer(&ra.config(&lab));
    guest.start(&mut lab);
    let ll = host_link_local(&lab);
    guest.wait_configured(&lab, &ll, &ra);
    lab.stop("cilium-peer", "TERM");
    guest.wait_withdrawn(&lab);
}

fn fits_one_packet() -> Ra {
    let ra = Ra::new(2, &SERVERS, 2);
    assert_eq!(ra.packets(), 1, "the RA was meant to fit one packet");
    ra
}

/// Many routes and search domains: more than one 1500-byte packet. The sizes are the
/// issue's: spread in option order as radvd does, the first packet would carry the prefix,
/// the routes and the RDNSS and the second only the DNSSL, leaving dhcpcd with no DNS.
fn must_be_split() -> Ra {
    let ra = Ra::new(50, &SERVERS, 12);
    assert!(ra.packets() > 1, "the RA was meant to be split");
    ra
}

#[test]
fn dhcpcd_takes_address_default_route_and_dns_from_an_ra_in_one_packet_and_drops_them_on_stop() {
    configured_then_withdrawn_on_stop("dhcpcd_one_packet", Client::Dhcpcd, fits_one_packet());
}

#[test]
fn dhcpcd_takes_address_default_route_and_dns_from_a_split_ra_and_drops_them_on_stop() {
    configured_then_withdrawn_on_stop("dhcpcd_split", Client::Dhcpcd, must_be_split());
}

#[test]
fn networkd_takes_address_default_route_routes_and_dns_from_an_ra_in_one_packet_and_drops_them_on_stop()
 {
    configured_then_withdrawn_on_stop("networkd_one_packet", Client::Networkd, fits_one_packet());
}

#[test]
fn networkd_takes_address_default_route_routes_and_dns_from_a_split_ra_and_drops_them_on_stop() {
    configured_then_withdrawn_on_stop("networkd_split", Client::Networkd, must_be_split());
}

#[test]
fn the_kernel_takes_address_default_route_mtu_and_routes_from_a_split_ra_and_drops_them_on_stop() {
    configured_then_withdrawn_on_stop("kernel_split", Client::Kernel, must_be_split());
}

/// A DNS server added on reload reaches the guest within one RA interval.
fn follows_a_dns_server_added_on_reload(test: &str, client: Client) {
    let Some((mut lab, guest)) = lab_with_guest(test, client) else {
        return;
    };
    let before = Ra::new(2, &SERVERS[..1], 2);
    lab.start_cilium_peer(&before.config(&lab));
    guest.start(&mut lab);
    let ll = host_link_local(&lab);
    guest.wait_configured(&lab, &ll, &before);
    let after = Ra::new(2, &SERVERS, 2);
    lab.reload_cilium_peer(&after.config(&lab));
    guest.wait(
        &lab,
        &format!("DNS servers {:?} within one RA interval", after.servers),
        Duration::from_secs(MAX_INTERVAL),
        |v| v.servers == after.servers && v.domains == after.domains,
    );
}

#[test]
fn dhcpcd_follows_a_dns_server_added_on_reload_within_one_ra_interval() {
    follows_a_dns_server_added_on_reload("dhcpcd_reload", Client::Dhcpcd);
}

#[test]
fn networkd_follows_a_dns_server_added_on_reload_within_one_ra_interval() {
    follows_a_dns_server_added_on_reload("networkd_reload", Client::Networkd);
}
