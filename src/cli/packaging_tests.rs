//! The man pages and shell completions under `packaging/` are generated
//! from the clap definitions; this test fails when they drift from the CLI.
//!
//! They are generated in memory and compared with the committed files, so
//! there is no build script and no generator binary. After changing an
//! option, regenerate and commit:
//!
//!     UPDATE_PACKAGING=1 cargo test --lib packaging
//!
//! The pages are `handover.1` and one per subcommand (`handover-restart.1`,
//! ..., and `handover-drill.1`: see `documented`); `start_server.1` is not
//! generated: the Debian package makes it a link to `handover.1` (a slave of
//! the `start_server` alternative).
use std::fs;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;

use super::HandoverCli;

const UPDATE_VAR: &str = "UPDATE_PACKAGING";
const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Hand-written sections of `handover.1`, after the generated options and
/// subcommands: what clap cannot know (signals, exit codes, the name).
const MAN_EXTRA: &str = r#".SH "START_SERVER COMPATIBILITY"
Invoked under the name \fBstart_server\fR (a symlink, or the Debian
package's \fBstart_server\fR alternative), handover accepts only the options
of Server::Starter's start_server 0.35, with their meanings, prints its log
lines byte for byte, and \fB\-\-version\fR prints \fB0.35\fR.
Options may be abbreviated to a unique prefix and written with one dash
(\fB\-int 2\fR), as Getopt::Long allows.
.SH "UPGRADING HANDOVER"
\fBhandover upgrade \-\-control\fR \fIPATH\fR makes the running supervisor
execute a new handover binary in its own process: its pid, workers,
sockets, control connections, pid file lock, log and state carry over and
nothing is restarted. The binary is checked first by a child run that
reads the supervisor's state; one that cannot take over is refused and the
supervisor carries on. On upgrade, the Debian package does this for every
supervisor whose control socket is under \fI/run/handover/\fR.
.SH SIGNALS
.TP
\fBHUP\fR
Hot restart: start a new generation while the old one serves; signal the
old one (\fB\-\-signal\-on\-hup\fR) once the new one is ready. A new
generation that fails is stopped and the old one keeps serving.
.TP
\fBTERM\fR, \fBINT\fR
Stop: send \fB\-\-signal\-on\-term\fR (INT: always TERM) to every worker,
wait for them (or \fB\-\-stop\-timeout\fR), remove the pid, status and
socket files, exit 0.
.TP
\fBUSR1\fR
What \fB\-\-on\-usr1\fR says: reopen \fB\-\-log\-file\fR (the default with a
log file), forward it to the serving generation (the default otherwise), or
both. \fBhandover reopen \-\-control\fR \fIPATH\fR does the same.
.TP
\fBQUIT\fR, \fBUSR2\fR, \fBWINCH\fR, \fBTTIN\fR, \fBTTOU\fR
Forwarded to the serving generation.
.SH "EXIT STATUS"
.TP
\fB0\fR
Clean stop, or \fB\-\-help\fR / \fB\-\-version\fR.
.TP
\fB1\fR
Runtime failure (cannot bind, pid file held, \fB\-\-max\-start\-attempts\fR
reached), or a client command that failed or timed out.
.TP
\fB2\fR
Usage or configuration error, found before anything is bound or started.
.TP
\fB126\fR, \fB127\fR
The worker command is not executable / not found (at the first start).
.TP
\fIN\fR
A code listed in \fB\-\-stop\-on\-exit\fR (128+\fIN\fR for death by signal \fIN\fR).
.SH "SEE ALSO"
\fBhandover\-upgrade\fR(1), \fBstart_server\fR(1p), \fBsystemd.service\fR(5), \fBsd_notify\fR(3).
The README (in the Debian package \fI/usr/share/doc/handover/README.md\fR)
describes the worker protocols, readiness, the control socket and the
systemd integration; example units are in
\fI/usr/share/doc/handover/examples/systemd/\fR.
"#;

/// Hand-written end of `handover-drill.1`: the drill's page lists only its
/// own options, but it takes handover's too.
const DRILL_MAN_EXTRA: &str = r#".SH "SUPERVISOR OPTIONS"
Drill options are recognised by their full names anywhere before \fB\-\-\fR;
every other option (\fB\-\-port\fR, \fB\-\-listen\fR, \fB\-\-ready\fR, ...) is
given to the supervisor under test, with its meaning in \fBhandover\fR(1).
.SH "SEE ALSO"
\fBhandover\fR(1).
"#;

/// Every generated file, as (path relative to the repository, contents).
fn generated() -> Vec<(PathBuf, Vec<u8>)> {
    let mut cmd = documented();
    cmd.build();
    let mut files = vec![(PathBuf::from("packaging/man/handover.1"), main_page(&cmd))];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_man = man(sub);
        let mut page = Vec::new();
        sub_man.render(&mut page).expect("render a subcommand page");
        if sub.get_name() == "drill" {
            page.extend_from_slice(DRILL_MAN_EXTRA.as_bytes());
        }
        files.push((Path::new("packaging/man").join(sub_man.get_filename()), page));
    }
    for shell in SHELLS {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "handover", &mut script);
        let name = clap_complete::Generator::file_name(&shell, "handover");
        files.push((Path::new("packaging/completions").join(name), script));
    }
    files
}

