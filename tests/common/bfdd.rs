//! FRR's bfdd as a BFD peer in a node namespace (recipe in shared/design/peers.md): it runs
//! without zebra when each peer names its local address; its files belong to user `frr`.

use std::path::PathBuf;
use std::time::Duration;

use super::{Lab, sh, wait_for};

pub const BFDD: &str = "/usr/lib/frr/bfdd";

/// A lab for a test that needs bfdd (Debian's frr) beside `needs`; `None` after a skip.
pub fn lab_with_bfdd(test: &str, needs: &[&str]) -> Option<Lab> {
    if !std::path::Path::new(BFDD).exists() {
        super::skip(
            test,
            &format!("{BFDD} is not installed (Debian package frr; scripts/deps installs it)"),
        );
        return None;
    }
    let mut all = vec!["vtysh"];
    all.extend_from_slice(needs);
    super::lab_or_skip(test, &all)
}

/// bfdd in `ns`, peering with the host from the node's addresses, 300 ms x 3.
pub struct Bfdd {
    ns: String,
    dir: PathBuf,
}

impl Bfdd {
    pub fn config(peers: &[(&str, &str)]) -> String {
        let mut c = String::from("bfd\n");
        for (peer, local) in peers {
            c += &format!(
                " peer {peer} local-address {local}\n  receive-interval 300\n  transmit-interval 300\n  detect-multiplier 3\n !\n"
            );
        }
        c + "!\n"
    }

    pub fn start(lab: &mut Lab, ns: &str, peers: &[(&str, &str)]) -> Bfdd {
        let dir = lab.dir.join(format!("bfdd-{ns}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bfdd.conf"), Self::config(peers)).unwrap();
        let bfdd = Bfdd {
            ns: ns.to_string(),
            dir,
        };
        bfdd.run(lab);
        bfdd
    }

    pub fn run(&self, lab: &mut Lab) {
        sh(&["chown", "-R", "frr:frr", self.dir.to_str().unwrap()]);
        let conf = self.dir.join("bfdd.conf");
        let pid = self.dir.join("bfdd.pid");
        lab.spawn(
            &self.ns,
            "bfdd",
            &[
                BFDD,
                "-f",
                conf.to_str().unwrap(),
                "-i",
                pid.to_str().unwrap(),
                "--vty_socket",
                self.dir.to_str().unwrap(),
                "-u",
                "frr",
                "-g",
                "frr",
            ],
        );
        wait_for("bfdd's vty socket", Duration::from_secs(10), || {
            self.try_vtysh(lab, &["show bfd peers brief"])
        });
    }

    pub fn try_vtysh(&self, lab: &Lab, commands: &[&str]) -> Option<String> {
        let mut args = vec!["vtysh", "--vty_socket", self.dir.to_str().unwrap()];
        for c in commands {
            args.extend_from_slice(&["-c", c]);
        }
        let out = lab.try_exec(&self.ns, &args);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn vtysh(&self, lab: &Lab, commands: &[&str]) -> String {
        self.try_vtysh(lab, commands)
            .unwrap_or_else(|| panic!("vtysh {commands:?} failed"))
    }

    /// bfdd's status of its session with `peer` ("up", "down", "shutdown", ...).
    pub fn status_of(&self, lab: &Lab, peer: &str) -> Option<String> {
        let out = self.try_vtysh(lab, &["show bfd peers brief"])?;
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.len() >= 4 && w[2] == peer)
            .map(|w| w[3].to_string())
    }

    pub fn peer_command(&self, lab: &Lab, peer: &str, local: &str, command: &str) {
        let peer_line = format!("peer {peer} local-address {local}");
        self.vtysh(lab, &["configure terminal", "bfd", &peer_line, command]);
    }
}
