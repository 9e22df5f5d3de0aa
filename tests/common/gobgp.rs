//! GoBGP's config file as Cilium's embedded speaker writes it (peers.md): shared by the
//! namespace tests and the failover benchmark.

/// GoBGP configured as Cilium's embedded speaker (see peers.md).
pub struct GoBgpNode {
    pub router_id: String,
    pub asn: u32,
    pub peer_asn: u32,
    pub neighbor: String,
    pub local_address: Option<String>,
    pub graceful_restart: bool,
    /// The restart time it advertises (GoBGP's and Cilium's default: 120 s).
    pub restart_time: u16,
    /// Starts with the session administratively down (`gobgp neighbor ADDR enable` starts
    /// it), so that routes can be added before the session comes up.
    pub admin_down: bool,
    pub hold_time: u32,
    /// TCP-MD5 key (`auth-password`).
    pub auth_password: Option<&'static str>,
    /// GTSM: send with TTL 255, accept only 255 (`ttl-security`).
    pub ttl_security: bool,
}

impl GoBgpNode {
    pub fn cilium(router_id: &str, neighbor: &str, local: &str) -> Self {
        GoBgpNode {
            router_id: router_id.to_string(),
            asn: 65100,
            peer_asn: 65100,
            neighbor: neighbor.to_string(),
            local_address: Some(local.to_string()),
            graceful_restart: true,
            restart_time: 120,
            admin_down: false,
            hold_time: 90,
            auth_password: None,
            ttl_security: false,
        }
    }

    pub fn toml(&self) -> String {
        let local = self
            .local_address
            .as_ref()
            .map(|a| format!("  [neighbors.transport.config]\n    local-address = \"{a}\"\n"))
            .unwrap_or_default();
        let gr = if self.graceful_restart {
            format!(
                "  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = {}\n    notification-enabled = true\n",
                self.restart_time
            )
        } else {
            String::new()
        };
        let admin_down = if self.admin_down {
            "    admin-down = true\n"
        } else {
            ""
        };
        let auth = self
            .auth_password
            .map(|p| format!("    auth-password = \"{p}\"\n"))
            .unwrap_or_default();
        let ttl = if self.ttl_security {
            "  [neighbors.ttl-security.config]\n    enabled = true\n    ttl-min = 255\n"
        } else {
            ""
        };
        let family_gr = if self.graceful_restart {
            "    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n"
        } else {
            ""
        };
        format!(
            r#"[global.config]
  as = {asn}
  router-id = "{rid}"
  port = -1
[global.apply-policy.config]
  import-policy-list = ["allow-local"]
  default-import-policy = "reject-route"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{neighbor}"
    peer-as = {peer_asn}
{admin_down}{auth}{local}{ttl}  [neighbors.timers.config]
    connect-retry = 1
    hold-time = {hold}
    keepalive-interval = {keepalive}
{gr}  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
{family_gr}  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
{family_gr}[[policy-definitions]]
  name = "allow-local"
  [[policy-definitions.statements]]
    [policy-definitions.statements.conditions.bgp-conditions]
      route-type = "local"
    [policy-definitions.statements.actions]
      route-disposition = "accept-route"
"#,
            asn = self.asn,
            rid = self.router_id,
            neighbor = self.neighbor,
            peer_asn = self.peer_asn,
            hold = self.hold_time,
            keepalive = (self.hold_time / 3).max(1),
        )
    }
}
