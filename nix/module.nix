# services.ciliumPeer: renders /etc/cilium-peer/config.json from `settings` (validated at
# build time with `cilium-peer check`), runs cilium-peer.service hardened with three
# capabilities, and sets up what the host around it needs: firewall, forwarding sysctls and
# the policy-routing rule for a non-main kernel table.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    literalExpression
    literalMD
    mkEnableOption
    mkIf
    mkOption
    types
    ;

  cfg = config.services.ciliumPeer;

  settingsFormat = pkgs.formats.json { };

  configPath = "/etc/cilium-peer/config.json";
  runtimeDirectory = "/run/cilium-peer";
  credentialsDirectory = "/run/credentials/cilium-peer.service";

  asNumber = types.ints.between 1 4294967295;

  ipv4Address = types.strMatching "([0-9]{1,3}\\.){3}[0-9]{1,3}";

  # An option inside `settings`; `null` means "not set": the key is left out of the file and
  # the daemon applies its own default.
  optionalSetting =
    type: description:
    mkOption {
      type = types.nullOr type;
      default = null;
      inherit description;
    };

  raOptions = {
    freeformType = settingsFormat.type;
    options = {
      enable = optionalSetting types.bool ''
        Send router advertisements on this bridge. Unset: on when the bridge has an IPv6
        prefix.
      '';
      min_interval = optionalSetting types.ints.positive ''
        MinRtrAdvInterval (RFC 4861), in seconds. Unset: the daemon's default.
      '';
      max_interval = optionalSetting types.ints.positive ''
        MaxRtrAdvInterval (RFC 4861), in seconds. Unset: the daemon's default.
      '';
      rdnss = optionalSetting (types.listOf types.str) ''
        IPv6 addresses of recursive DNS servers advertised in an RDNSS option (RFC 8106).
      '';
      dnssl = optionalSetting (types.listOf types.str) ''
        DNS search domains advertised in a DNSSL option (RFC 8106).
      '';
    };
  };

  bridgeOptions = {
    freeformType = settingsFormat.type;
    options = {
      prefixes = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [
          "192.0.2.0/24"
          "2001:db8:1::/64"
        ];
        description = ''
          The bridge's on-link IPv4 and IPv6 prefixes: peers inside them are directly
          connected on this bridge; the IPv6 ones are advertised in router advertisements.
        '';
      };
      ra = mkOption {
        type = types.submodule raOptions;
        default = { };
        description = ''
          IPv6 router advertisements on this bridge. Keys not listed here are passed to the
          daemon as they are; see the project's documentation for all of them.
        '';
      };
    };
  };

  importOptions = {
    freeformType = settingsFormat.type;
    options = {
      prefix = mkOption {
        type = types.str;
        example = "10.244.0.0/16";
        description = "A prefix whose routes (it and more specific ones) are accepted.";
      };
      max_length = mkOption {
        type = types.ints.between 0 128;
        example = 32;
        description = "The longest prefix length accepted inside `prefix`.";
      };
    };
  };

  # Unset (null) keys are left out of the config: the daemon's defaults apply.
  livenessOptions = {
    options = {
      enable = mkOption {
        type = types.nullOr types.bool;
        default = null;
        description = ''
          Watch each node on its bridge and take its routes out of the table the moment it
          stops answering (on by the daemon's default).
        '';
      };
      interval_ms = mkOption {
        type = types.nullOr (types.ints.between 50 60000);
        default = null;
        description = "One probe per node every this many milliseconds (default 400).";
      };
      multiplier = mkOption {
        type = types.nullOr (types.ints.between 1 255);
        default = null;
        description = "Unanswered probes in a row that make a node unreachable (default 3).";
      };
    };
  };

  bfdOptions = {
    options = {
      enable = mkOption {
        type = types.nullOr types.bool;
        default = null;
        description = ''
          BFD (RFC 5880/5881 single hop) with the group's nodes; BFD Down takes a node's
          routes out at once (off by the daemon's default).
        '';
      };
      min_tx_ms = mkOption {
        type = types.nullOr (types.ints.between 10 60000);
        default = null;
        description = "Desired Min TX Interval once Up, in milliseconds (default 300).";
      };
      min_rx_ms = mkOption {
        type = types.nullOr (types.ints.between 10 60000);
        default = null;
        description = "Required Min RX Interval, in milliseconds (default 300).";
      };
      multiplier = mkOption {
        type = types.nullOr (types.ints.between 2 255);
        default = null;
        description = "Detect Mult (default 3).";
      };
      passive = mkOption {
        type = types.nullOr types.bool;
        default = null;
        description = "Send nothing until the node has sent (default false).";
      };
    };
  };

  neighborOptions = {
    freeformType = settingsFormat.type;
    options = {
      liveness = mkOption {
        type = types.submodule livenessOptions;
        default = { };
        description = "Liveness of the group's nodes on their bridge.";
      };
      bfd = mkOption {
        type = types.submodule bfdOptions;
        default = { };
        description = "BFD with the group's nodes.";
      };
      name = mkOption {
        type = types.str;
        example = "cilium";
        description = "Session name prefix (like BIRD's `dynamic name`).";
      };
      range = mkOption {
        type = types.str;
        example = "2001:db8:1::/64";
        description = "Accept passive sessions from any address in this prefix.";
      };
      asn = mkOption {
        type = asNumber;
        example = 65100;
        description = "The peers' AS; equal to the local `asn` means iBGP.";
      };
      password_file = mkOption {
        type = types.nullOr (types.strMatching "/.+");
        default = null;
        example = "/run/secrets/cilium-bgp-md5";
        description = ''
          File holding the TCP-MD5 key for the whole range, as an absolute path string (a
          Nix path literal would copy the secret into the world-readable store, so it is
          refused). The file may be readable by root only: the module loads it with
          systemd's `LoadCredential=` and writes the credential's path
          (`${credentialsDirectory}/neighbor-<index>-password`) into config.json, so the
          unprivileged service user can read it. A path already inside that directory is
          kept as it is. The key is read when the service starts: after changing the
          file's contents, restart the service.
        '';
      };
      max_prefixes = optionalSetting types.ints.positive ''
        Per-session limit on received prefixes; past it the session is closed with a Cease.
        Unset: no limit.
      '';
      max_prefixes_hold_s = mkOption {
        type = types.ints.between 0 86400;
        default = 60;
        description = ''
          After a session was closed for max_prefixes, connections from that node are
          refused for this many seconds, so that it does not flap.
        '';
      };
      ttl_security = mkOption {
        type = types.bool;
        default = false;
        description = ''
          GTSM (RFC 5082): accept only packets with TTL/hop limit 255 and send with 255.
          Cilium's iBGP sends the kernel's default TTL, so leave it off for Cilium.
        '';
      };
      import = mkOption {
        type = types.listOf (types.submodule importOptions);
        default = [ ];
        example = [
          {
            prefix = "10.244.0.0/16";
            max_length = 32;
          }
        ];
        description = ''
          Prefixes accepted from this range. Empty: any prefix that passes the built-in
          safety rules (never a default route, a bridge prefix, link-local, multicast or
          loopback space, or a next hop other than the peer itself).
        '';
      };
    };
  };

  settingsOptions = {
    freeformType = settingsFormat.type;
    options = {
      router_id = mkOption {
        type = ipv4Address;
        example = "192.0.2.1";
        description = "BGP identifier, an IPv4 dotted quad.";
      };
      asn = mkOption {
        type = asNumber;
        example = 65100;
        description = "The local AS (4-octet range).";
      };
      listen = mkOption {
        type = types.listOf types.str;
        default = [ "[::]:179" ];
        example = [ "[fe80::1%vmbr-dev]:179" ];
        description = ''
          Socket addresses to accept BGP on. `[::]:179` takes IPv4 and IPv6; a link-local
          address carries its interface.
        '';
      };
      kernel = mkOption {
        type = types.submodule {
          freeformType = settingsFormat.type;
          options = {
            table = mkOption {
              type = types.ints.between 1 4294967295;
              default = 254;
              example = 1336;
              description = ''
                Kernel routing table for learned routes (254 is main). For another table,
                see {option}`services.ciliumPeer.routingPolicy`.
              '';
            };
            persist = mkOption {
              type = types.bool;
              default = true;
              description = ''
                Leave installed routes in place when the daemon exits; the next start adopts
                them and removes only what is stale.
              '';
            };
            multipath = mkOption {
              type = types.bool;
              default = true;
              description = "Equal-best paths from several peers become one ECMP route.";
            };
            protocol = mkOption {
              type = types.ints.between 5 255;
              default = 214;
              description = ''
                The routing protocol number our routes carry. The module names it
                `cilium-peer` in /etc/iproute2/rt_protos.d, so `ip route` shows
                `proto cilium-peer`. Routes in the table under 196 (the default before) are
                adopted and moved to this number at start (`kernel.adopt_protocols`).
              '';
            };
          };
        };
        default = { };
        description = "Where and how learned routes are installed.";
      };
      bridges = mkOption {
        type = types.attrsOf (types.submodule bridgeOptions);
        default = { };
        example = literalExpression ''
          {
            "vmbr-dev" = {
              prefixes = [ "192.0.2.0/24" "2001:db8:1::/64" ];
              ra.rdnss = [ "2001:db8:1::53" ];
            };
          }
        '';
        description = ''
          Bridges (any interface name, hyphens included) whose guests peer with this host,
          keyed by interface name.
        '';
      };
      neighbors = mkOption {
        type = types.listOf (types.submodule neighborOptions);
        default = [ ];
        description = "Ranges from which passive BGP sessions are accepted.";
      };
      control_socket = mkOption {
        type = types.strMatching "${runtimeDirectory}/.+";
        default = "${runtimeDirectory}/control.sock";
        description = ''
          Path of the control socket that `cilium-peer show` talks to. It must lie in
          `${runtimeDirectory}`, the only directory the service may write.
        '';
      };
    };
  };

  # Leaves out unset (null) keys so the daemon applies its own defaults.
  withoutNulls =
    value:
    if builtins.isAttrs value then
      lib.mapAttrs (_: withoutNulls) (lib.filterAttrs (_: v: v != null) value)
    else if builtins.isList value then
      map withoutNulls value
    else
      value;

  credentialName = index: "neighbor-${toString index}-password";

  inCredentialsDirectory = lib.hasPrefix "${credentialsDirectory}/";

  needsCredential =
    neighbor: neighbor.password_file != null && !inCredentialsDirectory neighbor.password_file;

  passwordCredentials = lib.concatLists (
    lib.imap0 (
      index: neighbor:
      lib.optional (needsCredential neighbor) "${credentialName index}:${neighbor.password_file}"
    ) cfg.settings.neighbors
  );

  renderedSettings = withoutNulls (
    cfg.settings
    // {
      neighbors = lib.imap0 (
        index: neighbor:
        if needsCredential neighbor then
          neighbor // { password_file = "${credentialsDirectory}/${credentialName index}"; }
        else
          neighbor
      ) cfg.settings.neighbors;
    }
  );

  generatedConfig = settingsFormat.generate "cilium-peer-config.json" renderedSettings;

  canRunPackage = pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform;

  configFile =
    if cfg.checkConfig && canRunPackage then
      pkgs.runCommand "cilium-peer-config-checked.json" { preferLocalBuild = true; } ''
        ${cfg.package}/bin/cilium-peer check --config ${generatedConfig}
        cp ${generatedConfig} $out
      ''
    else
      generatedConfig;

  bridgeNames = lib.attrNames cfg.settings.bridges;

  # The Cilium side (docs/cilium.md), built by running `cilium-peer cilium-manifests`: from
  # the settings as given (a password_file keeps the path the key is made from, not the
  # service's credential) and the bridges' addresses in networking.interfaces.
  manifestsSettings = settingsFormat.generate "cilium-peer-manifests-config.json" (
    withoutNulls cfg.settings
  );

  noAddresses = {
    ipv4.addresses = [ ];
    ipv6.addresses = [ ];
  };

  bridgeAddresses = lib.concatMap (
    bridge:
    let
      interface = config.networking.interfaces.${bridge} or noAddresses;
    in
    map (entry: entry.address) (interface.ipv4.addresses ++ interface.ipv6.addresses)
  ) bridgeNames;

  addressFlags = map (address: "--address ${lib.escapeShellArg address}") bridgeAddresses;

  ciliumManifests = pkgs.runCommand "cilium-manifests.yaml" { preferLocalBuild = true; } ''
    ${cfg.package}/bin/cilium-peer cilium-manifests --config ${manifestsSettings} \
      --api ${cfg.ciliumManifestsApi} ${toString addressFlags} > $out
  '';

  # "[::]:179" -> 179, "0.0.0.0:1179" -> 1179, "[fe80::1%vmbr-dev]:179" -> 179
  portOf = address: lib.toInt (lib.last (lib.splitString ":" address));

  listenPorts = lib.unique (map portOf cfg.settings.listen);

  forwardingDefault = lib.mkOverride 900;

  # sysctl keys write a dot in an interface name (a VLAN such as eth0.100) as a slash.
  sysctlInterface = lib.replaceStrings [ "." ] [ "/" ];

  table = toString cfg.settings.kernel.table;

  priority = toString cfg.routingPolicy.priority;

  routingPolicyScript = pkgs.writeShellScript "cilium-peer-routing-policy" ''
    # Adds "lookup ${table}" at priority ${priority} for IPv4 and IPv6; a rule that is
    # already there ("File exists") is fine.
    add_rule() {
      if ! output=$(${pkgs.iproute2}/bin/ip "$1" rule add priority ${priority} lookup ${table} 2>&1)
      then
        case "$output" in
          *"File exists"*) ;;
          *) echo "ip $1 rule add: $output" >&2; exit 1 ;;
        esac
      fi
    }
    add_rule -4
    add_rule -6
  '';

  capabilities = [
    "CAP_NET_ADMIN"
    "CAP_NET_RAW"
    "CAP_NET_BIND_SERVICE"
  ];
