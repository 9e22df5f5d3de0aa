//! `cilium-peer cilium-manifests`: the Cilium BGP control plane's side of the sessions,
//! written from the same config. This module is the IO around the pure `manifests`: it
//! reads the host's bridge addresses from the kernel (or takes them from `--address`),
//! prints the YAML on stdout or every refusal on stderr. It never opens a password file.

pub mod manifests;
pub mod yaml;

use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, ConfigError};
use manifests::{Api, HostAddresses, Request};

/// Runs the subcommand: the config at `path`, for API `api`, the groups on `bridge` (all
/// when `None`), with the host's addresses from `addresses` (the kernel's when empty).
pub fn command(path: &Path, api: Api, bridge: Option<&str>, addresses: &[IpAddr]) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}: invalid\n{errors}", path.display());
            return ExitCode::from(1);
        }
    };
    let host = if addresses.is_empty() {
        match kernel_addresses(&config) {
            Ok(host) => host,
            Err(error) => {
                eprintln!("cannot read the bridges' addresses from the kernel: {error}");
                return ExitCode::from(1);
            }
        }
    } else {
        match HostAddresses::given(&config, addresses) {
            Ok(host) => host,
            Err(errors) => return refused(path, &errors),
        }
    };
    let request = Request {
        api,
        bridge,
        addresses: &host,
    };
    match manifests::plan(&config, &request) {
        Ok(manifests) => {
            print!("{}", manifests.render());
            ExitCode::SUCCESS
        }
        Err(errors) => refused(path, &errors),
    }
}

fn refused(path: &Path, errors: &[ConfigError]) -> ExitCode {
    eprintln!(
        "{}: no Cilium manifests, as they could not work:",
        path.display()
    );
    for error in errors {
        eprintln!("{error}");
    }
    ExitCode::from(1)
}

/// The addresses the kernel shows on the configured bridges (`getifaddrs`).
fn kernel_addresses(config: &Config) -> nix::Result<HostAddresses> {
    let pairs: Vec<(String, IpAddr)> = nix::ifaddrs::getifaddrs()?
        .filter_map(|ifaddr| {
            let address = ifaddr.address?;
            let ip = if let Some(v4) = address.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(address.as_sockaddr_in6()?.ip())
            };
            Some((ifaddr.interface_name, ip))
        })
        .collect();
    Ok(HostAddresses::from_interfaces(config, pairs))
}
