//! The text of every line, byte for byte.
use super::*;
use crate::error::SpawnError;

#[test]
fn start_server_lines_are_byte_identical() {
    let table: Vec<(Event, &str)> = vec![
        (Event::StartingWorker { pid: 11009 }, "starting new worker 11009"),
        (
            Event::FailedToStart { pid: 11490, status: ExitStatus::Code(3) },
            "new worker 11490 seems to have failed to start, exit status:768",
        ),
        (
            Event::DiedUnexpectedly { pid: 11021, status: ExitStatus::Signal { signal: 9, core: false } },
            "worker 11021 died unexpectedly with status:9, restarting",
        ),
        (Event::OldDied { pid: 11009, status: ExitStatus::Code(0) }, "old worker 11009 died, status:0"),
        (Event::ReceivedHup, "received HUP, spawning a new worker"),
        (
            Event::NowRunning { signal: Signal::SIGTERM, old: vec![23398, 23469] },
            "new worker is now running, sending TERM to old workers:23398,23469",
        ),
        (
            Event::NowRunning { signal: Signal::SIGUSR1, old: vec![] },
            "new worker is now running, sending USR1 to old workers:none",
        ),
        (Event::SleepingBeforeKill { secs: 5 }, "sleeping 5 secs before killing old workers"),
        (Event::KillingOld, "killing old workers"),
        (Event::AutoRestart { interval: 3, forced: false }, "autorestart triggered (interval=3)"),
        (Event::AutoRestart { interval: 3, forced: true }, "autorestart triggered (forced, interval=3)"),
        (
            Event::ShutdownReceived { received: Signal::SIGINT, sending: Signal::SIGTERM, pids: vec![11052] },
            "received INT, sending TERM to all workers:11052",
        ),
        (Event::WorkerDied { pid: 11052, status: ExitStatus::Code(0) }, "worker 11052 died, status:0"),
        (Event::Exiting, "exiting"),
    ];
    for (event, text) in table {
        assert_eq!(event.to_string(), text);
        assert_eq!(line(&event, true), text);
        assert!(!event.is_extra(), "{text}");
    }
}

#[test]
fn under_its_own_name_exits_read_as_words() {
    let status = ExitStatus::Code(3);
    let table: Vec<(Event, &str)> = vec![
        (
            Event::FailedToStart { pid: 102, status },
            "new worker 102 seems to have failed to start: exited with 3",
        ),
        (
            Event::DiedUnexpectedly { pid: 101, status: ExitStatus::Signal { signal: 9, core: false } },
            "worker 101 died unexpectedly (killed by SIGKILL), restarting",
        ),
        (Event::OldDied { pid: 101, status: ExitStatus::Code(0) }, "old worker 101 died (exited with 0)"),
        (Event::WorkerDied { pid: 102, status }, "worker 102 died (exited with 3)"),
        (Event::ReceivedHup, "received HUP, spawning a new worker"),
    ];
    for (event, text) in table {
        assert_eq!(line(&event, false), text);
    }
}

