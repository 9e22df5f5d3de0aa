//! Link and IPv6 address state of every interface, kept current from netlink link and
//! address events (RTNLGRP_LINK, RTNLGRP_IPV6_IFADDR): whether a bridge exists, is up, has
//! carrier and has a usable (non-tentative) link-local address. Each event triggers a fresh
//! dump, so a lost event costs nothing; a periodic dump is the safety net.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use futures::StreamExt;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use netlink_packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::{Handle, MulticastGroup};
use tokio::sync::watch;

/// What the RA sender needs to know about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    pub ifindex: u32,
    /// IFF_UP.
    pub up: bool,
    /// IFF_LOWER_UP: a bridge has carrier once one of its ports is up.
    pub carrier: bool,
    /// The lowest non-tentative link-local address, the source of our RAs.
    pub link_local: Option<Ipv6Addr>,
}

impl LinkState {
    /// Whether RAs can be sent on the interface now.
    pub fn usable(&self) -> bool {
        self.up && self.carrier && self.link_local.is_some()
    }
}

/// Interfaces by name.
pub type Links = BTreeMap<String, LinkState>;

/// A dump is repeated this long after the last of a burst of events.
const SETTLE: Duration = Duration::from_millis(50);
/// And at least this often anyway.
const REFRESH: Duration = Duration::from_secs(30);

/// Watches links and addresses, publishing every change on `links` until every receiver
/// is gone.
pub async fn run(links: watch::Sender<Links>) -> io::Result<()> {
    let (connection, handle, mut events) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link, MulticastGroup::Ipv6Ifaddr])?;
    let connection = tokio::spawn(connection);
    let result = async {
        loop {
            let state = dump(&handle).await?;
            links.send_if_modified(|current| {
                let changed = *current != state;
                *current = state;
                changed
            });
            if links.is_closed() {
                return Ok(());
            }
            // Wait for an event (or the refresh), then let a burst of events settle.
            match tokio::time::timeout(REFRESH, events.next()).await {
                Ok(None) => return Err(io::Error::other("netlink event stream ended")),
                Ok(Some((message, _))) => {
                    if let NetlinkPayload::Error(e) = message.payload {
                        tracing::debug!("netlink event error: {e:?}");
                    }
                    while let Ok(Some(_)) = tokio::time::timeout(SETTLE, events.next()).await {}
                }
                Err(_refresh) => {}
            }
        }
    }
    .await;
    connection.abort();
    result
}

async fn dump(handle: &Handle) -> io::Result<Links> {
    let mut links = Links::new();
    let mut by_index = BTreeMap::new();
    let mut stream = handle.link().get().execute();
    while let Some(message) = stream.next().await {
        let message = message.map_err(io::Error::other)?;
        let Some(name) = message.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        }) else {
            continue;
        };
        by_index.insert(message.header.index, name.clone());
        links.insert(
            name,
            LinkState {
                ifindex: message.header.index,
                up: message.header.flags.contains(LinkFlags::Up),
                carrier: message.header.flags.contains(LinkFlags::LowerUp),
                link_local: None,
            },
        );
    }
    let mut stream = handle.address().get().execute();
    while let Some(message) = stream.next().await {
        let message = message.map_err(io::Error::other)?;
        if message.header.family != AddressFamily::Inet6 {
            continue;
        }
        let unusable = message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Flags(f) => {
                Some(f.intersects(AddressFlags::Tentative | AddressFlags::Dadfailed))
            }
            _ => None,
        });
        let unusable = unusable.unwrap_or_else(|| {
            message
                .header
                .flags
                .intersects(AddressHeaderFlags::Tentative | AddressHeaderFlags::Dadfailed)
        });
        let address = message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V6(v6)) => Some(*v6),
            _ => None,
        });
        let (Some(address), false) = (address, unusable) else {
            continue;
        };
        if !address.is_unicast_link_local() {
            continue;
        }
        if let Some(state) = by_index
            .get(&message.header.index)
            .and_then(|name| links.get_mut(name))
        {
            state.link_local = Some(state.link_local.map_or(address, |a| a.min(address)));
        }
    }
    Ok(links)
}
