//! The verify run: the new binary, opened before it runs, reads the state
//! record as a child (`BINARY --verify-upgrade-state`, record on stdin)
//! and must say it can take over within `VERIFY_TIMEOUT`. The loop never
//! waits for it: its exit comes as SIGCHLD, its deadline as a tick.
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::{VERIFY_OK, VERIFY_STATE, VERIFY_TIMEOUT, VERSION, memfd};
use crate::error::{Error, Result, io_text};
use crate::machine::event::ExitStatus;
use crate::supervisor::Supervisor;
use crate::supervisor::control::RequestId;
use crate::wire::env::HANDOVER_UPGRADE_STATE;

/// Of a verify run's output, at most this much is read.
const MAX_OUTPUT: usize = 64 * 1024;

/// Requests for one binary, and when the first came.
pub(super) struct Asked {
    pub(super) binary: PathBuf,
    /// The binary's file, open since before the verify run: what is executed.
    pub(super) file: OwnedFd,
    /// Each with whether it waits for the new image.
    pub(super) requests: Vec<(RequestId, bool)>,
    pub(super) at: Instant,
}

pub(super) struct Verifying {
    pub(super) asked: Asked,
    pub(super) pid: i32,
    out: File,
    err: File,
    pub(super) deadline: Instant,
    /// Killed for taking too long: its exit is only collected.
    pub(super) abandoned: bool,
}

pub(super) struct Verified {
    pub(super) asked: Asked,
    /// The version the new binary reported.
    pub(super) to: String,
}

/// Whether the path asked for still names the file opened before the
/// verify run (the one that answered, and the one to execute).
fn still_the_same(asked: &Asked) -> Result<()> {
    let identity = |st: nix::sys::stat::FileStat| (st.st_dev, st.st_ino);
    let opened = nix::sys::stat::fstat(&asked.file).map(identity);
    let named = nix::sys::stat::stat(&asked.binary).map(identity);
    let changed = match (opened, named) {
        (Ok(opened), Ok(named)) if opened == named => return Ok(()),
        (_, Err(e)) => format!("changed while it was checked ({})", io_text(&io::Error::from(e))),
        _ => "was replaced while it was checked".to_string(),
    };
    Err(Error::runtime(format!("{} {changed}; ask again", asked.binary.display())))
}

/// A pipe end to read a verify run's output from, without blocking.
fn nonblocking(fd: impl Into<OwnedFd>) -> io::Result<File> {
    let fd: OwnedFd = fd.into();
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok(File::from(fd))
}

