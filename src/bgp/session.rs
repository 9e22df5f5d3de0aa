//! One passive BGP session's state machine (RFC 4271 section 8), sans IO: the driver feeds
//! it decoded messages, decode errors, transport closure and the time, and drains what to
//! send and what happened. It owns OPEN negotiation (capabilities, hold time, 4-octet AS,
//! families, extended next hop, graceful restart) and the hold and keepalive timers; it
//! knows nothing about routes beyond passing UPDATEs on.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::wire::{
    AS_TRANS, Capability, Context, DecodeError, ExtendedNextHop, Family, GracefulRestart,
    GracefulRestartFamily, Message, Notification, Open, RouteRefresh, Update,
};

/// How long we wait for the peer's OPEN after accepting its connection (RFC 4271 suggests
/// a large hold time of 4 minutes in OpenSent; a peer that connects and stays silent
/// should not hold a slot that long).
pub const OPEN_WAIT: Duration = Duration::from_secs(60);

/// What the local side offers to every peer of a neighbor group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// The AS the peer must claim.
    pub peer_as: u32,
    /// Hold time we offer (0 = no keepalives, else at least 3).
    pub hold_time: u16,
    /// Advertise graceful restart (RFC 4724) with the N bit (RFC 8538).
    pub graceful_restart: bool,
    /// F bit in our graceful restart capability: our routes survive our own restart.
    pub forwarding_preserved: bool,
    /// R bit in our graceful restart capability (RFC 4724 4.1): we have restarted and
    /// still keep the routes of our previous run.
    pub restarting: bool,
}

/// RFC 4271 8.2.2 states of a session that has a connection (we never connect out, so
/// Idle, Connect and Active are the listener's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    OpenSent,
    OpenConfirm,
    Established,
    /// The session is over; the driver drops the connection.
    Closed,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
            State::Closed => "Idle",
        }
    }
}

/// What both OPENs settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub peer_as: u32,
    pub peer_router_id: Ipv4Addr,
    /// 0 means no hold timer and no keepalives.
    pub hold_time: u16,
    pub four_octet_as: bool,
    /// Families both sides announced (IPv4 unicast alone when the peer sent no
    /// multiprotocol capability, RFC 4760 8).
    pub families: Vec<Family>,
    /// The peer may send IPv4 routes with IPv6 next hops (RFC 8950).
    pub extended_next_hop: bool,
    pub route_refresh: bool,
    /// The peer's graceful restart capability, when both sides sent one.
    pub graceful_restart: Option<GracefulRestart>,
}

impl Negotiated {
    pub fn context(&self) -> Context {
        Context {
            four_octet_as: self.four_octet_as,
        }
    }

    /// RFC 8538: both sides sent the N bit, so NOTIFICATIONs other than Hard Reset keep the
    /// peer's routes too.
    pub fn notification_graceful(&self) -> bool {
        self.graceful_restart
            .as_ref()
            .is_some_and(|gr| gr.notification)
    }

    pub fn keepalive_interval(&self) -> Option<Duration> {
        (self.hold_time > 0).then(|| Duration::from_secs(u64::from(self.hold_time)) / 3)
    }
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// We sent this NOTIFICATION (errors, hold timer expiry, administrative close).
    NotificationSent(Notification),
    /// The peer sent this NOTIFICATION.
    NotificationReceived(Notification),
    /// The TCP connection closed or failed without a NOTIFICATION.
    TransportClosed,
}

/// The session ended; `keep_routes` says whether a graceful restart helper keeps the
/// peer's routes (marked stale) for its restart time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub reason: CloseReason,
    pub keep_routes: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write this message to the peer.
    Send(Message),
    /// The session reached Established with these terms.
    Established(Negotiated),
    /// A route-carrying UPDATE (End-of-RIB markers come as `EndOfRib`).
    Update(Update),
    /// The peer finished its initial table for this family (RFC 4724 2).
    EndOfRib(Family),
    /// The session is over; nothing follows.
    Closed(Closed),
}

pub struct Session {
    config: SessionConfig,
    state: State,
    negotiated: Option<Negotiated>,
    /// Hold timer deadline (OPEN wait while in OpenSent).
    hold_deadline: Option<Instant>,
    keepalive_deadline: Option<Instant>,
    outputs: VecDeque<Output>,
}

