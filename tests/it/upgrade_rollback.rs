//! Upgrades that cannot leave a host unsupervised: a new program that
//! passes the check and then cannot take over rolls back to the previous
//! one, which goes on as it was and refuses the upgrade; a program that
//! would exit instead is caught by the check, which runs it as the exec
//! would; a signal while a wrapper script runs is never fatal; a record
//! grown too large refuses the upgrade instead of ending the supervisor.
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sys::signal::Signal;

use crate::errors::run_in;
use crate::harness::*;
use crate::upgrade::{client, status, upgrade, with_real_handover};

/// The test's condition for the verify run of either protocol (the
/// `--verify-upgrade-state` argument of a handover before roll-back, the
/// variable since).
const VERIFYING: &str = "[ \"$1\" = --verify-upgrade-state ] || [ \"$HANDOVER_UPGRADE_STATE\" = verify ]";

/// An executable script at `{dir}/NAME`.
pub fn script(s: &Supervisor, name: &str, body: &str) -> PathBuf {
    let path = s.path(name);
    fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A script that passes the verify run (through the real handover) and
/// does `then` for the exec.
fn passes_verify_then(s: &Supervisor, name: &str, then: &str) -> PathBuf {
    script(s, name, &format!("if {VERIFYING}; then exec \"$REAL_HANDOVER\" \"$@\"; fi\n{then}\n"))
}

fn refused(s: &Supervisor, binary: &std::path::Path) -> String {
    let o = client(s, &["upgrade", "--wait", "--binary", binary.to_str().unwrap()]);
    assert_eq!(o.code, Some(1), "{}\n{}", o.dossier(), s.dossier());
    assert!(o.stderr.starts_with("handover: upgrade refused: "), "{}\n{}", o.dossier(), s.dossier());
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.dossier());
    o.stderr.trim_end().to_string()
}

/// The supervisor goes on as it was: same pid, no upgrade counted, the
/// same generation serving, and a HUP restarts.
fn goes_on(s: &Supervisor, before: &[(u64, i32)], generation: u64) {
    let st = status(s);
    assert_eq!(st["pid"], s.pid(), "{st:#}");
    assert_eq!(st["image"]["upgrades"], 0, "{st:#}");
    assert_eq!(s.status_file(), before, "{}", s.dossier());
    s.signal(Signal::SIGHUP);
    s.wait_generations(&[generation]);
}

#[test]
fn a_program_that_would_exit_after_the_exec_is_refused_by_the_check() {
    let s = with_real_handover();
    let before = s.wait_generations(&[1]);
    // Issue 17's wrapper: handover for the check's argument, else it exits.
    let wrapper = script(
        &s,
        "wrapper",
        "[ \"$1\" = --verify-upgrade-state ] && exec \"$REAL_HANDOVER\" \"$@\"\nexit 1\n",
    );
    let why = refused(&s, &wrapper);
    assert!(why.contains(&format!("{} cannot take over", wrapper.display())), "{why}");
    goes_on(&s, &before, 2);
}

#[test]
fn a_program_that_cannot_take_over_after_the_exec_rolls_back_to_the_previous_one() {
    let s = with_real_handover();
    let mut before = s.wait_generations(&[1]);
    let started = status(&s)["image"]["started"].clone();
    let journal = s.journal().len();
    // The record is not where the new program is told it is: fd 99 is not
    // open; fd 0 is not a record.
    let cases = [("99", "carried fd 99: Bad file descriptor"), ("0", "not a state record")];
    for (at, (fd, why)) in cases.into_iter().enumerate() {
        let name = format!("misled{fd}");
        let exec = format!("HANDOVER_UPGRADE_STATE={fd} exec \"$REAL_HANDOVER\" \"$@\"");
        let misled = passes_verify_then(&s, &name, &exec);
        let said = refused(&s, &misled);
        assert!(said.contains(why), "{said}");
        assert!(said.contains("rolled back"), "{said}");
        goes_on(&s, &before, at as u64 + 2);
        before = s.wait_generations(&[at as u64 + 2]);
        assert_eq!(status(&s)["image"]["started"], started, "the image is the one from before");
    }
    // The workers saw nothing of it but the two restarts asked for.
    let seen: Vec<String> =
        s.journal()[journal..].iter().filter(|l| l.starts_with("term")).cloned().collect();
    assert_eq!(seen.len(), 2, "{seen:?}\n{}", s.dossier());
    // And the supervisor still upgrades.
    upgrade(&s);
    assert_eq!(status(&s)["image"]["upgrades"], 1);
}

