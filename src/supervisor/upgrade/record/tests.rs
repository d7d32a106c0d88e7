use proptest::prelude::*;

use super::*;
use crate::fuzz_tests::{config, mutated, one_line};
use crate::supervisor::capture::carry::{CaptureRecord, StreamRecord};
use crate::supervisor::carry::HexBytes;
use crate::supervisor::carry::foreign::{ListenerRecord, PidFileRecord};
use crate::supervisor::control::carry::{ControlConnRecord, ControlRecord};
use crate::supervisor::einhorn::EinhornRecord;
use crate::supervisor::line_conn::ConnRecord;
use crate::supervisor::logger::LoggerRecord;
use crate::supervisor::notify_socket::NotifyRecord;

/// A record as this version writes it: two listeners (one a unix socket
/// file it created), a control connection owed a reply, a captured stream
/// with half a line, a lingering worker, unsent log output.
const V2: &str = include_str!("v2.json");
/// The same as the handovers before format 2 wrote it.
const V1: &str = include_str!("v1.json");

fn sample() -> Record {
    let machine: Snapshot =
        serde_json::from_str(include_str!("../../../machine/tests/snapshot/v2.json")).unwrap();
    let conn = |fd, input: &[u8], output: &[u8]| ConnRecord {
        fd,
        input: input.to_vec(),
        output: output.to_vec(),
        eof: false,
    };
    Record {
        format: 2,
        version: "0.1.0".into(),
        written_at: 123_456_789,
        argv: vec!["handover".into(), "--port".into(), "8080".into(), "--".into(), "app".into()],
        env: vec![
            ("PATH".into(), "/usr/bin".into()),
            ("LANG".into(), std::ffi::OsString::from_vec(vec![0xff])),
        ],
        started_ms: 1_796_000_000_000,
        upgrades: 2,
        machine,
        listeners: vec![
            ListenerRecord {
                fd: 3,
                key: "8080".into(),
                local: "tcp 0.0.0.0:8080".into(),
                name: None,
                created: None,
                inherited_fd: None,
            },
            ListenerRecord {
                fd: 4,
                key: "/run/app.sock".into(),
                local: "unix /run/app.sock".into(),
                name: Some("admin".into()),
                created: Some(("/run/app.sock".into(), 20, 777)),
                inherited_fd: None,
            },
        ],
        notify: NotifyRecord { fd: 5, lock_fd: 6, dir: "/run/user/0/handover-abcdef".into() },
        einhorn: EinhornRecord {
            fd: 7,
            path: "/run/user/0/handover-abcdef/einhorn".into(),
            conns: vec![(conn(8, b"", b""), Some(101))],
        },
        control: Some(ControlRecord {
            fd: 9,
            path: "/run/handover/app/control".into(),
            identity: (20, 778),
            next_id: 4,
            conns: vec![ControlConnRecord {
                conn: conn(10, b"{\"command\":\"sta", b"{\"ok\":true}\n"),
                waiting: vec![(Some(3), None), (None, Some(HexBytes(b"{\"ok\":false}\n".to_vec())))],
                stopping: false,
            }],
        }),
        pid_file: Some(PidFileRecord { fd: 11, path: "/run/app.pid".into() }),
        status_written: true,
        logger: Some(LoggerRecord {
            pid: Some(99),
            started: -5_000_000_000,
            restart_at: None,
            pipe: None,
            delay_ms: 1000,
        }),
        capture: Some(CaptureRecord {
            next_token: 3,
            streams: vec![StreamRecord {
                fd: 12,
                token: 2,
                stderr: false,
                owner: Some((2, 102)),
                pending: b"half a li".to_vec(),
            }],
        }),
        lingering: vec![(100, crate::machine::event::ExitStatus::Code(0))],
        log_pending: b"handover[1]: last words\n".to_vec(),
        reloading: true,
        waiting: vec![3],
        requested_at: -2_000_000,
        binary_fd: Some(13),
        config: Some(ConfigRecord {
            envdir: vec![("KILL_OLD_DELAY".into(), "3".into())],
            activation: Some(vec![Some("web".into()), None]),
            credentials: Some((33, 33, vec![33, 4])),
        }),
        previous_binary: Some(14),
        image_started_ms: Some(1_796_000_100_000),
        events: None,
        metrics: None,
    }
}

use std::os::unix::ffi::OsStringExt;