impl Session {
    /// A peer connected: we send our OPEN at once and wait for theirs.
    pub fn accept(now: Instant, config: SessionConfig) -> Session {
        let open = Message::Open(our_open(&config));
        let mut session = Session {
            config,
            state: State::OpenSent,
            negotiated: None,
            hold_deadline: Some(now + OPEN_WAIT),
            keepalive_deadline: None,
            outputs: VecDeque::new(),
        };
        session.outputs.push_back(Output::Send(open));
        session
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// How to decode the peer's messages now.
    pub fn context(&self) -> Context {
        self.negotiated
            .as_ref()
            .map(Negotiated::context)
            .unwrap_or_default()
    }

    /// The next thing to do or report.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.hold_deadline, self.keepalive_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.hold_deadline.is_some_and(|d| now >= d) {
            let notification = Notification::hold_timer_expired();
            // A silent peer is a failed peer: a helper keeps its routes (RFC 4724 4).
            let keep = self.peer_graceful_restart();
            self.close_with(notification, keep);
            return;
        }
        if self.keepalive_deadline.is_some_and(|d| now >= d) {
            self.outputs.push_back(Output::Send(Message::Keepalive));
            self.restart_keepalive_timer(now);
        }
    }

    /// A message from the peer.
    pub fn handle_message(&mut self, now: Instant, message: Message) {
        match (self.state, message) {
            (State::Closed, _) => {}
            (_, Message::Notification(n)) => {
                let keep = self.peer_graceful_restart()
                    && self
                        .negotiated
                        .as_ref()
                        .is_some_and(Negotiated::notification_graceful)
                    && !n.is_hard_reset();
                self.finish(CloseReason::NotificationReceived(n), keep);
            }
            (State::OpenSent, Message::Open(open)) => self.handle_open(now, open),
            (State::OpenConfirm, Message::Keepalive) => {
                self.state = State::Established;
                self.restart_hold_timer(now);
                let negotiated = self.negotiated.clone().expect("negotiated in OpenSent");
                // Cilium holds its routes back until it sees our End-of-RIB.
                for family in &negotiated.families {
                    self.outputs
                        .push_back(Output::Send(Message::Update(Update::end_of_rib(*family))));
                }
                self.outputs.push_back(Output::Established(negotiated));
            }
            (State::Established, Message::Keepalive) => self.restart_hold_timer(now),
            (State::Established, Message::Update(update)) => {
                self.restart_hold_timer(now);
                match update.end_of_rib_family() {
                    Some(family) => self.outputs.push_back(Output::EndOfRib(family)),
                    None => self.outputs.push_back(Output::Update(update)),
                }
            }
            // We announce nothing, so a refresh request has nothing to resend.
            (State::Established, Message::RouteRefresh(_)) => self.restart_hold_timer(now),
            (state, _) => {
                // RFC 6608 subcodes name the state the message was unexpected in.
                let subcode = match state {
                    State::OpenSent => Notification::FSM_UNEXPECTED_IN_OPENSENT,
                    State::OpenConfirm => Notification::FSM_UNEXPECTED_IN_OPENCONFIRM,
                    _ => Notification::FSM_UNEXPECTED_IN_ESTABLISHED,
                };
                self.close_with(Notification::fsm_error(subcode), false);
            }
        }
    }

    /// The peer sent bytes that do not decode: tell it why and end.
    pub fn handle_decode_error(&mut self, error: &DecodeError) {
        if self.state != State::Closed {
            self.close_with(error.notification(), false);
        }
    }

    /// The connection closed or failed under us.
    pub fn handle_transport_closed(&mut self) {
        if self.state != State::Closed {
            let keep = self.peer_graceful_restart();
            self.finish(CloseReason::TransportClosed, keep);
        }
    }

    /// Close on our own initiative (max prefixes, de-configured, shutdown) with a Cease.
    /// `keep_routes` is for our own restart, where the peer's routes should stay.
    pub fn close(&mut self, cease_subcode: u8, keep_routes: bool) {
        if self.state != State::Closed {
            self.close_with(Notification::cease(cease_subcode), keep_routes);
        }
    }

    /// Asks the peer to send its routes again (RFC 2918), for every negotiated family.
    /// Returns false, sending nothing, when the session is not Established or the peer did
    /// not announce route refresh.
    pub fn request_route_refresh(&mut self) -> bool {
        let Some(negotiated) = self.negotiated.as_ref().filter(|n| n.route_refresh) else {
            return false;
        };
        if self.state != State::Established {
            return false;
        }
        for family in &negotiated.families {
            self.outputs
                .push_back(Output::Send(Message::RouteRefresh(RouteRefresh {
                    family: *family,
                })));
        }
        true
    }

    fn peer_graceful_restart(&self) -> bool {
        self.state == State::Established
            && self
                .negotiated
                .as_ref()
                .is_some_and(|n| n.graceful_restart.is_some())
    }

    fn close_with(&mut self, notification: Notification, keep_routes: bool) {
        self.outputs
            .push_back(Output::Send(Message::Notification(notification.clone())));
        self.finish(CloseReason::NotificationSent(notification), keep_routes);
    }

    fn finish(&mut self, reason: CloseReason, keep_routes: bool) {
        self.state = State::Closed;
        self.hold_deadline = None;
        self.keepalive_deadline = None;
        self.outputs.push_back(Output::Closed(Closed {
            reason,
            keep_routes,
        }));
    }

    fn restart_hold_timer(&mut self, now: Instant) {
        let hold = self.negotiated.as_ref().map_or(0, |n| n.hold_time);
        self.hold_deadline = (hold > 0).then(|| now + Duration::from_secs(u64::from(hold)));
    }

    fn restart_keepalive_timer(&mut self, now: Instant) {
        self.keepalive_deadline = self
            .negotiated
            .as_ref()
            .and_then(Negotiated::keepalive_interval)
            .map(|k| now + k);
    }

    fn handle_open(&mut self, now: Instant, open: Open) {
        match negotiate(&self.config, &open) {
            Ok(negotiated) => {
                self.negotiated = Some(negotiated);
                self.state = State::OpenConfirm;
                self.outputs.push_back(Output::Send(Message::Keepalive));
                self.restart_hold_timer(now);
                self.restart_keepalive_timer(now);
            }
            Err(notification) => self.close_with(notification, false),
        }
    }
}

