//! The control socket behind `cilium-peer show`: a unix stream socket (mode 0660) where a
//! client writes one request line (`peers`, `routes` or `bridges`) and reads one JSON
//! document back. The requests and answers are types that daemon and client share; the
//! daemon's event loop builds the answer, this module carries it and prints it for humans.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

/// What `show` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Peers,
    Routes,
    Bridges,
}

impl Request {
    /// A request line (`peers`, `routes`, `bridges`).
    pub fn parse(line: &str) -> Option<Request> {
        match line.trim() {
            "peers" => Some(Request::Peers),
            "routes" => Some(Request::Routes),
            "bridges" => Some(Request::Bridges),
            _ => None,
        }
    }

    /// The request line.
    pub fn name(self) -> &'static str {
        match self {
            Request::Peers => "peers",
            Request::Routes => "routes",
            Request::Bridges => "bridges",
        }
    }
}

/// The answer to a request: one row per session, route or bridge. Serialized as a bare
/// JSON array (the documented `show --json` shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    Peers(Vec<PeerRow>),
    Routes(Vec<RouteRow>),
    Bridges(Vec<BridgeRow>),
}

/// One session in `show peers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerRow {
    pub name: String,
    pub group: String,
    pub address: IpAddr,
    pub asn: u32,
    pub router_id: Option<Ipv4Addr>,
    pub state: crate::daemon::core::PeerState,
    /// Seconds in the current state.
    pub uptime_s: u64,
    pub received: usize,
    pub installed: usize,
    /// Prefixes refused by import policy, by reason.
    pub rejected: BTreeMap<String, u64>,
    pub updates: u64,
    pub hold_time: Option<u16>,
    /// `afi/safi` of the negotiated families.
    pub families: Option<Vec<String>>,
    pub extended_next_hop: Option<bool>,
    pub graceful_restart: Option<bool>,
    pub stale: bool,
    /// Whether the node answers on its bridge (`neighbors[].liveness`); null when not
    /// watched.
    #[serde(default)]
    pub liveness: Option<crate::daemon::core::Liveness>,
    /// The bridge port the node answered through.
    #[serde(default)]
    pub port: Option<String>,
    /// Its BFD session (`neighbors[].bfd`); null when the group runs none.
    #[serde(default)]
    pub bfd: Option<crate::daemon::core::BfdState>,
}

/// One route in `show routes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteRow {
    pub prefix: IpNet,
    pub nexthops: Vec<HopRow>,
    /// It holds next hops adopted from a previous run.
    pub adopted: bool,
    pub table: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HopRow {
    pub gateway: IpAddr,
    pub interface: Option<String>,
    pub ifindex: Option<u32>,
}

/// One bridge in `show bridges`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeRow {
    pub name: String,
    pub ifindex: Option<u32>,
    pub prefixes: Vec<IpNet>,
    pub ra: Option<crate::ra::BridgeStatus>,
}

/// Binds the socket (replacing a stale one; mode 0660, owned by `group` when given) and
/// serves it in the background; each request goes to `daemon` with a channel for the answer.
pub fn serve(
    path: &Path,
    group: Option<&str>,
    daemon: mpsc::Sender<(Request, oneshot::Sender<Answer>)>,
) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(name) = group {
        let group = nix::unistd::Group::from_name(name)
            .map_err(io::Error::from)?
            .ok_or_else(|| io::Error::other(format!("no group {name:?}")))?;
        nix::unistd::chown(path, None, Some(group.gid)).map_err(io::Error::from)?;
    }
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let daemon = daemon.clone();
            tokio::spawn(async move {
                let (reader, mut writer) = stream.into_split();
                let mut line = String::new();
                // A request is one short line; bound what a client may send.
                let mut reader = tokio::io::BufReader::new(reader.take(256));
                if reader.read_line(&mut line).await.is_err() {
                    return;
                }
                let answer = match Request::parse(&line) {
                    Some(request) => {
                        let (tx, rx) = oneshot::channel();
                        if daemon.send((request, tx)).await.is_err() {
                            return;
                        }
                        match rx.await {
                            Ok(answer) => serde_json::to_value(answer).unwrap_or(Value::Null),
                            Err(_) => Value::Null,
                        }
                    }
                    None => {
                        serde_json::json!({ "error": format!("unknown request {:?}", line.trim()) })
                    }
                };
                let mut text = answer.to_string();
                text.push('\n');
                let _ = writer.write_all(text.as_bytes()).await;
            });
        }
    });
    Ok(())
}