/// What a pipe holds now, at most `MAX_OUTPUT` bytes.
fn read_now(file: &mut File) -> String {
    let mut bytes = Vec::new();
    let _ = file.take(MAX_OUTPUT as u64).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Supervisor {
    /// An upgrade was asked for: answered at once when it cannot be,
    /// else joined to the one under way or started with a verify run.
    pub(in crate::supervisor) fn upgrade_requested(
        &mut self,
        id: RequestId,
        binary: Option<String>,
        wait: bool,
    ) {
        let binary = binary.map_or_else(|| self.upgrades.binary.clone(), PathBuf::from);
        if self.machine.stopping() {
            return self.refuse_upgrade(&[(id, wait)], "the supervisor is stopping");
        }
        let under_way = (self.upgrades.verifying.as_mut().filter(|v| !v.abandoned).map(|v| &mut v.asked))
            .or(self.upgrades.verified.as_mut().map(|v| &mut v.asked));
        if let Some(asked) = under_way {
            if asked.binary == binary {
                asked.requests.push((id, wait));
                return;
            }
            let text =
                format!("an upgrade to {} is under way; ask again when it is done", asked.binary.display());
            return self.refuse_upgrade(&[(id, wait)], &text);
        }
        let now = Instant::now();
        let what = crate::wire::event::What::UpgradeAsked { binary: binary.display().to_string() };
        self.log.said(what, None, Vec::new(), &format!("upgrade asked for: checking {}", binary.display()));
        let flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
        let file = match nix::fcntl::open(&binary, flags, nix::sys::stat::Mode::empty()) {
            Ok(file) => file,
            Err(e) => {
                let why = format!("cannot run {}: {}", binary.display(), io_text(&io::Error::from(e)));
                return self.refuse_upgrade(&[(id, wait)], &why);
            }
        };
        let asked = Asked { binary, file, requests: vec![(id, wait)], at: now };
        match self.start_verify(&asked.binary, now) {
            Ok((pid, out, err)) => {
                let deadline = now + VERIFY_TIMEOUT;
                self.upgrades.verifying =
                    Some(Verifying { asked, pid, out, err, deadline, abandoned: false });
            }
            Err(why) => self.refuse_upgrade(&asked.requests, &why.message),
        }
    }

    /// Runs `binary` as the exec would (the supervisor's command line and
    /// environment), with `HANDOVER_UPGRADE_STATE=verify` and this
    /// moment's record on stdin: a wrapper script that would exit instead
    /// of executing handover does so here, and is refused. Its pid and its
    /// stdout and stderr, or why it cannot run.
    fn start_verify(&mut self, binary: &Path, now: Instant) -> Result<(i32, File, File)> {
        let record = self.record(Vec::new(), false, now);
        let encoded = record.encode();
        if let Some(why) = super::exec::too_large(&encoded) {
            return Err(Error::runtime(why));
        }
        let stdin = memfd(&encoded, true)
            .map_err(|e| Error::runtime(format!("cannot write the state record: {}", io_text(&e))))?;
        let argv0 = record.argv.first().cloned().unwrap_or_else(|| binary.as_os_str().to_owned());
        let cannot_run =
            |e: io::Error| Error::runtime(format!("cannot run {}: {}", binary.display(), io_text(&e)));
        let mut child = std::process::Command::new(binary)
            .arg0(argv0)
            .args(record.argv.iter().skip(1))
            .env_clear()
            .envs(record.env.iter().map(|(k, v)| (k, v)))
            .env(HANDOVER_UPGRADE_STATE, VERIFY_STATE)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(cannot_run)?;
        // Reaped by the loop's waitpid: the handle is only for the pipes.
        let pid = child.id() as i32;
        let pipes = (child.stdout.take().map(nonblocking), child.stderr.take().map(nonblocking));
        match pipes {
            (Some(Ok(out)), Some(Ok(err))) => Ok((pid, out, err)),
            _ => {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                Err(Error::runtime(format!("cannot read what {} answers", binary.display())))
            }
        }
    }

    /// Whether `pid` was a verify run; if so its verdict is taken here.
    pub(in crate::supervisor) fn upgrade_child_exited(&mut self, pid: i32, status: ExitStatus) -> bool {
        let Some(mut run) = self.upgrades.verifying.take_if(|v| v.pid == pid) else { return false };
        // Whatever it started in its process group goes with it.
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        if run.abandoned {
            return true;
        }
        let (out, err) = (read_now(&mut run.out), read_now(&mut run.err));
        let said = out.lines().find_map(|line| line.strip_prefix(VERIFY_OK));
        let version = said.and_then(|rest| rest.split_whitespace().next());
        match (status, version) {
            (ExitStatus::Code(0), Some(version)) => match still_the_same(&run.asked) {
                Ok(()) => {
                    self.upgrades.verified = Some(Verified { asked: run.asked, to: version.to_string() })
                }
                Err(why) => self.refuse_upgrade(&run.asked.requests, &why.message),
            },
            _ => {
                // Its last line, without the `handover: ` every error line starts with.
                let why = (err.lines().rev().map(str::trim).find(|l| !l.is_empty()))
                    .map(|l| l.strip_prefix("handover: ").or(l.strip_prefix("start_server: ")).unwrap_or(l));
                let binary = run.asked.binary.display();
                let older = format!("is not an fd: \"{VERIFY_STATE}\"");
                let text = match why {
                    Some(why) if why.ends_with(&older) => format!(
                        "{binary} cannot take over: it is a handover without roll-back (older than \
                         {VERSION}), which cannot be checked the way the exec would run it"
                    ),
                    Some(why) => format!("{binary} cannot take over: {why}"),
                    None => format!(
                        "{binary} cannot take over: it is no handover that reads this state ({status})"
                    ),
                };
                self.refuse_upgrade(&run.asked.requests, &text);
            }
        }
        true
    }

    /// A verify run past its deadline is killed and the upgrade refused.
    pub(in crate::supervisor) fn upgrade_tick(&mut self, now: Instant) {
        let Some(run) = self.upgrades.verifying.as_mut().filter(|v| !v.abandoned && now >= v.deadline) else {
            return;
        };
        run.abandoned = true;
        let _ = killpg(Pid::from_raw(run.pid), Signal::SIGKILL);
        let (requests, binary) = (std::mem::take(&mut run.asked.requests), run.asked.binary.clone());
        let text = format!("{} did not answer within {}s", binary.display(), VERIFY_TIMEOUT.as_secs());
        self.refuse_upgrade(&requests, &format!("{text}; not upgraded"));
    }
}