#[test]
fn the_format_2_record_reads_and_is_what_this_version_writes() {
    let written = String::from_utf8(sample().encode()).unwrap();
    if std::env::var_os("UPDATE_RECORD").is_some() {
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/src/supervisor/upgrade/record/v2.json"),
            &written,
        )
        .unwrap();
    }
    // A change here needs a new format number (and v3.json) if an older
    // handover could not read what this one writes.
    assert_eq!(written.trim_end(), V2.trim_end(), "UPDATE_RECORD=1 rewrites v2.json");
    for text in [V2, V1] {
        let read = Record::decode(text.as_bytes()).unwrap();
        assert_eq!(read.env[1].1, std::ffi::OsString::from_vec(vec![0xff]));
        assert_eq!(read.capture.as_ref().unwrap().streams[0].pending, b"half a li");
        assert_eq!(read.fds(), [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
        let given = read.config.as_ref().unwrap().given();
        assert_eq!(given.activation.unwrap().names, [Some("web".to_string()), None]);
        assert_eq!(given.credentials.unwrap().groups, [33, 4]);
        // Fields added later default: a record without them still reads.
        let at = text.find(",\"binary_fd\":13").unwrap();
        let before = format!("{}}}", &text[..at]);
        let read = Record::decode(before.as_bytes()).unwrap();
        assert_eq!((read.binary_fd, read.config.is_none(), read.previous_binary), (None, true, None));
    }
}

/// Format 1's machine, its times offsets from `written_at`, is read as
/// the machine it was: the one format 2 writes with its times as they are.
#[test]
fn the_format_1_record_reads_as_the_same_machine() {
    // The machine of the fixtures was taken 5.5 s into a run that began an hour after boot.
    let taken = (3600 * 1000 + 5500) * 1_000_000u64;
    let v1 = V1.replacen("\"written_at\":123456789", &format!("\"written_at\":{taken}"), 1);
    assert_ne!(v1, V1);
    let read = Record::decode(v1.as_bytes()).unwrap();
    assert_eq!(read.machine, sample().machine);
    let garbled = V1.replacen("\"format\":1,\"phase\"", "\"format\":1,\"phase\":7,\"was\"", 1);
    let why = Record::decode(garbled.as_bytes()).unwrap_err();
    assert!(why.message.starts_with("cannot read the state record: format 1 snapshot: "), "{why}");
}

#[test]
fn a_newer_or_older_format_is_refused_in_one_line() {
    let newer = V2.replacen("\"format\":2", "\"format\":3", 1).replacen(
        "\"version\":\"0.1.0\"",
        "\"version\":\"9.0.0\"",
        1,
    );
    let why = Record::decode(newer.as_bytes()).unwrap_err();
    let expected = format!(
        "state record format 3 (written by handover 9.0.0) is newer than this handover {} reads ([1, 2])",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(why, Error::runtime(expected));
    let older = V1.replacen("\"format\":1", "\"format\":0", 1);
    assert!(Record::decode(older.as_bytes()).unwrap_err().message.contains("is older than this handover"));
    assert!(
        Record::decode(b"{}").unwrap_err().message.starts_with("not a state record: missing field `format`")
    );
    // Fields a newer version adds are ignored.
    for text in [V1, V2] {
        let extra = text.replacen('{', "{\"added_later\":[1,2],", 1);
        assert!(Record::decode(extra.as_bytes()).is_ok());
    }
}

#[test]
fn bytes_go_as_hex_both_ways() {
    let all: Vec<u8> = (0..=255).collect();
    let json = serde_json::to_string(&HexBytes(all.clone())).unwrap();
    assert!(json.starts_with("\"000102") && json.ends_with("fdfeff\""), "{json}");
    assert_eq!(serde_json::from_str::<HexBytes>(&json).unwrap().0, all);
    for bad in ["\"0\"", "\"zz\"", "\"0g\"", "12"] {
        assert!(serde_json::from_str::<HexBytes>(bad).is_err(), "{bad}");
    }
}

static SEEDS: &[&str] = &[V2, V1];

proptest! {
    #![proptest_config(config(256))]

    /// Whatever a damaged memfd holds, reading it is an answer, not a panic.
    #[test]
    fn fuzz_upgrade_record_decode(bytes in mutated(SEEDS)) {
        match Record::decode(&bytes) {
            Ok(record) => prop_assert!(!record.encode().is_empty()),
            Err(Error { message: why, .. }) => prop_assert!(one_line(&why), "{}", why),
        }
    }
}

#[test]
fn the_log_pipe_is_carried_by_its_fds() {
    let mut record = sample();
    let logger = record.logger.as_mut().unwrap();
    logger.pipe = Some([20, 21, 22]);
    assert_eq!(record.fds(), [3, 4, 5, 6, 7, 8, 9, 10, 11, 20, 21, 22, 12, 13, 14]);
    // A record without them (an older handover's) still reads.
    let older = V2.replacen(",\"pipe\":null,\"delay_ms\":1000", "", 1);
    assert_ne!(older, V2);
    let read = Record::decode(older.as_bytes()).unwrap();
    assert_eq!(read.logger.unwrap().pipe, None);
}
