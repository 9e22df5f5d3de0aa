//! Prometheus metrics: a snapshot of the daemon's state rendered in the text exposition
//! format (0.0.4), and a minimal HTTP/1.0 responder that serves it at `/metrics` on the
//! optional `metrics.listen` address. The daemon's event loop builds the snapshot; this
//! module only renders and carries it. Every name is documented in docs/operation.md.

use std::fmt::{Display, Write as _};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::daemon::core::{BfdState, Liveness, PeerState};
use crate::policy::Rejection;
use crate::ra::{BridgeStatus, RaState};

/// Everything the metrics show, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: &'static str,
    /// When the daemon started, in seconds since the Unix epoch.
    pub start_time_s: f64,
    pub sessions: Vec<Session>,
    pub connections_refused: u64,
    /// Prefixes we want in the kernel table, and how many of them still hold next hops
    /// adopted from a previous run.
    pub routes: usize,
    pub routes_adopted: usize,
    pub fib_operations: u64,
    pub fib_errors: u64,
    pub fib_repairs: u64,
    pub fib_resyncs: u64,
    pub bridges: Vec<BridgeStatus>,
    pub reloads_applied: u64,
    pub reloads_refused: u64,
    pub last_reload_ok: bool,
}

/// One neighbor (a session, or a peer away in graceful restart).
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub name: String,
    pub address: String,
    pub state: PeerState,
    /// Liveness on its bridge, when watched.
    pub liveness: Option<Liveness>,
    /// Liveness state changes since the node was first watched.
    pub liveness_transitions: u64,
    /// Its BFD session, when its group runs BFD.
    pub bfd: Option<BfdState>,
    pub bfd_transitions: u64,
    pub prefixes_received: u64,
    pub prefixes_accepted: usize,
    pub prefixes_installed: usize,
    pub rejected: Vec<(Rejection, u64)>,
    pub updates: u64,
}

/// A per-bridge metric: name, type, help and how to read it off a bridge's RA status.
type BridgeFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&BridgeStatus) -> u64,
);

