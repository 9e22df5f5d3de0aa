//! The command line: parses arguments and hands over to the library.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use cilium_peer::cilium::manifests::Api;
use cilium_peer::config::{self, Config};
use cilium_peer::control::Request;

#[derive(Parser)]
#[command(
    name = "cilium-peer",
    version,
    about = "Passive dual-stack BGP for Cilium into the kernel FIB, with IPv6 router advertisements"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Validate a config file: exit 0 when valid, 1 with every error on stderr.
    Check {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Ask the running daemon what it is doing.
    Show {
        what: Show,
        /// One JSON document on stdout instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = config::DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
    },
    /// Print the Cilium BGP control plane's manifests (YAML) that peer the nodes on the
    /// configured bridges with this host; refuse, saying why, what could not work.
    CiliumManifests {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// cilium.io API version: v2 (Cilium 1.18 and later) or v2alpha1 (1.16, 1.17).
        #[arg(long, value_enum, default_value = "v2")]
        api: ApiVersion,
        /// Only the neighbor groups on this bridge.
        #[arg(long)]
        bridge: Option<String>,
        /// The host's address on a bridge (repeatable); without it, read from the kernel.
        #[arg(long = "address", value_name = "IP")]
        addresses: Vec<IpAddr>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ApiVersion {
    V2,
    V2alpha1,
}

#[derive(Clone, Copy, ValueEnum)]
enum Show {
    Peers,
    Routes,
    Bridges,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(_) => {
                eprintln!("{}: valid", config.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{}: invalid\n{errors}", config.display());
                ExitCode::from(1)
            }
        },
        Command::Run { config: path } => match Config::load(&path) {
            Ok(config) => cilium_peer::daemon::run(path, config),
            Err(errors) => {
                eprintln!("{}: invalid\n{errors}", path.display());
                ExitCode::from(1)
            }
        },
        Command::Show { what, json, socket } => {
            let request = match what {
                Show::Peers => Request::Peers,
                Show::Routes => Request::Routes,
                Show::Bridges => Request::Bridges,
            };
            cilium_peer::control::show(&socket, request, json)
        }
        Command::CiliumManifests {
            config,
            api,
            bridge,
            addresses,
        } => {
            let api = match api {
                ApiVersion::V2 => Api::V2,
                ApiVersion::V2alpha1 => Api::V2alpha1,
            };
            cilium_peer::cilium::command(&config, api, bridge.as_deref(), &addresses)
        }
    }
}
