//! `--log-format json`: the supervisor's own lines as JSON records with
//! the level, the event, the message and the event's fields.
use serde_json::Value;

use crate::control::Raw;
use crate::upgrade::controlled;

#[test]
fn json_lines_carry_the_level_event_message_and_fields() {
    let mut s = controlled(&["--log-format", "json", "--workers", "2"], &["--notify"]);
    s.wait_generations(&[1, 1]);
    let reply = Raw::connect(&s.path("ctl")).ask("restart");
    assert_eq!(reply["ok"], true, "{reply}");
    s.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(s.wait_exit().success(), "{}", s.dossier());
    let records: Vec<Value> = (s.lines().iter())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["source"] == "handover")
        .collect();
    assert!(records.len() > 10, "{}", s.dossier());
    for record in &records {
        for field in ["time", "level", "event", "message", "fields", "pid"] {
            assert!(!record[field].is_null(), "{field} missing in {record}");
        }
        assert!(["info", "warning"].contains(&record["level"].as_str().unwrap()), "{record}");
    }
    let of = |kind: &str| records.iter().filter(|r| r["event"] == kind).collect::<Vec<_>>();
    let spawned = of("spawned");
    assert_eq!(spawned.len(), 4, "two generations of two: {records:#?}");
    assert_eq!(spawned[0]["fields"]["generation"], 1);
    assert_eq!(spawned[3]["fields"]["generation"], 2);
    assert!(spawned[0]["message"].as_str().unwrap().starts_with("starting new worker "));
    assert_eq!(of("ready")[1]["fields"]["how"], "READY=1");
    assert_eq!(of("switched")[0]["fields"]["generation"], 2);
    assert!(of("exited").iter().any(|r| r["fields"]["role"] == "draining"), "{records:#?}");
    assert_eq!(of("stop_requested")[0]["fields"]["signal"], "TERM");
}
