//! The control socket against a hostile local user and a crowd: a socket
//! at the control path served by another user is not trusted by the
//! clients, and clients waiting on restarts cannot keep `status` and
//! `stop` from being answered.
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::control::setpriv;
use crate::errors::run_in;
use crate::harness::*;

/// Answers every request on the socket at its first argument with a
/// forged success, then closes the connection (a client that leaves
/// without a request costs nothing); says it listens by creating
/// `PATH.ready`.
const FORGER: &str = r#"
use IO::Socket::UNIX;
$SIG{PIPE} = 'IGNORE';
my $path = shift;
my $server = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $path, Listen => 16)
    or die "forger: cannot listen on $path: $!\n";
chmod 0666, $path;
open(my $ready, '>', "$path.ready") or die "forger: $!\n";
close $ready;
while (my $client = $server->accept) {
    my $line = <$client>;
    next unless defined $line;
    my $reply = '{"ok":true,"pid":999999999,"stopping":false,"listeners":[],"generations":[],"last_restart":null,"counters":{"restarts":0,"failures":0,"respawns":0}}';
    $reply = '{"ok":true,"pid":999999999}' if $line =~ /stop/;
    $reply = '{"ok":true,"generation":9,"pids":[1],"spawn_to_ready_ms":1.0,"signal_to_old_gone_ms":null}' if $line =~ /restart/;
    $reply = '{"ok":true,"pid":1,"binary":"/usr/bin/handover","from":"0.1.0","to":"9.9.9","took_ms":1.0}' if $line =~ /upgrade/;
    print $client "$reply\n";
    close $client;
}
"#;

/// The forger, running as uid/gid 65534; killed on drop.
struct Forger {
    child: Child,
    socket: PathBuf,
}

impl Drop for Forger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the forger at `dir/nobody/ctl` (a directory uid 65534 owns)
/// and waits until it listens.
fn forger(setpriv: &Path, dir: &Path) -> Forger {
    // The temp dir is 0700: let uid 65534 through to a directory of its own.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o711)).unwrap();
    let own = dir.join("nobody");
    fs::create_dir(&own).unwrap();
    nix::unistd::chown(&own, Some(65534.into()), Some(65534.into())).unwrap();
    let socket = own.join("ctl");
    let perl = Path::new("/usr/bin/perl");
    if !perl.exists() {
        // perl-base is Essential on Debian.
        let message = "/usr/bin/perl missing: cannot run a server as another user";
        assert!(std::env::var_os("CI").is_none(), "{message}; .ci/run must install perl-base");
    }
    let child = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(perl)
        .args(["-e", FORGER])
        .arg(&socket)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn setpriv perl");
    let mut forger = Forger { child, socket };
    let ready = forger.socket.with_extension("ready");
    wait_for("the forger to listen", String::new, || {
        let exited = forger.child.try_wait().unwrap();
        assert!(exited.is_none(), "the forger exited: {exited:?}");
        ready.exists().then_some(())
    });
    forger
}

/// Failure 2 of issue 17: another user's socket at the control path
/// answers with forged successes; no client believes it.
#[test]
fn clients_refuse_a_control_socket_served_by_another_user() {
    let Some(setpriv) = setpriv() else { return };
    let dir = tempfile::tempdir().unwrap();
    let forger = forger(&setpriv, dir.path());
    let path = forger.socket.to_str().unwrap();
    let expected = format!(
        "handover: control socket {path} is served by uid 65534, not by this user or root; refusing to trust its replies"
    );
    for command in ["stop", "upgrade --wait", "restart --wait", "restart", "status", "status --json"] {
        let mut args: Vec<&str> = command.split_whitespace().collect();
        args.extend(["--control", path]);
        let o = run_in(dir.path(), &args);
        assert_eq!(o.code, Some(1), "{}", o.dossier());
        assert_eq!(o.stderr_lines(), [expected.as_str()], "{}", o.dossier());
        assert_eq!(o.stdout, "", "{}", o.dossier());
    }
}

/// A connection with a request sent, and the reply read with `timeout`.
struct Waiting {
    reader: BufReader<UnixStream>,
}

impl Waiting {
    fn send(path: &Path, command: &str) -> Waiting {
        let mut stream = UnixStream::connect(path).unwrap();
        stream.write_all(format!("{{\"command\":\"{command}\"}}\n").as_bytes()).unwrap();
        Waiting { reader: BufReader::new(stream) }
    }

    /// The reply, or a panic naming `what` after `timeout`.
    fn reply(&mut self, what: &str, timeout: Duration) -> Value {
        self.reader.get_ref().set_read_timeout(Some(timeout)).unwrap();
        let mut line = String::new();
        let start = Instant::now();
        match self.reader.read_line(&mut line) {
            Ok(n) if n > 0 => serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: {e}: {line:?}")),
            other => panic!("{what}: no reply within {timeout:?} ({:?} after {:?})", other, start.elapsed()),
        }
    }
}

/// How many clients may wait on a restart or an upgrade (README).
const MAX_WAITING: usize = 32;
/// Longer than any prompt answer takes; far shorter than the restart.
const PROMPT: Duration = Duration::from_secs(5);

/// Failure 13 of issue 17: 64 clients each ask for a restart whose new
/// generation takes 20 s to be ready. Those beyond the bound are refused
/// at once, and `status` and `stop` are answered at once while the others
/// wait (before, `status` waited 19.5 s for a free slot).
#[test]
fn waiting_clients_do_not_hold_up_status_or_stop() {
    let s = handover()
        .args(["--port", "127.0.0.1:0", "--control", "{dir}/ctl", "--ready", "notify", "--"])
        .arg(example("hello"))
        .args(["--quiet", "--startup-delay", "20000"])
        .start();
    let control = s.path("ctl");
    wait_for("the control socket", || s.dossier(), || control.exists().then_some(()));
    let mut clients: Vec<Waiting> = (0..64).map(|_| Waiting::send(&control, "restart")).collect();

    // Requests are taken in the order the clients connected.
    for (n, client) in clients.iter_mut().enumerate().skip(MAX_WAITING) {
        let reply = client.reply(&format!("restart {n}, beyond the bound"), PROMPT);
        assert_eq!(reply["ok"], false, "{reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        let text = format!("too many clients are waiting: {MAX_WAITING} wait for a restart");
        assert!(error.starts_with(&text), "{reply}\n{}", s.dossier());
    }
    for _ in 0..3 {
        let status = Waiting::send(&control, "status").reply("status", PROMPT);
        assert_eq!(status["ok"], true, "{status}");
        assert_eq!(status["generations"][0]["phase"], "starting", "{status}");
    }
    let stopping = Waiting::send(&control, "stop").reply("stop", PROMPT);
    assert_eq!(stopping["ok"], true, "{stopping}");
}
