//! The worker's hostile knobs for the containment tests: a forged
//! READY=1 from another process group, a setsid escapee, a worker that
//! joins the supervisor's process group.
use std::path::PathBuf;
use std::process;
use std::time::Duration;

use super::Journal;
use super::support;

/// Knobs of a hostile worker (containment tests).
#[derive(clap::Args)]
pub struct Hostile {
    /// In generation 1: start a child that waits until FILE holds a pid,
    /// moves into that pid's process group (failure ignored), sends READY=1
    /// on $NOTIFY_SOCKET and journals `forged pid=P target=T result=R`.
    #[arg(long, value_name = "FILE")]
    forge_ready: Option<PathBuf>,
    /// (internal) be the child of --forge-ready.
    #[arg(long, value_name = "FILE", hide = true)]
    forger: Option<PathBuf>,
    /// Never become ready in generations >= N.
    #[arg(long, value_name = "N")]
    pub never_ready_from_generation: Option<u64>,
    /// At start, start a copy of this worker in a session of its own
    /// (setsid(1)) that ignores TERM and serves the listeners; journals
    /// `escapee pid=P`.
    #[arg(long)]
    setsid_child: bool,
    /// At start, move into the supervisor's process group (journals
    /// `joined pgid=G result=R`).
    #[arg(long)]
    join_supervisor_group: bool,
}

impl Hostile {
    /// Before the listeners are adopted (the copies inherit them as the
    /// worker did). The forger does its part here and exits. The children
    /// are left unwaited on purpose: they are the supervisor's to deal with.
    #[allow(clippy::zombie_processes)]
    pub fn start(&self, journal: &Journal, generation: u64) {
        use std::process::Command;
        if let Some(file) = &self.forger {
            let target = loop {
                match std::fs::read_to_string(file).ok().and_then(|t| t.trim().parse::<i32>().ok()) {
                    Some(pid) => break pid,
                    None => std::thread::sleep(Duration::from_millis(10)),
                }
            };
            let pid = nix::unistd::Pid::from_raw(target);
            let moved = nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), pid);
            let result = moved.map_or_else(|e| e.desc().replace(' ', "-"), |()| "joined".into());
            support::notify_ready();
            journal.log("forged", &[("target", &target.to_string()), ("result", &result)]);
            process::exit(0)
        }
        let me = std::env::current_exe().expect("own path");
        let journal_args = |c: &mut Command| {
            if let Some(path) = std::env::args_os().skip_while(|a| a != "--journal").nth(1) {
                c.arg("--journal").arg(path);
            }
        };
        if let Some(file) = self.forge_ready.as_ref().filter(|_| generation == 1) {
            let mut c = Command::new(&me);
            journal_args(&mut c);
            c.arg("--forger").arg(file);
            c.spawn().expect("start the forger");
        }
        if self.setsid_child {
            let mut c = Command::new("setsid");
            c.arg(&me);
            journal_args(&mut c);
            c.args(["--ignore-term", "forever"]);
            let child = c.spawn().expect("start the escapee");
            journal.log("escapee", &[("child", &child.id().to_string())]);
        }
        if self.join_supervisor_group {
            use nix::unistd::{Pid, getpgid, getppid, setpgid};
            let group = getpgid(Some(getppid())).expect("the supervisor's group");
            let result =
                setpgid(Pid::from_raw(0), group).map_or_else(|e| e.to_string(), |()| "joined".into());
            journal.log("joined", &[("pgid", &group.to_string()), ("result", &result.replace(' ', "-"))]);
        }
    }
}
