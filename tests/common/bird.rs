//! BIRD 2 as the tests and the benchmark run it (bench/harness includes this file): in the
//! foreground, its config, control socket and pid file named after one label in one
//! directory.

use std::path::Path;

/// The files of one BIRD: `DIR/LABEL.conf`, `.ctl` and `.pid`.
pub struct Bird {
    pub config: String,
    pub socket: String,
    pub pidfile: String,
}

impl Bird {
    pub fn new(dir: &Path, label: &str) -> Bird {
        let file = |ending: &str| dir.join(format!("{label}.{ending}")).display().to_string();
        Bird {
            config: file("conf"),
            socket: file("ctl"),
            pidfile: file("pid"),
        }
    }

    /// The command line that runs it in the foreground.
    pub fn command(&self) -> [&str; 8] {
        [
            "bird",
            "-f",
            "-c",
            &self.config,
            "-s",
            &self.socket,
            "-P",
            &self.pidfile,
        ]
    }

    /// The command line that sends it `command` on its control socket.
    pub fn birdc<'a>(&'a self, command: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["birdc", "-s", &self.socket];
        args.extend_from_slice(command);
        args
    }
}