/// The text exposition format: HELP and TYPE once per family, then its samples.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"{}\"", escape(value));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// The snapshot in the text exposition format.
pub fn render(s: &Snapshot) -> String {
    let mut out = Exposition(String::new());
    out.family(
        "cilium_peer_build_info",
        "gauge",
        "Always 1; the version label says which build runs.",
    );
    out.sample("cilium_peer_build_info", &[("version", s.version)], 1);
    out.family(
        "cilium_peer_start_time_seconds",
        "gauge",
        "When the daemon started, in seconds since the Unix epoch.",
    );
    out.sample("cilium_peer_start_time_seconds", &[], s.start_time_s);

    out.family(
        "cilium_peer_sessions",
        "gauge",
        "Neighbors by state (Stale: away in graceful restart, routes kept).",
    );
    for state in PeerState::ALL {
        let n = s.sessions.iter().filter(|p| p.state == state).count();
        out.sample("cilium_peer_sessions", &[("state", state.name())], n);
    }
    let per_session = |out: &mut Exposition,
                       name: &str,
                       kind: &str,
                       help: &str,
                       value: &dyn Fn(&Session) -> String| {
        out.family(name, kind, help);
        for p in &s.sessions {
            out.sample(
                name,
                &[("peer", &p.name), ("address", &p.address)],
                value(p),
            );
        }
    };
    per_session(
        &mut out,
        "cilium_peer_session_established",
        "gauge",
        "1 while the session is Established.",
        &|p| u8::from(p.state == PeerState::Established).to_string(),
    );
    out.family(
        "cilium_peer_session_liveness",
        "gauge",
        "1 for the node's liveness state on its bridge (reachable, probing, unreachable); no samples when it is not watched.",
    );
    for p in &s.sessions {
        let Some(liveness) = p.liveness else {
            continue;
        };
        for state in Liveness::ALL {
            out.sample(
                "cilium_peer_session_liveness",
                &[
                    ("peer", &p.name),
                    ("address", &p.address),
                    ("state", state.name()),
                ],
                u8::from(liveness == state),
            );
        }
    }
    out.family(
        "cilium_peer_session_bfd",
        "gauge",
        "1 for the state of the node's BFD session (down, up, admin_down); no samples when its group runs no BFD.",
    );
    for p in &s.sessions {
        let Some(bfd) = p.bfd else {
            continue;
        };
        for state in BfdState::ALL {
            out.sample(
                "cilium_peer_session_bfd",
                &[
                    ("peer", &p.name),
                    ("address", &p.address),
                    ("state", state.name()),
                ],
                u8::from(bfd == state),
            );
        }
    }
    per_session(
        &mut out,
        "cilium_peer_session_bfd_transitions_total",
        "counter",
        "Changes of the state of the node's BFD session.",
        &|p| p.bfd_transitions.to_string(),
    );
    per_session(
        &mut out,
        "cilium_peer_session_liveness_transitions_total",
        "counter",
        "Changes of the node's liveness state.",
        &|p| p.liveness_transitions.to_string(),
    );
    per_session(
        &mut out,
        "cilium_peer_session_prefixes_received_total",
        "counter",
        "Prefixes announced in the session's UPDATEs, accepted or not.",
        &|p| p.prefixes_received.to_string(),
    );
    per_session(
        &mut out,
        "cilium_peer_session_prefixes_accepted",
        "gauge",
        "Prefixes of the session in the RIB (they passed the import policy), stale ones included.",
        &|p| p.prefixes_accepted.to_string(),
    );
    per_session(
        &mut out,
        "cilium_peer_session_prefixes_installed",
        "gauge",
        "Prefixes whose installed route uses the session's path (best or ECMP).",
        &|p| p.prefixes_installed.to_string(),
    );
    per_session(
        &mut out,
        "cilium_peer_session_updates_received_total",
        "counter",
        "UPDATE messages received in the session (End-of-RIB markers excluded).",
        &|p| p.updates.to_string(),
    );
    out.family(
        "cilium_peer_session_prefixes_rejected_total",
        "counter",
        "Announced prefixes refused, by reason (import policy, safety rules, RFC 7606).",
    );
    for p in &s.sessions {
        for reason in Rejection::ALL {
            let n = p
                .rejected
                .iter()
                .find(|(r, _)| *r == reason)
                .map_or(0, |(_, n)| *n);
            out.sample(
                "cilium_peer_session_prefixes_rejected_total",
                &[
                    ("peer", &p.name),
                    ("address", &p.address),
                    ("reason", reason.name()),
                ],
                n,
            );
        }
    }
    out.family(
        "cilium_peer_connections_refused_total",
        "counter",
        "BGP connections from outside every neighbor range, closed at once.",
    );
    out.sample(
        "cilium_peer_connections_refused_total",
        &[],
        s.connections_refused,
    );

    let global: [(&str, &str, &str, f64); 6] = [
        (
            "cilium_peer_routes",
            "gauge",
            "Prefixes cilium-peer wants in its kernel table.",
            s.routes as f64,
        ),
        (
            "cilium_peer_routes_adopted",
            "gauge",
            "Of those, prefixes still holding next hops adopted from a previous run.",
            s.routes_adopted as f64,
        ),
        (
            "cilium_peer_fib_operations_total",
            "counter",
            "Route replace and delete requests sent to the kernel.",
            s.fib_operations as f64,
        ),
        (
            "cilium_peer_fib_errors_total",
            "counter",
            "Of those, requests the kernel refused.",
            s.fib_errors as f64,
        ),
        (
            "cilium_peer_fib_repairs_total",
            "counter",
            "Routes of ours put back after someone else changed or deleted them.",
            s.fib_repairs as f64,
        ),
        (
            "cilium_peer_fib_resyncs_total",
            "counter",
            "Comparisons of the whole kernel table with the RIB (after refusals, lost events, a bridge back up).",
            s.fib_resyncs as f64,
        ),
    ];
    for (name, kind, help, value) in global {
        out.family(name, kind, help);
        out.sample(name, &[], value);
    }

    let per_bridge: [BridgeFamily; 6] = [
        (
            "cilium_peer_ra_advertising",
            "gauge",
            "1 while router advertisements go out on the bridge.",
            |b| u64::from(b.state == RaState::Advertising),
        ),
        (
            "cilium_peer_ra_adverts_sent_total",
            "counter",
            "Router advertisements sent on the bridge.",
            |b| b.ras_sent,
        ),
        (
            "cilium_peer_ra_solicits_received_total",
            "counter",
            "Router solicitations received on the bridge.",
            |b| b.rs_received,
        ),
        (
            "cilium_peer_ra_solicits_invalid_total",
            "counter",
            "Router solicitations dropped as invalid.",
            |b| b.rs_invalid,
        ),
        (
            "cilium_peer_ra_adverts_received_total",
            "counter",
            "Router advertisements from other routers on the bridge.",
            |b| b.ras_received,
        ),
        (
            "cilium_peer_ra_adverts_inconsistent_total",
            "counter",
            "Of those, advertisements that disagree with ours (RFC 4861 6.2.7).",
            |b| b.ras_inconsistent,
        ),
    ];
    for (name, kind, help, value) in per_bridge {
        out.family(name, kind, help);
        for b in &s.bridges {
            out.sample(name, &[("bridge", &b.ifname)], value(b));
        }
    }

    out.family(
        "cilium_peer_reloads_total",
        "counter",
        "Config reloads (SIGHUP), by outcome: applied, or refused for an invalid file.",
    );
    out.sample(
        "cilium_peer_reloads_total",
        &[("outcome", "applied")],
        s.reloads_applied,
    );
    out.sample(
        "cilium_peer_reloads_total",
        &[("outcome", "refused")],
        s.reloads_refused,
    );
    out.family(
        "cilium_peer_config_last_reload_successful",
        "gauge",
        "0 when the last reload was refused (the config in force is older than the file).",
    );
    out.sample(
        "cilium_peer_config_last_reload_successful",
        &[],
        u8::from(s.last_reload_ok),
    );
    out.0
}