/// Asks the daemon at `socket` and prints the answer (`show ... [--json]`).
pub fn show(socket: &Path, request: Request, json: bool) -> ExitCode {
    let answer = query(socket, request).and_then(|value| {
        let text = value.to_string();
        if json {
            return Ok(text);
        }
        let answer = match request {
            Request::Peers => serde_json::from_value(value).map(Answer::Peers),
            Request::Routes => serde_json::from_value(value).map(Answer::Routes),
            Request::Bridges => serde_json::from_value(value).map(Answer::Bridges),
        };
        answer
            .map(|answer| render(&answer))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    });
    match answer {
        Ok(text) if json => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot ask cilium-peer at {}: {error}", socket.display());
            ExitCode::from(1)
        }
    }
}

/// One request, one JSON answer.
pub fn query(socket: &Path, request: Request) -> io::Result<Value> {
    let mut stream = UnixStream::connect(socket)?;
    stream.write_all(format!("{}\n", request.name()).as_bytes())?;
    let mut text = String::new();
    BufReader::new(&mut stream).read_line(&mut text)?;
    serde_json::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Aligned tables in the spirit of `birdc show protocols` and `show route`.
pub fn render(answer: &Answer) -> String {
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    match answer {
        Answer::Peers(rows) => table(
            &[
                "Name",
                "Address",
                "ASN",
                "State",
                "Since(s)",
                "Received",
                "Installed",
                "Liveness",
                "BFD",
            ],
            &rows
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        r.address.to_string(),
                        r.asn.to_string(),
                        r.state.to_string(),
                        r.uptime_s.to_string(),
                        r.received.to_string(),
                        r.installed.to_string(),
                        dash(r.liveness.map(|l| l.name().to_string())),
                        dash(r.bfd.map(|b| b.name().to_string())),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
        Answer::Routes(rows) => table(
            &["Prefix", "Next hops"],
            &rows
                .iter()
                .map(|r| {
                    let hops = r
                        .nexthops
                        .iter()
                        .map(|h| match &h.interface {
                            Some(dev) => format!("via {} dev {dev}", h.gateway),
                            None => format!("via {}", h.gateway),
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    let adopted = if r.adopted { " (adopted)" } else { "" };
                    vec![r.prefix.to_string(), format!("{hops}{adopted}")]
                })
                .collect::<Vec<_>>(),
        ),
        Answer::Bridges(rows) => table(
            &[
                "Bridge",
                "Ifindex",
                "Prefixes",
                "RA",
                "Source",
                "RAs sent",
                "RSs received",
            ],
            &rows
                .iter()
                .map(|r| {
                    let ra = r.ra.as_ref();
                    vec![
                        r.name.clone(),
                        dash(r.ifindex.map(|i| i.to_string())),
                        r.prefixes
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(" "),
                        dash(ra.map(|ra| ra.state.to_string())),
                        dash(ra.and_then(|ra| ra.link_local).map(|a| a.to_string())),
                        dash(ra.map(|ra| ra.ras_sent.to_string())),
                        dash(ra.map(|ra| ra.rs_received.to_string())),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_render_as_an_aligned_table() {
        let row = |name: &str, address: &str, state: &str, uptime_s: u64, received: u64| {
            serde_json::json!({ "name": name, "group": "cilium", "address": address, "asn": 65100,
              "router_id": null, "state": state, "uptime_s": uptime_s, "received": received,
              "installed": received, "rejected": {}, "updates": 0, "hold_time": null,
              "families": null, "extended_next_hop": null, "graceful_restart": null,
              "stale": false })
        };
        let answer = serde_json::json!([
            row("cilium1", "2001:db8:1::11", "Established", 12, 3),
            row("cilium2", "2001:db8:1::12", "Idle", 1, 0),
        ]);
        let text = render(&Answer::Peers(serde_json::from_value(answer).unwrap()));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("Name     Address         ASN    State"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("cilium1  2001:db8:1::11  65100  Established  12"),
            "{text}"
        );
    }

    #[test]
    fn routes_show_every_next_hop_with_its_device() {
        let answer = serde_json::json!([
            { "prefix": "198.51.100.7/32", "adopted": false, "table": 1336, "nexthops": [
                { "gateway": "2001:db8:1::11", "interface": "vmbr-dev", "ifindex": 4 },
                { "gateway": "2001:db8:1::12", "interface": "vmbr-dev", "ifindex": 4 } ] }
        ]);
        assert_eq!(
            render(&Answer::Routes(serde_json::from_value(answer).unwrap())),
            "Prefix           Next hops\n198.51.100.7/32  via 2001:db8:1::11 dev vmbr-dev, via 2001:db8:1::12 dev vmbr-dev\n"
        );
    }

    #[test]
    fn bridges_show_their_router_advertisement_state() {
        let answer = serde_json::json!([
            { "name": "vmbr-dev", "ifindex": 4, "prefixes": ["192.0.2.0/24", "2001:db8:1::/64"],
              "ra": { "ifname": "vmbr-dev", "state": "advertising", "ifindex": 4,
                      "link_local": "fe80::1", "prefixes": ["2001:db8:1::/64"], "deprecated": [],
                      "ras_sent": 3, "rs_received": 1, "rs_invalid": 0, "ras_received": 0,
                      "ras_inconsistent": 0, "last_ra_s_ago": 1.5, "next_ra_in_s": 200.0 } },
            { "name": "vmbr-lab", "ifindex": null, "prefixes": [], "ra": null }
        ]);
        assert_eq!(
            render(&Answer::Bridges(serde_json::from_value(answer).unwrap())),
            "Bridge    Ifindex  Prefixes                      RA           Source   RAs sent  RSs received\n\
             vmbr-dev  4        192.0.2.0/24 2001:db8:1::/64  advertising  fe80::1  3         1\n\
             vmbr-lab  -                                      -            -        -         -\n"
        );
    }

    #[tokio::test]
    async fn the_socket_is_mode_0660_and_owned_by_the_configured_group() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP: chown to another group needs root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("cilium-peer-control-{}", std::process::id()));
        let path = dir.join("control.sock");
        let (tx, _rx) = mpsc::channel(1);
        serve(&path, Some("nogroup"), tx).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o660);
        let nogroup = nix::unistd::Group::from_name("nogroup").unwrap().unwrap();
        assert_eq!(meta.gid(), nogroup.gid.as_raw());
        let (tx, _rx) = mpsc::channel(1);
        let error = serve(&dir.join("other.sock"), Some("no-such-group-here"), tx).unwrap_err();
        assert!(error.to_string().contains("no-such-group-here"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_answer_serializes_as_the_bare_array_show_json_documents() {
        let answer = Answer::Routes(vec![RouteRow {
            prefix: "10.244.1.0/24".parse().unwrap(),
            nexthops: vec![HopRow {
                gateway: "2001:db8:1::11".parse().unwrap(),
                interface: None,
                ifindex: Some(4),
            }],
            adopted: false,
            table: 1336,
        }]);
        let value = serde_json::to_value(&answer).unwrap();
        assert_eq!(value[0]["prefix"], "10.244.1.0/24");
        assert_eq!(value[0]["nexthops"][0]["gateway"], "2001:db8:1::11");
        let back: Vec<RouteRow> = serde_json::from_value(value).unwrap();
        assert_eq!(Answer::Routes(back), answer);
    }

    #[test]
    fn only_the_three_known_requests_parse() {
        assert_eq!(Request::parse("peers\n"), Some(Request::Peers));
        assert_eq!(Request::parse("routes"), Some(Request::Routes));
        assert_eq!(Request::parse("bridges"), Some(Request::Bridges));
        assert_eq!(Request::parse("shutdown"), None);
        for request in [Request::Peers, Request::Routes, Request::Bridges] {
            assert_eq!(Request::parse(request.name()), Some(request));
        }
    }
}