/// The command line as documented: handover's, plus `drill`. handover
/// executes `handover-drill` for `handover drill ...` before clap parses
/// anything (`cli/drill.rs`), so drill is a subcommand here only, for its
/// page and the completions. Its about (a usage line in `--help`) is
/// replaced by a sentence for the NAME line.
fn documented() -> clap::Command {
    HandoverCli::command()
        .disable_help_subcommand(true)
        .subcommand(crate::drill::args::command().name("drill"))
}

/// A page for `cmd`, with the package and its version in the footer (clap gives
/// subcommands no version of their own).
fn man(cmd: &clap::Command) -> Man {
    let version = HandoverCli::command().get_version().unwrap_or_default().to_owned();
    Man::new(cmd.clone()).source(format!("handover {version}"))
}

/// clap_mangen's page with our sections before the VERSION section.
fn main_page(cmd: &clap::Command) -> Vec<u8> {
    let mut page = Vec::new();
    man(cmd).render(&mut page).expect("render handover.1");
    let page = String::from_utf8(page).expect("the page is UTF-8");
    let at = page.find("\n.SH VERSION").expect("handover.1 has a VERSION section") + 1;
    format!("{}{MAN_EXTRA}{}", &page[..at], &page[at..]).into_bytes()
}

/// Generated files in these directories that the CLI no longer produces.
fn stale(root: &Path, files: &[(PathBuf, Vec<u8>)]) -> Vec<PathBuf> {
    let mut stale = Vec::new();
    for dir in ["packaging/man", "packaging/completions"] {
        let Ok(entries) = fs::read_dir(root.join(dir)) else { continue };
        for entry in entries {
            let relative = Path::new(dir).join(entry.expect("list a packaging directory").file_name());
            if !files.iter().any(|(path, _)| *path == relative) {
                stale.push(relative);
            }
        }
    }
    stale
}

#[test]
fn man_pages_and_completions_match_the_cli() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = generated();
    let update = std::env::var_os(UPDATE_VAR).is_some_and(|v| v == "1");
    let mut drift = Vec::new();
    for (relative, contents) in &files {
        let path = root.join(relative);
        if fs::read(&path).ok().as_deref() == Some(contents.as_slice()) {
            continue;
        }
        if update {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        } else {
            drift.push(format!("{} differs from the CLI", relative.display()));
        }
    }
    for relative in stale(root, &files) {
        if update {
            fs::remove_file(root.join(&relative)).unwrap();
        } else {
            drift.push(format!("{} is no longer generated", relative.display()));
        }
    }
    assert!(
        drift.is_empty(),
        "{}\nregenerate with `{UPDATE_VAR}=1 cargo test --lib packaging` and commit the result",
        drift.join("\n")
    );
}