/// A request is its request line and headers; anything longer is refused.
const MAX_REQUEST: usize = 8192;
/// A client gets this long to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `addr` and answers HTTP there in the background: `GET /metrics` asks `daemon`
/// for the current exposition. Abort the returned task to stop.
pub fn serve(
    addr: SocketAddr,
    daemon: mpsc::Sender<oneshot::Sender<String>>,
) -> io::Result<JoinHandle<()>> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(respond(stream, daemon.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }))
}

async fn respond(mut stream: TcpStream, daemon: mpsc::Sender<oneshot::Sender<String>>) {
    let Ok(Some(head)) = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await else {
        return;
    };
    let (status, body) = match route(&head) {
        Route::Metrics => {
            let (tx, rx) = oneshot::channel();
            if daemon.send(tx).await.is_err() {
                return;
            }
            match rx.await {
                Ok(text) => ("200 OK", text),
                Err(_) => return,
            }
        }
        Route::Index => (
            "200 OK",
            "cilium-peer: Prometheus metrics at /metrics\n".to_string(),
        ),
        Route::NotFound => ("404 Not Found", "not found; try /metrics\n".to_string()),
        Route::NotAllowed => ("405 Method Not Allowed", "only GET\n".to_string()),
        Route::Bad => ("400 Bad Request", "bad request\n".to_string()),
    };
    let response = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads up to the blank line that ends the headers; `None` if the client stops early or
/// sends too much.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            return None;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    Index,
    NotFound,
    NotAllowed,
    Bad,
}

