use super::*;

/// A `status`, `restart` and `stop` exchange as a supervisor of this
/// version wrote it (two generations, one draining, one listener).
const STATUS: &str = r#"{"ok":true,"pid":4242,"stopping":false,"ready":"auto, learned notify","listeners":[{"fd":3,"name":"web","key":"127.0.0.1:8000","address":"tcp 127.0.0.1:8000"}],"generations":[{"generation":1,"phase":"draining","pids":[100],"started":"2026-12-03T08:00:00.000Z","ready":"2026-12-03T08:00:00.020Z","told_to_stop":"2026-12-03T08:01:00.040Z"},{"generation":2,"phase":"serving","pids":[101,102],"started":"2026-12-03T08:01:00.000Z","ready":"2026-12-03T08:01:00.035Z","told_to_stop":null}],"last_restart":{"ok":true,"generation":2,"pids":[101,102],"spawn_to_ready_ms":35.2,"signal_to_old_gone_ms":null},"counters":{"restarts":1,"failures":0,"respawns":0}}"#;
const RESTARTED: &str =
    r#"{"ok":true,"generation":2,"pids":[101],"spawn_to_ready_ms":35.2,"signal_to_old_gone_ms":120.4}"#;
const FAILED: &str = r#"{"ok":false,"generation":3,"error":"generation 3 failed: worker 901 exited with 3"}"#;
const STOPPING: &str = r#"{"ok":true,"pid":4242}"#;
const REFUSED: &str = r#"{"ok":false,"error":"unknown command \"reload\": expected status, restart, stop, upgrade, reopen, events, follow or metrics"}"#;
const REOPENED: &str = r#"{"ok":true,"log_file":"/var/log/app.log","forwarded":false}"#;

fn round_trip<T: Serialize + DeserializeOwned>(recorded: &str) -> T {
    let message: T = serde_json::from_str(recorded).unwrap();
    let again = encode(&message);
    assert_eq!(std::str::from_utf8(&again).unwrap(), format!("{recorded}\n"));
    message
}

#[test]
fn recorded_exchange() {
    let status: Status = round_trip(STATUS);
    assert_eq!(status.generations[1].phase, Phase::Serving);
    assert_eq!(status.listeners[0].name.as_deref(), Some("web"));
    assert_eq!(status.ready, Some(Readiness::AutoLearnedNotify));
    let names = ["auto", "auto, learned notify", "notify", "alive", "accepting"];
    let all = [
        Readiness::Auto,
        Readiness::AutoLearnedNotify,
        Readiness::Notify,
        Readiness::Alive,
        Readiness::Accepting,
    ];
    for (ready, name) in all.into_iter().zip(names) {
        assert_eq!(encode(&ready), format!("\"{name}\"\n").into_bytes());
        assert_eq!(name_of(&ready), name);
    }
    assert_eq!(name_of(&Phase::Draining), "draining");
    // A supervisor older than the field: read as unknown, not refused.
    let older: Status = serde_json::from_str(&STATUS.replace(r#""ready":"auto, learned notify","#, ""))
        .expect("a status without \"ready\"");
    assert_eq!(older.ready, None);
    let Restart::Done(done) = round_trip::<Restart>(RESTARTED) else { panic!("not a success") };
    assert_eq!((done.generation, done.signal_to_old_gone_ms), (2, Some(120.4)));
    let Restart::Failed(failed) = round_trip::<Restart>(FAILED) else { panic!("not a failure") };
    assert_eq!(failed.generation, Some(3));
    assert_eq!(round_trip::<Stopping>(STOPPING).pid, 4242);
    assert!(!round_trip::<Verdict>(REFUSED).ok);
    assert_eq!(round_trip::<Reopened>(REOPENED).log_file.as_deref(), Some("/var/log/app.log"));
    assert_eq!(parse_request(br#"{"command":"reopen"}"#), Ok(Request::new(Command::Reopen)));
    assert_eq!(encode(&Request::new(Command::Restart)), b"{\"command\":\"restart\"}\n");
    let upgrade = Request { command: Command::Upgrade, binary: Some("/usr/bin/handover".into()), wait: true };
    let line = br#"{"command":"upgrade","binary":"/usr/bin/handover","wait":true}"#;
    assert_eq!(encode(&upgrade), [&line[..], b"\n"].concat());
    assert_eq!(parse_request(line), Ok(upgrade));
}

#[test]
fn decode_gives_the_refusal_or_the_message() {
    assert_eq!(decode::<Stopping>(STOPPING.as_bytes()), Ok(Stopping { ok: true, pid: 4242 }));
    let failed = decode::<Restart>(FAILED.as_bytes()).unwrap_err();
    assert_eq!(failed.message, "generation 3 failed: worker 901 exited with 3");
    assert_eq!(
        decode::<Status>(br#"{"ok":false}"#).unwrap_err().message,
        r#"the supervisor refused: {"ok":false}"#
    );
    assert!(
        decode::<Status>(b"nonsense")
            .unwrap_err()
            .message
            .starts_with("the supervisor sent an invalid reply")
    );
    assert!(decode::<Status>(STOPPING.as_bytes()).unwrap_err().message.contains("invalid reply"));
}

#[test]
fn requests_name_a_known_command() {
    assert_eq!(parse_request(br#"{"command":"stop","extra":1}"#), Ok(Request::new(Command::Stop)));
    let relative = parse_request(br#"{"command":"upgrade","binary":"bin/handover"}"#);
    assert_eq!(relative.unwrap_err().message, "\"binary\" must be an absolute path, as a string");
    let wait = parse_request(br#"{"command":"upgrade","wait":"yes"}"#);
    assert_eq!(wait.unwrap_err().message, "\"wait\" must be true or false");
    let other = parse_request(br#"{"command":"status","wait":"yes","binary":5}"#);
    assert_eq!(other, Ok(Request::new(Command::Status)));
    assert!(parse_request(b"{}").unwrap_err().message.contains("no \"command\""));
    assert!(parse_request(br#"{"command":"x"}"#).unwrap_err().message.starts_with("unknown command \"x\""));
    assert!(parse_request(b"[").unwrap_err().message.starts_with("request is not JSON"));
}

mod fuzz;