#[test]
fn handovers_own_lines() {
    let ms = Duration::from_millis;
    let error = SpawnError { what: "exec /nope".into(), errno: libc::ENOENT };
    let table: Vec<(Event, &str)> = vec![
        (
            Event::Ready { generation: 1, pids: vec![101], after: ms(20), how: ReadyBy::Notified },
            "generation 1 (pid 101) is ready (READY=1 after 20ms)",
        ),
        (
            Event::Ready {
                generation: 1,
                pids: vec![101, 1101, 2101],
                after: Duration::from_micros(30_400),
                how: ReadyBy::Alive,
            },
            "generation 1 (pids 101,1101,2101) is ready (alive after 30ms)",
        ),
        (
            Event::Ready {
                generation: 4,
                pids: vec![812],
                after: ms(212),
                how: ReadyBy::Seen { member: 812, sighting: Sighting::Waiting { call: "epoll_wait", fd: 3 } },
            },
            "generation 4 (pid 812) is ready (waiting in epoll_wait on fd 3 after 212ms)",
        ),
        (
            Event::Ready {
                generation: 5,
                pids: vec![901],
                after: ms(82),
                how: ReadyBy::Seen { member: 903, sighting: Sighting::Accepted { fd: 3 } },
            },
            "generation 5 (pid 901) is ready (pid 903 accepted a connection on fd 3 after 82ms)",
        ),
        (
            Event::ReadyTimeout {
                generation: 6,
                pids: vec![950],
                after: ms(60_000),
                awaited: Awaited::AcceptingOrNotify,
                serving: true,
            },
            "generation 6 (pid 950) not ready after 1m; stopping it, the serving generation is untouched \
             (no READY=1, and never seen waiting for connections on an inherited listener)",
        ),
        (
            Event::HupCoalesced { generation: 2 },
            "received HUP while generation 2 is starting; one more restart will follow it",
        ),
        (
            Event::SpawnFailed { generation: 1, error: error.clone() },
            "generation 1 failed to start: cannot exec /nope: No such file or directory",
        ),
        (
            Event::Diagnosis { generation: 2, status: ExitStatus::Code(127), hint: Hint::CommandNotFound },
            "generation 2 exited with 127: exit 127 is how a shell or an exec wrapper says a command was not found",
        ),
        (
            Event::ReadyTimeout {
                generation: 2,
                pids: vec![102],
                after: ms(10_000),
                awaited: Awaited::Notify,
                serving: true,
            },
            "generation 2 (pid 102) not ready after 10s; stopping it, the serving generation is untouched",
        ),
        (
            Event::ReadyTimeout {
                generation: 1,
                pids: vec![101],
                after: ms(10_000),
                awaited: Awaited::Notify,
                serving: false,
            },
            "generation 1 (pid 101) not ready after 10s; stopping it, no generation serves",
        ),
        (
            Event::ReadyTimeout {
                generation: 3,
                pids: vec![103],
                after: ms(60_000),
                awaited: Awaited::Learned,
                serving: true,
            },
            "generation 3 (pid 103) not ready after 1m; stopping it, the serving generation is untouched \
             (no READY=1: --ready auto waits for it since an earlier worker sent it)",
        ),
        (
            Event::ReadyLearned { pid: 101, timeout: Some(ms(60_000)) },
            "worker 101 sent READY=1: later generations are switched to only when they send it too, \
             within 1m (--ready auto)",
        ),
        (
            Event::ReadyLearned { pid: 101, timeout: None },
            "worker 101 sent READY=1: later generations are switched to only when they send it too (--ready auto)",
        ),
        (
            Event::DrainTimeout { pid: 101, after: ms(2_000) },
            "old worker 101 still running 2s after it was told to stop; sending KILL to its process group",
        ),
        (
            Event::UnreadyStopTimeout { pid: 102, generation: 2, after: ms(60_000) },
            "worker 102 of generation 2, which never became ready, still running 1m after it was told to stop; \
             sending KILL to its process group (--ready-timeout)",
        ),
        (
            Event::StopTimeout { pids: vec![101, 102], after: ms(3_000) },
            "workers 101,102 still running 3s after shutdown began; sending KILL to their process groups",
        ),
        (
            Event::Forwarded { signal: Signal::SIGUSR1, pids: vec![101] },
            "received USR1, forwarding it to workers:101",
        ),
        (
            Event::IgnoredDuringShutdown { signal: Signal::SIGHUP },
            "received HUP while shutting down; ignored",
        ),
        (Event::FilesChanged, "watched files changed, restarting"),
        (Event::RestartRequested, "restart requested on the control socket, spawning a new worker"),
        (
            Event::StopOnExit { pid: 101, status: ExitStatus::Code(78), code: 78 },
            "worker 101 exited with 78, which --stop-on-exit lists: stopping, exit code 78",
        ),
        (
            Event::GaveUp {
                attempts: 3,
                last: Failure::Exited { pid: 103, status: ExitStatus::Code(1), hint: None },
            },
            "the first generation failed to start 3 times in a row (last: worker 103 exited with 1); \
             giving up (--max-start-attempts)",
        ),
    ];
    for (event, text) in table {
        assert_eq!(line(&event, false), text);
        assert!(event.is_extra(), "{text}");
    }
}

#[test]
fn exit_statuses_read_as_words() {
    assert_eq!(ExitStatus::Code(3).to_string(), "exited with 3");
    let segv = ExitStatus::Signal { signal: 11, core: true };
    assert_eq!(segv.to_string(), "killed by SIGSEGV (core dumped)");
    assert_eq!(ExitStatus::Signal { signal: 99, core: false }.to_string(), "killed by signal 99");
}

#[test]
fn failures_and_status_lines() {
    let startup =
        Failure::Exited { pid: 102, status: ExitStatus::Code(3), hint: Some(Hint::FailedDuringStartup) };
    assert_eq!(
        startup.to_string(),
        "worker 102 exited with 3; it failed during startup. If its log says \"Address already in use\", \
         it binds the port itself: make it use the inherited socket (SERVER_STARTER_PORT, LISTEN_FDS or fd 3)"
    );
    let killed = Failure::Exited {
        pid: 7,
        status: ExitStatus::Signal { signal: 9, core: false },
        hint: Some(Hint::KilledFromOutside),
    };
    assert_eq!(
        killed.to_string(),
        "worker 7 killed by SIGKILL; killed by SIGKILL from outside (out of memory?)"
    );
    let exec = Failure::Exited { pid: 7, status: ExitStatus::Code(126), hint: Some(Hint::NotExecutable) };
    assert_eq!(
        exec.to_string(),
        "worker 7 exited with 126; exit 126 is how a shell or an exec wrapper says a command is not executable"
    );
    let late = Failure::NotReady { after: Duration::from_micros(10_000_250) };
    assert_eq!(late.to_string(), "not ready after 10s 250us", "not rounded");
    let error = SpawnError { what: "chdir /srv".into(), errno: libc::ENOENT };
    assert_eq!(Failure::SpawnFailed(error).to_string(), "cannot chdir /srv: No such file or directory");
    assert_eq!(Failure::Stopping.to_string(), "the supervisor is stopping");

    assert_eq!(StatusLine::Serving { generation: 4 }.to_string(), "generation 4 serving");
    let failed = StatusLine::RestartFailed {
        generation: 5,
        failure: Failure::Exited { pid: 9, status: ExitStatus::Code(3), hint: None },
        serving: Some(4),
    };
    assert_eq!(
        failed.to_string(),
        "restart to generation 5 failed (worker 9 exited with 3); generation 4 still serving"
    );
    let orphaned = StatusLine::RestartFailed { generation: 5, failure: Failure::Stopping, serving: None };
    assert_eq!(
        orphaned.to_string(),
        "restart to generation 5 failed (the supervisor is stopping); generation 0 still serving"
    );
}