fn open_error(subcode: u8, data: Vec<u8>) -> Notification {
    Notification::new(Notification::OPEN_MESSAGE_ERROR, subcode, data)
}

/// Our OPEN: both unicast families, 4-octet AS, route refresh, extended next hop for IPv4
/// over IPv6, and graceful restart with the N bit.
fn our_open(config: &SessionConfig) -> Open {
    let mut capabilities = vec![
        Capability::Multiprotocol(Family::IPV4_UNICAST),
        Capability::Multiprotocol(Family::IPV6_UNICAST),
        Capability::RouteRefresh,
        Capability::ExtendedNextHop(vec![ExtendedNextHop {
            nlri: Family::IPV4_UNICAST,
            nexthop_afi: 2,
        }]),
        Capability::FourOctetAs(config.local_as),
    ];
    if config.graceful_restart {
        capabilities.push(Capability::GracefulRestart(GracefulRestart {
            restart_state: config.restarting,
            notification: true,
            restart_time: 120,
            families: [Family::IPV4_UNICAST, Family::IPV6_UNICAST]
                .into_iter()
                .map(|family| GracefulRestartFamily {
                    family,
                    forwarding_preserved: config.forwarding_preserved,
                })
                .collect(),
        }));
    }
    Open {
        version: 4,
        my_as: Open::my_as_field(config.local_as),
        hold_time: config.hold_time,
        bgp_identifier: config.router_id,
        capabilities,
    }
}