#[test]
fn a_hup_while_a_dash_wrapper_runs_does_not_end_the_supervisor() {
    let s = with_real_handover();
    s.wait_generations(&[1]);
    let go = s.path("go");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // dash clears its signal mask once it has waited for a command (here
    // `sleep 0`, in issue 17 `sleep 2`): the window is after it.
    let then = format!(
        "sleep 0\necho $$ > {}\nread x < {}\nexec \"$REAL_HANDOVER\" \"$@\"",
        s.path("window").display(),
        go.display()
    );
    let wrapper = passes_verify_then(&s, "wrapper", &then);
    let dir = s.dir.path().to_owned();
    let binary = wrapper.to_str().unwrap().to_owned();
    let asked = std::thread::spawn(move || {
        run_in(&dir, &["upgrade", "--wait", "--binary", &binary, "--control", "{dir}/ctl"])
    });
    let pid = s.pid().to_string();
    wait_for(
        "the wrapper's window",
        || s.dossier(),
        || (fs::read_to_string(s.path("window")).ok()?.trim() == pid).then_some(()),
    );
    s.signal(Signal::SIGHUP);
    // The wrapper reads the fifo, unless the HUP ended the process.
    let opened = wait_for(
        "the wrapper reading its fifo",
        || s.dossier(),
        || {
            if !alive(s.pid()) {
                return Some(None);
            }
            let open = fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&go);
            open.ok().map(Some)
        },
    );
    let Some(mut fifo) = opened else {
        panic!("the HUP ended the supervisor\n{}", s.dossier());
    };
    fifo.write_all(b"go\n").unwrap();
    let o = asked.join().unwrap();
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""), "{}\n{}", o.dossier(), s.dossier());
    let st = status(&s);
    assert_eq!((st["pid"].as_i64(), st["image"]["upgrades"].as_u64()), (Some(s.pid().into()), Some(1)));
    // Its handlers are in place again: a HUP restarts.
    s.signal(Signal::SIGHUP);
    wait_for(
        "a restart after the upgrade",
        || s.dossier(),
        || s.status_file().iter().any(|(g, _)| *g >= 2).then_some(()),
    );
}

/// How many bytes of replies the kernel holds for a client that reads
/// none: a client asking for more than that plus 1 MiB is dropped, and
/// what it then reads is what the kernel held.
fn kernel_queue(s: &Supervisor, size: usize) -> usize {
    let mut probe = UnixStream::connect(s.path("ctl")).unwrap();
    let flood = "{\"command\":\"status\"}\n".repeat((8 << 20) / size);
    let sender = probe.try_clone().unwrap();
    let sending = std::thread::spawn(move || drop((&sender).write_all(flood.as_bytes())));
    let fd = std::os::fd::AsFd::as_fd(&probe);
    wait_for(
        "the flooding client dropped",
        || s.dossier(),
        || {
            let mut polled =
                [nix::poll::PollFd::new(fd, nix::poll::PollFlags::from_bits_retain(libc::POLLRDHUP))];
            let ready = nix::poll::poll(&mut polled, nix::poll::PollTimeout::ZERO).unwrap_or(0);
            (ready > 0).then_some(())
        },
    );
    let mut held = Vec::new();
    // Dropped with requests it had not read yet, the supervisor's end
    // resets the connection once what the kernel held has been read.
    match std::io::Read::read_to_end(&mut probe, &mut held) {
        Err(e) if e.kind() != std::io::ErrorKind::ConnectionReset => panic!("{e}"),
        _ => {}
    }
    let _ = sending.join();
    held.len()
}

fn rss_kib(pid: i32) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = text.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[test]
fn replies_piled_up_during_the_check_do_not_end_the_supervisor_at_the_exec() {
    let s = with_real_handover();
    s.wait_generations(&[1]);
    let (gate, checking) = (s.path("gate"), s.path("checking"));
    nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let held = script(
        &s,
        "held",
        &format!(
            "if {VERIFYING}; then touch {}; read x < {}; fi\nexec \"$REAL_HANDOVER\" \"$@\"\n",
            checking.display(),
            gate.display()
        ),
    );
    let dir = s.dir.path().to_owned();
    let binary = held.to_str().unwrap().to_owned();
    let asked = std::thread::spawn(move || {
        run_in(&dir, &["upgrade", "--wait", "--binary", &binary, "--control", "{dir}/ctl"])
    });
    wait_for("the verify run", || s.dossier(), || checking.exists().then_some(()));
    // 62 clients ask for status over and over and read nothing, each with
    // more replies asked for than the supervisor answers unread, beyond
    // what the kernel holds for it.
    let mut probe = crate::control::Raw::connect(&s.path("ctl"));
    let size = probe.ask("status").to_string().len() + 1;
    let held_by_kernel = kernel_queue(&s, size);
    let base = rss_kib(s.pid());
    let requests = (held_by_kernel + (850 << 10)) / size;
    let line = "{\"command\":\"status\"}\n".repeat(requests);
    let clients: Vec<UnixStream> = (0..62)
        .map(|_| {
            let mut c = UnixStream::connect(s.path("ctl")).unwrap();
            c.write_all(line.as_bytes()).unwrap();
            c
        })
        .collect();
    // Their replies are held by the supervisor: 64 KiB and more each (it
    // takes no more of a client's requests beyond that), over 2 MiB in all.
    wait_for("the replies piled up", || s.dossier(), || (rss_kib(s.pid()) > base + (2 << 10)).then_some(()));
    fs::write(&gate, "go\n").unwrap();
    let o = asked.join().unwrap();
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""), "{}\n{}", o.dossier(), s.dossier());
    assert!(alive(s.pid()), "{}", s.dossier());
    let st = status(&s);
    assert_eq!((st["pid"].as_i64(), st["image"]["upgrades"].as_u64()), (Some(s.pid().into()), Some(1)));
    drop(clients);
}
