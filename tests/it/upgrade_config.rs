//! An upgrade changes the program, never the policy: the configuration in
//! force, with what the envdir gave at the start and the sockets socket
//! activation passed, is carried to the new program, which does not read
//! the envdir again nor decode the activation variables against itself.
use std::fs;
use std::os::unix::net::UnixStream;

use nix::sys::signal::Signal;

use crate::harness::*;
use crate::upgrade::{status, upgrade};

#[test]
fn the_envdir_is_not_read_again_at_an_upgrade() {
    let b = handover();
    let env = b.dir().join("env");
    fs::create_dir(&env).unwrap();
    fs::write(env.join("KILL_OLD_DELAY"), "0\n").unwrap();
    let s = b
        .args(["--port", "127.0.0.1:0", "--control", "{dir}/ctl", "--status-file", "{dir}/status"])
        .args(["--envdir", "{dir}/env", "--"])
        .arg(example("worker"))
        .args(["--notify", "--journal", "{dir}/journal"])
        .start();
    s.wait_generations(&[1]);
    // A value no handover accepts, then one that would keep the old
    // generation for an hour: neither is the policy in force.
    fs::write(env.join("KILL_OLD_DELAY"), "abc\n").unwrap();
    upgrade(&s);
    fs::write(env.join("KILL_OLD_DELAY"), "3600\n").unwrap();
    upgrade(&s);
    assert_eq!(status(&s)["image"]["upgrades"], 2);
    s.signal(Signal::SIGHUP);
    s.wait_generations(&[2]);
}

#[test]
fn a_socket_activated_supervisor_upgrades_with_its_listeners() {
    let Some(activate) = socket_activate() else {
        return;
    };
    let s = handover()
        .program(activate)
        .args(["-l", "{dir}/act.sock"])
        .arg(binary())
        .args(["--control", "{dir}/ctl", "--status-file", "{dir}/status", "--"])
        .arg(example("probe"))
        .args(["--out", "{dir}/probe.json", "--notify", "--tag", "fd={fd}"])
        .start();
    let trigger = s.path("act.sock");
    let _connection =
        wait_for("systemd-socket-activate to listen", || s.dossier(), || UnixStream::connect(&trigger).ok());
    s.wait_generations(&[1]);
    upgrade(&s);
    let st = status(&s);
    assert_eq!(st["image"]["upgrades"], 1, "{st:#}");
    assert_eq!(st["listeners"][0]["fd"], 3, "{st:#}");
    // The next generation gets the adopted socket as before.
    s.signal(Signal::SIGHUP);
    let argv = probe_report(&s, 2)["argv"].clone();
    assert_eq!(argv.as_array().and_then(|a| a.last()), Some(&"fd=3".into()), "{argv}");
    upgrade(&s);
    assert_eq!(status(&s)["image"]["upgrades"], 2);
}

/// A new program that refuses the configuration it is handed (here: the
/// record's envdir value edited on the way to `abc`, as a newer handover
/// with stricter rules might) rolls back to the previous one.
#[test]
fn a_configuration_the_new_program_refuses_rolls_back() {
    let b = handover();
    let env = b.dir().join("env");
    fs::create_dir(&env).unwrap();
    fs::write(env.join("KILL_OLD_DELAY"), "0\n").unwrap();
    let s = b
        .env("REAL_HANDOVER", binary().to_str().unwrap())
        .args(["--port", "127.0.0.1:0", "--control", "{dir}/ctl", "--status-file", "{dir}/status"])
        .args(["--envdir", "{dir}/env", "--"])
        .arg(example("worker"))
        .args(["--notify", "--journal", "{dir}/journal"])
        .start();
    let before = s.wait_generations(&[1]);
    // "KILL_OLD_DELAY" and "0", then "abc", in the record's hex.
    let (name, zero, abc) = ("4b494c4c5f4f4c445f44454c4159", "30", "616263");
    let edited = s.path("edited");
    let script = format!(
        "#!/bin/bash\nif [ \"$HANDOVER_UPGRADE_STATE\" = verify ]; then exec \"$REAL_HANDOVER\" \"$@\"; fi\n\
         sed 's/\\[\"{name}\",\"{zero}\"\\]/[\"{name}\",\"{abc}\"]/' < /dev/fd/$HANDOVER_UPGRADE_STATE > {}\n\
         exec {{fd}}< {}\nHANDOVER_UPGRADE_STATE=$fd exec \"$REAL_HANDOVER\" \"$@\"\n",
        edited.display(),
        edited.display()
    );
    let stricter = s.path("stricter");
    fs::write(&stricter, script).unwrap();
    fs::set_permissions(&stricter, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = crate::upgrade::client(&s, &["upgrade", "--wait", "--binary", stricter.to_str().unwrap()]);
    assert_eq!(o.code, Some(1), "{}\n{}", o.dossier(), s.dossier());
    let said = o.stderr.trim_end();
    assert!(said.starts_with("handover: upgrade refused: "), "{said}");
    assert!(
        said.contains("invalid KILL_OLD_DELAY value \"abc\"") && said.contains("; rolled back to handover "),
        "{said}"
    );
    assert!(fs::read_to_string(&edited).unwrap().contains(abc), "the wrapper edited the record");
    let st = status(&s);
    assert_eq!((st["pid"].as_i64(), st["image"]["upgrades"].as_u64()), (Some(s.pid().into()), Some(0)));
    assert_eq!(s.status_file(), before);
    upgrade(&s);
    s.signal(Signal::SIGHUP);
    s.wait_generations(&[2]);
}