fn route(head: &str) -> Route {
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/") {
        return Route::Bad;
    }
    if method != "GET" {
        return Route::NotAllowed;
    }
    match target.split('?').next() {
        Some("/metrics") => Route::Metrics,
        Some("/") => Route::Index,
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            version: "0.1.0",
            start_time_s: 1_700_000_000.0,
            sessions: vec![
                Session {
                    name: "cilium1".into(),
                    address: "2001:db8:1::11".into(),
                    state: PeerState::Established,
                    liveness: Some(Liveness::Unreachable),
                    liveness_transitions: 2,
                    bfd: Some(BfdState::Up),
                    bfd_transitions: 1,
                    prefixes_received: 5,
                    prefixes_accepted: 4,
                    prefixes_installed: 3,
                    rejected: vec![(Rejection::NotImported, 1)],
                    updates: 6,
                },
                Session {
                    name: "cilium2".into(),
                    address: "2001:db8:1::12".into(),
                    state: PeerState::Stale,
                    ..Session::default()
                },
            ],
            routes: 4,
            bridges: vec![BridgeStatus {
                ifname: "vmbr-dev".into(),
                state: RaState::Advertising,
                ifindex: Some(3),
                link_local: None,
                prefixes: Vec::new(),
                deprecated: Vec::new(),
                ras_sent: 12,
                rs_received: 2,
                rs_invalid: 0,
                ras_received: 0,
                ras_inconsistent: 0,
                last_ra_s_ago: None,
                next_ra_in_s: None,
            }],
            reloads_applied: 2,
            reloads_refused: 1,
            last_reload_ok: true,
            ..Snapshot::default()
        }
    }

    /// The samples of the exposition, as `name{labels} value` lines.
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn liveness_shows_one_state_per_watched_node_and_counts_its_changes() {
        let s = render(&snapshot());
        assert!(s.contains(r#"cilium_peer_session_liveness{peer="cilium1",address="2001:db8:1::11",state="unreachable"} 1"#), "{s}");
        assert!(s.contains(r#"cilium_peer_session_liveness{peer="cilium1",address="2001:db8:1::11",state="reachable"} 0"#), "{s}");
        assert!(
            !s.contains(r#"cilium_peer_session_liveness{peer="cilium2""#),
            "{s}"
        );
        assert!(s.contains(r#"cilium_peer_session_liveness_transitions_total{peer="cilium1",address="2001:db8:1::11"} 2"#), "{s}");
        assert!(
            s.contains(
                r#"cilium_peer_session_bfd{peer="cilium1",address="2001:db8:1::11",state="up"} 1"#
            ),
            "{s}"
        );
        assert!(s.contains(r#"cilium_peer_session_bfd{peer="cilium1",address="2001:db8:1::11",state="admin_down"} 0"#), "{s}");
    }

    #[test]
    fn sessions_are_counted_by_state_with_every_state_present() {
        let text = render(&snapshot());
        let s = samples(&text);
        assert!(s.contains(&r#"cilium_peer_sessions{state="Established"} 1"#));
        assert!(s.contains(&r#"cilium_peer_sessions{state="Stale"} 1"#));
        assert!(s.contains(&r#"cilium_peer_sessions{state="OpenSent"} 0"#));
    }

    #[test]
    fn per_session_route_counts_carry_the_peer_and_its_address() {
        let text = render(&snapshot());
        let s = samples(&text);
        let labels = r#"{peer="cilium1",address="2001:db8:1::11"}"#;
        for (name, value) in [
            ("cilium_peer_session_prefixes_received_total", 5),
            ("cilium_peer_session_prefixes_accepted", 4),
            ("cilium_peer_session_prefixes_installed", 3),
            ("cilium_peer_session_updates_received_total", 6),
            ("cilium_peer_session_established", 1),
        ] {
            let line = format!("{name}{labels} {value}");
            assert!(s.contains(&line.as_str()), "{line} not in\n{text}");
        }
        assert!(s.contains(&r#"cilium_peer_session_prefixes_rejected_total{peer="cilium1",address="2001:db8:1::11",reason="not_imported"} 1"#));
        assert!(s.contains(&r#"cilium_peer_session_prefixes_rejected_total{peer="cilium1",address="2001:db8:1::11",reason="default_route"} 0"#));
        assert!(s.contains(
            &r#"cilium_peer_session_established{peer="cilium2",address="2001:db8:1::12"} 0"#
        ));
    }

    #[test]
    fn bridges_reloads_and_build_info_are_exposed() {
        let text = render(&snapshot());
        let s = samples(&text);
        for line in [
            r#"cilium_peer_ra_adverts_sent_total{bridge="vmbr-dev"} 12"#,
            r#"cilium_peer_ra_solicits_received_total{bridge="vmbr-dev"} 2"#,
            r#"cilium_peer_ra_advertising{bridge="vmbr-dev"} 1"#,
            r#"cilium_peer_reloads_total{outcome="applied"} 2"#,
            r#"cilium_peer_reloads_total{outcome="refused"} 1"#,
            "cilium_peer_config_last_reload_successful 1",
            r#"cilium_peer_build_info{version="0.1.0"} 1"#,
            "cilium_peer_routes 4",
        ] {
            assert!(s.contains(&line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn every_family_has_help_and_type_once_and_every_sample_a_family() {
        let text = render(&snapshot());
        let typed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let mut unique = typed.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), typed.len(), "a family twice: {typed:?}");
        for sample in samples(&text) {
            let name = sample.split(['{', ' ']).next().unwrap();
            assert!(typed.contains(&name), "{name} has no TYPE line");
        }
        assert_eq!(
            text.lines().filter(|l| l.starts_with("# HELP ")).count(),
            typed.len()
        );
    }

    #[test]
    fn every_metric_is_documented_in_operation_md_and_nothing_else_is() {
        let docs = include_str!("../docs/operation.md");
        let documented: std::collections::BTreeSet<&str> = docs
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("cilium_peer_"))
            .collect();
        let text = render(&snapshot());
        let exposed: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(documented, exposed);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }

    #[test]
    fn only_get_of_metrics_and_the_index_are_served() {
        assert_eq!(
            route("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route("GET / HTTP/1.0\r\n\r\n"), Route::Index);
        assert_eq!(route("GET /other HTTP/1.0\r\n\r\n"), Route::NotFound);
        assert_eq!(route("POST /metrics HTTP/1.0\r\n\r\n"), Route::NotAllowed);
        assert_eq!(route("hello\r\n\r\n"), Route::Bad);
    }
}
