//! The control socket behind `cilium-peer show`: a unix stream socket (mode 0660) where a
//! client writes one request line (`peers`, `routes` or `bridges`) and reads one JSON
//! document back. The daemon's event loop builds the answer; this module only carries it,
//! and prints it for humans.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;

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
    fn parse(line: &str) -> Option<Request> {
        match line.trim() {
            "peers" => Some(Request::Peers),
            "routes" => Some(Request::Routes),
            "bridges" => Some(Request::Bridges),
            _ => None,
        }
    }
}

/// Binds the socket (replacing a stale one; mode 0660, owned by `group` when given) and
/// serves it in the background; each request goes to `daemon` with a channel for the answer.
pub fn serve(
    path: &Path,
    group: Option<&str>,
    daemon: mpsc::Sender<(Request, oneshot::Sender<Value>)>,
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
                        rx.await.unwrap_or(Value::Null)
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
pub fn show(socket: &Path, what: &str, json: bool) -> ExitCode {
    match query(socket, what) {
        Ok(answer) if json => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            print!("{}", render(what, &answer));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot ask cilium-peer at {}: {error}", socket.display());
            ExitCode::from(1)
        }
    }
}

/// One request, one JSON answer.
pub fn query(socket: &Path, what: &str) -> io::Result<Value> {
    let mut stream = UnixStream::connect(socket)?;
    stream.write_all(format!("{what}\n").as_bytes())?;
    let mut text = String::new();
    BufReader::new(&mut stream).read_line(&mut text)?;
    serde_json::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Aligned tables in the spirit of `birdc show protocols` and `show route`.
pub fn render(what: &str, answer: &Value) -> String {
    let rows: Vec<&Value> = answer
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let (header, cells): (Vec<&str>, Vec<Vec<String>>) = match what {
        "peers" => (
            vec![
                "Name",
                "Address",
                "ASN",
                "State",
                "Since(s)",
                "Received",
                "Installed",
            ],
            rows.iter()
                .map(|r| {
                    [
                        "name",
                        "address",
                        "asn",
                        "state",
                        "uptime_s",
                        "received",
                        "installed",
                    ]
                    .iter()
                    .map(|k| text(&r[*k]))
                    .collect()
                })
                .collect(),
        ),
        "routes" => (
            vec!["Prefix", "Next hops"],
            rows.iter()
                .map(|r| {
                    let hops = r["nexthops"]
                        .as_array()
                        .map(|hops| {
                            hops.iter()
                                .map(|h| match h["interface"].as_str() {
                                    Some(dev) => format!("via {} dev {dev}", text(&h["gateway"])),
                                    None => format!("via {}", text(&h["gateway"])),
                                })
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default();
                    let adopted = if r["adopted"] == Value::Bool(true) {
                        " (adopted)"
                    } else {
                        ""
                    };
                    vec![text(&r["prefix"]), format!("{hops}{adopted}")]
                })
                .collect(),
        ),
        _ => (
            vec![
                "Bridge",
                "Ifindex",
                "Prefixes",
                "RA",
                "Source",
                "RAs sent",
                "RSs received",
            ],
            rows.iter()
                .map(|r| {
                    let prefixes = r["prefixes"]
                        .as_array()
                        .map(|p| p.iter().map(text).collect::<Vec<_>>().join(" "))
                        .unwrap_or_default();
                    let ra = &r["ra"];
                    vec![
                        text(&r["name"]),
                        text(&r["ifindex"]),
                        prefixes,
                        text(&ra["state"]),
                        text(&ra["link_local"]),
                        text(&ra["ras_sent"]),
                        text(&ra["rs_received"]),
                    ]
                })
                .collect(),
        ),
    };
    table(&header, &cells)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
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
        let answer = serde_json::json!([
            { "name": "cilium1", "address": "2001:db8:1::11", "asn": 65100, "state": "Established",
              "uptime_s": 12, "received": 3, "installed": 3 },
            { "name": "cilium2", "address": "2001:db8:1::12", "asn": 65100, "state": "Idle",
              "uptime_s": 1, "received": 0, "installed": 0 }
        ]);
        let text = render("peers", &answer);
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
            { "prefix": "198.51.100.7/32", "adopted": false, "nexthops": [
                { "gateway": "2001:db8:1::11", "interface": "vmbr-dev" },
                { "gateway": "2001:db8:1::12", "interface": "vmbr-dev" } ] }
        ]);
        assert_eq!(
            render("routes", &answer),
            "Prefix           Next hops\n198.51.100.7/32  via 2001:db8:1::11 dev vmbr-dev, via 2001:db8:1::12 dev vmbr-dev\n"
        );
    }

    #[test]
    fn bridges_show_their_router_advertisement_state() {
        let answer = serde_json::json!([
            { "name": "vmbr-dev", "ifindex": 4, "prefixes": ["192.0.2.0/24", "2001:db8:1::/64"],
              "ra": { "state": "advertising", "link_local": "fe80::1", "ras_sent": 3, "rs_received": 1 } },
            { "name": "vmbr-lab", "ifindex": null, "prefixes": [], "ra": null }
        ]);
        assert_eq!(
            render("bridges", &answer),
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
    fn only_the_three_known_requests_parse() {
        assert_eq!(Request::parse("peers\n"), Some(Request::Peers));
        assert_eq!(Request::parse("routes"), Some(Request::Routes));
        assert_eq!(Request::parse("bridges"), Some(Request::Bridges));
        assert_eq!(Request::parse("shutdown"), None);
    }
}