in
{
  options.services.ciliumPeer = {
    enable = mkEnableOption "cilium-peer (BGP for Cilium nodes, RAs on bridges)";

    # `pkgs.cilium-peer`: the flake's overlays.default adds it (nixosModules.default applies
    # that overlay).
    package = lib.mkPackageOption pkgs "cilium-peer" { };

    settings = mkOption {
      type = types.submodule settingsOptions;
      default = { };
      example = literalExpression ''
        {
          router_id = "192.0.2.1";
          asn = 65100;
          kernel.table = 1336;
          bridges."vmbr-dev".prefixes = [ "192.0.2.0/24" "2001:db8:1::/64" ];
          neighbors = [
            {
              name = "cilium";
              range = "2001:db8:1::/64";
              asn = 65100;
              import = [
                { prefix = "10.244.0.0/16"; max_length = 32; }
                { prefix = "fd00:ff00::/32"; max_length = 128; }
              ];
            }
          ];
        }
      '';
      description = ''
        The contents of ${configPath}. Keys are the config file's own (see the project's
        documentation); the ones below are typed and documented here, any other key is
        passed through as it is and checked by `cilium-peer check` at build time. Options
        left unset (`null`) are left out of the file.
      '';
    };

    checkConfig = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Validate the rendered config with `cilium-peer check` while building the system, so
        that a bad config fails `nixos-rebuild` rather than the running service. Skipped
        when the build platform cannot run the host's binary (cross builds).
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Open the BGP port(s) of `settings.listen` (TCP 179 by default) on the configured
        bridges only, through {option}`networking.firewall.interfaces`.
      '';
    };

    forwarding = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Turn on IPv4 and IPv6 forwarding, which the host needs to route between its
        bridges and the pod CIDRs it learns: `net.ipv4.conf.all.forwarding` and
        `net.ipv6.conf.all.forwarding`, and forwarding on each bridge, each at a priority
        that any plain definition elsewhere overrides. With IPv6 forwarding on, the kernel
        ignores router advertisements on interfaces whose `accept_ra` is 1: an uplink
        configured by SLAAC needs `accept_ra = 2`.
      '';
    };

    routingPolicy = {
      enable = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Add the policy-routing rules (`ip -4 rule` and `ip -6 rule`)
          `priority <priority> lookup <settings.kernel.table>`, so that the host itself uses
          the routes installed in a non-main table. They are added before the daemon starts
          and are left in place when it stops, like the routes (`kernel.persist`); remove
          them by hand (`ip rule del priority <priority>`) after disabling this.
        '';
      };
      priority = mkOption {
        type = types.ints.between 1 32765;
        default = 30000;
        description = ''
          Priority of the rule: below main's 32766, so that learned routes are found before
          main's default route.
        '';
      };
    };

    ciliumManifests = mkOption {
      type = types.package;
      readOnly = true;
      defaultText = literalMD "the output of `cilium-peer cilium-manifests`";
      description = ''
        The Cilium BGP control plane's manifests (YAML) that peer the nodes on the configured
        bridges with this host, built by `cilium-peer cilium-manifests` from `settings` and
        the bridges' addresses in {option}`networking.interfaces` (see the project's
        docs/cilium.md). Built only when something refers to it, e.g.
        `nix build .#nixosConfigurations.HOST.config.services.ciliumPeer.ciliumManifests`,
        to hand to the cluster's GitOps; the build fails, saying why, when the manifests
        could not work (a bridge without an address of its neighbor range's family, ...).
      '';
    };

    ciliumManifestsApi = mkOption {
      type = types.enum [
        "v2"
        "v2alpha1"
      ];
      default = "v2";
      description = ''
        The API version of {option}`services.ciliumPeer.ciliumManifests`: `v2` for Cilium 1.18
        and later, `v2alpha1` for Cilium 1.16 and 1.17.
      '';
    };

    renderedSettings = mkOption {
      type = types.attrsOf types.unspecified;
      internal = true;
      readOnly = true;
      description = "The settings as written to ${configPath}.";
    };
  };

  config = lib.mkMerge [
    {
      services.ciliumPeer = {
        inherit renderedSettings ciliumManifests;
      };
    }

    (mkIf cfg.enable {
      assertions = [
        {
          assertion =
            !cfg.routingPolicy.enable
            || !(lib.elem cfg.settings.kernel.table [
              253
              254
              255
            ]);
          message = ''
            services.ciliumPeer.routingPolicy needs settings.kernel.table to be a table other
            than main (254), default (253) and local (255); it is ${table}.
          '';
        }
      ];

      warnings = lib.optional (cfg.openFirewall && bridgeNames == [ ]) ''
        services.ciliumPeer.openFirewall is set but settings.bridges is empty: no port is opened.
      '';

      environment.etc."cilium-peer/config.json".source = configFile;

      # `ip route` prints `proto cilium-peer` (iproute2 reads rt_protos.d/*.conf). NixOS's
      # networking.iproute2 writes only rt_tables.d/nixos.conf next to it.
      environment.etc."iproute2/rt_protos.d/cilium-peer.conf".text = ''
        ${toString cfg.settings.kernel.protocol} cilium-peer
      '';

      environment.systemPackages = [ cfg.package ];

      networking.firewall.interfaces = mkIf cfg.openFirewall (
        lib.genAttrs bridgeNames (_: {
          allowedTCPPorts = listenPorts;
        })
      );

      # Above NixOS's own mkDefault for net.ipv4.conf.all.forwarding (proxyARP), below any
      # plain definition and networking.nat's.
      boot.kernel.sysctl = mkIf cfg.forwarding (
        lib.mapAttrs (_: forwardingDefault) (
          {
            "net.ipv4.conf.all.forwarding" = true;
            "net.ipv6.conf.all.forwarding" = true;
          }
          // lib.listToAttrs (
            lib.concatMap (bridge: [
              (lib.nameValuePair "net.ipv4.conf.${sysctlInterface bridge}.forwarding" true)
              (lib.nameValuePair "net.ipv6.conf.${sysctlInterface bridge}.forwarding" true)
            ]) bridgeNames
          )
        )
      );

      systemd.services.cilium-peer = {
        description = "cilium-peer: BGP for Cilium nodes and router advertisements on bridges";
        wantedBy = [ "multi-user.target" ];
        after = [ "network.target" ];

        # A config-only change reloads (SIGHUP, sessions kept); any other change to the unit
        # (a new package, a new credential) restarts it in one restart job, not stop+start,
        # so that RestartKillSignal applies (see below).
        reloadTriggers = [ configFile ];
        stopIfChanged = false;

        serviceConfig = {
          # READY=1 once listening; on SIGHUP: RELOADING=1 + MONOTONIC_USEC, then READY=1.
          Type = "notify-reload";
          ReloadSignal = "SIGHUP";
          ExecStartPre = lib.optional cfg.routingPolicy.enable routingPolicyScript;
          ExecStart = "${cfg.package}/bin/cilium-peer run --config ${configPath}";
          Restart = "on-failure";
          RestartSec = "2s";
          # The event loop itself sends WATCHDOG=1 every 15 s; a stuck loop is restarted.
          WatchdogSec = "30s";

          # stop (systemctl stop, shutdown, module removed): SIGTERM, the daemon sends final
          # RAs with router lifetime 0 so guests drop it as their default router.
          # restart (systemctl restart, nixos-rebuild switch with a new package): SIGUSR2,
          # the daemon exits without final RAs and guests keep their default route across
          # the restart.
          KillSignal = "SIGTERM";
          RestartKillSignal = "SIGUSR2";
          TimeoutStopSec = "30s";

          LoadCredential = passwordCredentials;

          DynamicUser = true;
          RuntimeDirectory = "cilium-peer";
          RuntimeDirectoryMode = "0755";
          UMask = "0077";

          CapabilityBoundingSet = capabilities;
          AmbientCapabilities = capabilities;
          NoNewPrivileges = true;
          # Route writes need CAP_NET_ADMIN in the host's user namespace.
          PrivateUsers = false;
          RestrictAddressFamilies = [
            "AF_NETLINK"
            "AF_INET"
            "AF_INET6"
            "AF_UNIX"
          ];

          ProtectSystem = "strict";
          ProtectHome = true;
          PrivateTmp = true;
          PrivateDevices = true;
          ProtectClock = true;
          ProtectHostname = true;
          ProtectKernelLogs = true;
          ProtectKernelModules = true;
          ProtectKernelTunables = true;
          ProtectControlGroups = true;
          ProtectProc = "invisible";
          RestrictNamespaces = true;
          RestrictRealtime = true;
          RestrictSUIDSGID = true;
          LockPersonality = true;
          MemoryDenyWriteExecute = true;
          RemoveIPC = true;
          SystemCallArchitectures = "native";
          SystemCallFilter = [
            "@system-service"
            "~@privileged"
          ];
          SystemCallErrorNumber = "EPERM";
        };
      };
    })
  ];
}