/// RFC 4271 6.2 checks and capability intersection.
fn negotiate(config: &SessionConfig, open: &Open) -> Result<Negotiated, Notification> {
    if open.version != 4 {
        return Err(open_error(
            Notification::UNSUPPORTED_VERSION_NUMBER,
            vec![0, 4],
        ));
    }
    let four_octet = open.capabilities.iter().find_map(|c| match c {
        Capability::FourOctetAs(asn) => Some(*asn),
        _ => None,
    });
    let peer_as = four_octet.unwrap_or(u32::from(open.my_as));
    if peer_as != config.peer_as || (four_octet.is_none() && open.my_as == AS_TRANS) {
        return Err(open_error(
            Notification::BAD_PEER_AS,
            open.my_as.to_be_bytes().to_vec(),
        ));
    }
    if open.hold_time == 1 || open.hold_time == 2 {
        return Err(open_error(Notification::UNACCEPTABLE_HOLD_TIME, Vec::new()));
    }
    let ibgp = peer_as == config.local_as;
    if open.bgp_identifier.is_unspecified() || (ibgp && open.bgp_identifier == config.router_id) {
        return Err(open_error(
            Notification::BAD_BGP_IDENTIFIER,
            open.bgp_identifier.octets().to_vec(),
        ));
    }

    let offered: Vec<Family> = open
        .capabilities
        .iter()
        .filter_map(|c| match c {
            Capability::Multiprotocol(f) => Some(*f),
            _ => None,
        })
        .collect();
    let families = if offered.is_empty() {
        vec![Family::IPV4_UNICAST]
    } else {
        [Family::IPV4_UNICAST, Family::IPV6_UNICAST]
            .into_iter()
            .filter(|f| offered.contains(f))
            .collect()
    };
    let extended_next_hop = open.capabilities.iter().any(|c| {
        matches!(c, Capability::ExtendedNextHop(tuples)
            if tuples.iter().any(|t| t.nlri == Family::IPV4_UNICAST && t.nexthop_afi == 2))
    });
    let graceful_restart = if config.graceful_restart {
        open.capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart(gr) => Some(gr.clone()),
            _ => None,
        })
    } else {
        None
    };
    Ok(Negotiated {
        peer_as,
        peer_router_id: open.bgp_identifier,
        hold_time: config.hold_time.min(open.hold_time),
        four_octet_as: four_octet.is_some(),
        families,
        extended_next_hop,
        route_refresh: open
            .capabilities
            .iter()
            .any(|c| matches!(c, Capability::RouteRefresh)),
        graceful_restart,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn config() -> SessionConfig {
        SessionConfig {
            local_as: 65100,
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            peer_as: 65100,
            hold_time: 90,
            graceful_restart: true,
            forwarding_preserved: true,
            restarting: false,
        }
    }

    /// An OPEN as Cilium's GoBGP sends it (peers.md).
    fn cilium_open() -> Open {
        Open {
            version: 4,
            my_as: 65100,
            hold_time: 90,
            bgp_identifier: Ipv4Addr::new(192, 0, 2, 11),
            capabilities: vec![
                Capability::RouteRefresh,
                Capability::Unknown {
                    code: 73,
                    value: b"\x04node\x00".to_vec(),
                },
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::Multiprotocol(Family::IPV6_UNICAST),
                Capability::FourOctetAs(65100),
                Capability::GracefulRestart(GracefulRestart {
                    restart_state: true,
                    notification: true,
                    restart_time: 120,
                    families: vec![GracefulRestartFamily {
                        family: Family::IPV4_UNICAST,
                        forwarding_preserved: true,
                    }],
                }),
                Capability::ExtendedNextHop(vec![ExtendedNextHop {
                    nlri: Family::IPV4_UNICAST,
                    nexthop_afi: 2,
                }]),
            ],
        }
    }

    fn drain(s: &mut Session) -> Vec<Output> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    fn established(now: Instant) -> Session {
        let mut s = Session::accept(now, config());
        s.handle_message(now, Message::Open(cilium_open()));
        s.handle_message(now, Message::Keepalive);
        drain(&mut s);
        s
    }

    fn sent_notification(outputs: &[Output]) -> Option<(u8, u8)> {
        outputs.iter().find_map(|o| match o {
            Output::Send(Message::Notification(n)) => Some((n.code, n.subcode)),
            _ => None,
        })
    }

    fn closed(outputs: &[Output]) -> Option<&Closed> {
        outputs.iter().find_map(|o| match o {
            Output::Closed(c) => Some(c),
            _ => None,
        })
    }

    #[test]
    fn accepting_a_connection_sends_our_open_with_every_capability_cilium_needs() {
        let mut s = Session::accept(Instant::now(), config());
        let out = drain(&mut s);
        let Output::Send(Message::Open(open)) = &out[0] else {
            panic!("first output is not an OPEN: {out:?}")
        };
        assert_eq!(open.my_as, 65100);
        assert_eq!(open.hold_time, 90);
        let caps = &open.capabilities;
        assert!(caps.contains(&Capability::Multiprotocol(Family::IPV4_UNICAST)));
        assert!(caps.contains(&Capability::Multiprotocol(Family::IPV6_UNICAST)));
        assert!(caps.contains(&Capability::FourOctetAs(65100)));
        assert!(
            caps.iter()
                .any(|c| matches!(c, Capability::GracefulRestart(gr) if gr.notification))
        );
        assert!(
            caps.iter()
                .any(|c| matches!(c, Capability::ExtendedNextHop(_)))
        );
        assert_eq!(s.state(), State::OpenSent);
    }

    #[test]
    fn the_restart_state_bit_is_set_only_while_we_restart() {
        let restart_state = |c: &SessionConfig| {
            our_open(c).capabilities.iter().find_map(|cap| match cap {
                Capability::GracefulRestart(gr) => Some(gr.restart_state),
                _ => None,
            })
        };
        let mut c = config();
        assert_eq!(restart_state(&c), Some(false));
        c.restarting = true;
        assert_eq!(restart_state(&c), Some(true));
    }

    #[test]
    fn a_four_octet_local_as_is_sent_as_as_trans() {
        let mut c = config();
        c.local_as = 4_200_000_000;
        let open = our_open(&c);
        assert_eq!(open.my_as, AS_TRANS);
        assert!(
            open.capabilities
                .contains(&Capability::FourOctetAs(4_200_000_000))
        );
    }

    #[test]
    fn a_valid_open_is_answered_with_keepalive_and_moves_to_open_confirm() {
        let now = Instant::now();
        let mut s = Session::accept(now, config());
        drain(&mut s);
        s.handle_message(now, Message::Open(cilium_open()));
        assert_eq!(drain(&mut s), vec![Output::Send(Message::Keepalive)]);
        assert_eq!(s.state(), State::OpenConfirm);
    }

    #[test]
    fn keepalive_in_open_confirm_establishes_and_sends_end_of_rib_for_both_families() {
        let now = Instant::now();
        let mut s = Session::accept(now, config());
        s.handle_message(now, Message::Open(cilium_open()));
        drain(&mut s);
        s.handle_message(now, Message::Keepalive);
        let out = drain(&mut s);
        assert_eq!(s.state(), State::Established);
        assert_eq!(
            out[..2],
            [
                Output::Send(Message::Update(Update::end_of_rib(Family::IPV4_UNICAST))),
                Output::Send(Message::Update(Update::end_of_rib(Family::IPV6_UNICAST))),
            ]
        );
        let Output::Established(n) = &out[2] else {
            panic!("no Established: {out:?}")
        };
        assert!(n.four_octet_as && n.extended_next_hop && n.route_refresh);
        assert_eq!(n.families, vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
        assert!(n.notification_graceful());
    }

    #[test]
    fn hold_time_negotiates_to_the_smaller_value_and_keepalive_is_a_third_of_it() {
        let now = Instant::now();
        let mut s = Session::accept(now, config());
        let mut open = cilium_open();
        open.hold_time = 9;
        s.handle_message(now, Message::Open(open));
        let n = s.negotiated().unwrap();
        assert_eq!(n.hold_time, 9);
        assert_eq!(n.keepalive_interval(), Some(3 * S));
    }

    #[test]
    fn keepalives_are_sent_every_third_of_the_hold_time() {
        let t0 = Instant::now();
        let mut s = established(t0);
        assert_eq!(s.poll_timeout(), Some(t0 + 30 * S));
        s.handle_timeout(t0 + 30 * S);
        assert_eq!(drain(&mut s), vec![Output::Send(Message::Keepalive)]);
        assert_eq!(s.poll_timeout(), Some(t0 + 60 * S));
    }

    #[test]
    fn a_silent_peer_is_dropped_at_hold_expiry_with_4_0_and_its_routes_kept_for_graceful_restart() {
        let t0 = Instant::now();
        let mut s = established(t0);
        s.handle_timeout(t0 + 30 * S);
        s.handle_timeout(t0 + 60 * S);
        drain(&mut s);
        s.handle_timeout(t0 + 90 * S);
        let out = drain(&mut s);
        assert_eq!(sent_notification(&out), Some((4, 0)));
        assert!(closed(&out).unwrap().keep_routes);
        assert_eq!(s.state(), State::Closed);
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn every_message_from_the_peer_restarts_the_hold_timer() {
        let t0 = Instant::now();
        let mut s = established(t0);
        s.handle_message(t0 + 80 * S, Message::Keepalive);
        s.handle_timeout(t0 + 95 * S);
        assert_eq!(s.state(), State::Established);
    }

    #[test]
    fn hold_time_zero_means_no_keepalives_and_no_hold_timer() {
        let t0 = Instant::now();
        let mut c = config();
        c.hold_time = 0;
        let mut s = Session::accept(t0, c);
        s.handle_message(t0, Message::Open(cilium_open()));
        s.handle_message(t0, Message::Keepalive);
        assert_eq!(s.state(), State::Established);
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn a_peer_that_never_sends_open_is_dropped_after_the_open_wait() {
        let t0 = Instant::now();
        let mut s = Session::accept(t0, config());
        drain(&mut s);
        s.handle_timeout(t0 + OPEN_WAIT);
        let out = drain(&mut s);
        assert_eq!(sent_notification(&out), Some((4, 0)));
        assert!(!closed(&out).unwrap().keep_routes);
    }

    #[test]
    fn a_wrong_peer_as_gets_bad_peer_as() {
        let mut s = Session::accept(Instant::now(), config());
        let mut open = cilium_open();
        open.capabilities
            .retain(|c| !matches!(c, Capability::FourOctetAs(_)));
        open.my_as = 65001;
        s.handle_message(Instant::now(), Message::Open(open));
        assert_eq!(sent_notification(&drain(&mut s)), Some((2, 2)));
        assert_eq!(s.state(), State::Closed);
    }

    #[test]
    fn the_four_octet_capability_is_the_peer_as_when_present() {
        let mut c = config();
        c.peer_as = 4_200_000_001;
        let mut s = Session::accept(Instant::now(), c);
        let mut open = cilium_open();
        open.my_as = AS_TRANS;
        for cap in &mut open.capabilities {
            if let Capability::FourOctetAs(asn) = cap {
                *asn = 4_200_000_001;
            }
        }
        s.handle_message(Instant::now(), Message::Open(open));
        assert_eq!(s.state(), State::OpenConfirm);
        assert_eq!(s.negotiated().unwrap().peer_as, 4_200_000_001);
    }

    #[test]
    fn hold_times_of_one_or_two_seconds_are_unacceptable() {
        for hold in [1, 2] {
            let mut s = Session::accept(Instant::now(), config());
            let mut open = cilium_open();
            open.hold_time = hold;
            s.handle_message(Instant::now(), Message::Open(open));
            assert_eq!(sent_notification(&drain(&mut s)), Some((2, 6)));
        }
    }

    #[test]
    fn an_ibgp_peer_with_our_router_id_gets_bad_bgp_identifier() {
        let mut s = Session::accept(Instant::now(), config());
        let mut open = cilium_open();
        open.bgp_identifier = config().router_id;
        s.handle_message(Instant::now(), Message::Open(open));
        assert_eq!(sent_notification(&drain(&mut s)), Some((2, 3)));
    }

    #[test]
    fn an_unsupported_version_is_answered_with_the_version_we_speak() {
        let mut s = Session::accept(Instant::now(), config());
        let mut open = cilium_open();
        open.version = 5;
        s.handle_message(Instant::now(), Message::Open(open));
        let out = drain(&mut s);
        assert!(out.iter().any(|o| matches!(o,
            Output::Send(Message::Notification(n)) if (n.code, n.subcode, n.data.as_slice()) == (2, 1, &[0, 4][..]))));
    }

    #[test]
    fn a_peer_without_multiprotocol_capabilities_gets_ipv4_unicast_only() {
        let mut s = Session::accept(Instant::now(), config());
        let mut open = cilium_open();
        open.capabilities
            .retain(|c| !matches!(c, Capability::Multiprotocol(_)));
        s.handle_message(Instant::now(), Message::Open(open));
        assert_eq!(s.negotiated().unwrap().families, vec![Family::IPV4_UNICAST]);
    }

    #[test]
    fn an_update_before_established_is_an_fsm_error() {
        let now = Instant::now();
        let mut s = Session::accept(now, config());
        s.handle_message(now, Message::Open(cilium_open()));
        drain(&mut s);
        s.handle_message(now, Message::Update(Update::default()));
        assert_eq!(sent_notification(&drain(&mut s)), Some((5, 2)));
    }

    #[test]
    fn updates_and_end_of_rib_are_passed_on_separately() {
        let now = Instant::now();
        let mut s = established(now);
        let update = Update {
            nlri: vec!["10.244.1.0/24".parse().unwrap()],
            ..Update::default()
        };
        s.handle_message(now, Message::Update(update.clone()));
        s.handle_message(
            now,
            Message::Update(Update::end_of_rib(Family::IPV6_UNICAST)),
        );
        assert_eq!(
            drain(&mut s),
            vec![
                Output::Update(update),
                Output::EndOfRib(Family::IPV6_UNICAST)
            ]
        );
    }

    #[test]
    fn a_cease_from_a_peer_with_the_n_bit_keeps_its_routes_but_hard_reset_does_not() {
        for (subcode, keep) in [(3, true), (9, false)] {
            let now = Instant::now();
            let mut s = established(now);
            s.handle_message(now, Message::Notification(Notification::cease(subcode)));
            let out = drain(&mut s);
            assert_eq!(
                closed(&out).unwrap().keep_routes,
                keep,
                "cease subcode {subcode}"
            );
        }
    }

    #[test]
    fn a_notification_without_the_n_bit_drops_the_routes() {
        let now = Instant::now();
        let mut s = Session::accept(now, config());
        let mut open = cilium_open();
        for cap in &mut open.capabilities {
            if let Capability::GracefulRestart(gr) = cap {
                gr.notification = false;
            }
        }
        s.handle_message(now, Message::Open(open));
        s.handle_message(now, Message::Keepalive);
        drain(&mut s);
        s.handle_message(now, Message::Notification(Notification::cease(3)));
        assert!(!closed(&drain(&mut s)).unwrap().keep_routes);
    }

    #[test]
    fn a_lost_connection_keeps_the_routes_of_a_graceful_restart_peer_only() {
        let now = Instant::now();
        let mut s = established(now);
        s.handle_transport_closed();
        assert!(closed(&drain(&mut s)).unwrap().keep_routes);

        let mut c = config();
        c.graceful_restart = false;
        let mut s = Session::accept(now, c);
        s.handle_message(now, Message::Open(cilium_open()));
        s.handle_message(now, Message::Keepalive);
        drain(&mut s);
        s.handle_transport_closed();
        assert!(!closed(&drain(&mut s)).unwrap().keep_routes);
    }

    #[test]
    fn a_route_refresh_is_requested_for_every_negotiated_family_once_established() {
        let now = Instant::now();
        let mut s = Session::accept(now, config());
        drain(&mut s);
        s.handle_message(now, Message::Open(cilium_open()));
        assert!(!s.request_route_refresh(), "not before Established");
        s.handle_message(now, Message::Keepalive);
        drain(&mut s);
        assert!(s.request_route_refresh());
        assert_eq!(
            drain(&mut s),
            vec![
                Output::Send(Message::RouteRefresh(RouteRefresh {
                    family: Family::IPV4_UNICAST
                })),
                Output::Send(Message::RouteRefresh(RouteRefresh {
                    family: Family::IPV6_UNICAST
                })),
            ]
        );
    }

    #[test]
    fn no_route_refresh_is_sent_to_a_peer_that_did_not_announce_it() {
        let now = Instant::now();
        let mut s = Session::accept(now, config());
        let mut open = cilium_open();
        open.capabilities
            .retain(|c| !matches!(c, Capability::RouteRefresh));
        s.handle_message(now, Message::Open(open));
        s.handle_message(now, Message::Keepalive);
        drain(&mut s);
        assert!(!s.request_route_refresh());
        assert!(drain(&mut s).is_empty());
    }

    #[test]
    fn closing_for_max_prefixes_sends_cease_1_and_drops_the_routes() {
        let now = Instant::now();
        let mut s = established(now);
        s.close(1, false);
        let out = drain(&mut s);
        assert_eq!(sent_notification(&out), Some((6, 1)));
        assert!(!closed(&out).unwrap().keep_routes);
        s.handle_message(now, Message::Keepalive);
        assert!(drain(&mut s).is_empty(), "a closed session stays silent");
    }
}
