//! The state record a supervisor image hands to the next across `execve`.
//!
//! One JSON document, in a memfd whose number is the value of
//! `HANDOVER_UPGRADE_STATE` (removed from the environment first thing).
//! Every fd it names was left open by the old image (close-on-exec
//! cleared just before the exec); the new image takes them all at once
//! (`sys::fd::take_carried`) and makes them close-on-exec again.
//!
//! The machine's times are its own `Moment`s, readings of
//! `CLOCK_MONOTONIC` (the same clock for both images: the process is the
//! same). The other parts' instants are offsets in nanoseconds from
//! `written_at`, a reading of the same clock, so the time the exec took is
//! accounted for. Bytes (partial lines, unsent replies, pending log
//! output) are hex strings.
//!
//! Compatibility: `format` says which shape this is. A handover reads its
//! own format and every older one it lists in `READS`; fields added later
//! carry `#[serde(default)]`, and unknown fields are ignored, so a record
//! one version newer with only added fields still reads. A format it does
//! not list is refused by the verify step, before the old image execs.
//! Format 2 differs from 1 in its machine part only: the machine as it is
//! (`machine::snapshot`), where format 1 had a snapshot of its own with
//! offsets from `written_at`; `decode` reads both.
use std::os::fd::RawFd;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::machine::Moment;
use crate::machine::event::ExitStatus;
use crate::machine::snapshot::{self, Snapshot};

/// The format this handover writes.
pub const FORMAT: u32 = 2;
/// The formats this handover reads.
pub const READS: &[u32] = &[1, 2];
/// The largest record read: 10000 workers with full capture buffers fit.
pub const MAX_RECORD: usize = 64 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    /// The handover version that wrote it.
    pub version: String,
    /// `CLOCK_MONOTONIC` when it was written, in nanoseconds.
    pub written_at: u64,
    /// The command line and environment the supervisor was started with:
    /// the new image is executed with them.
    #[serde(with = "os_strings")]
    pub argv: Vec<std::ffi::OsString>,
    #[serde(with = "os_pairs")]
    pub env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// Wall-clock milliseconds since the epoch at the supervisor's first start.
    pub started_ms: u64,
    /// Upgrades before this one.
    pub upgrades: u64,
    pub machine: Snapshot,
    pub listeners: Vec<ListenerRecord>,
    pub notify: NotifyRecord,
    pub einhorn: EinhornRecord,
    #[serde(default)]
    pub control: Option<ControlRecord>,
    #[serde(default)]
    pub pid_file: Option<PidFileRecord>,
    /// Whether this process wrote the status file (it removes it at exit).
    #[serde(default)]
    pub status_written: bool,
    #[serde(default)]
    pub logger: Option<LoggerRecord>,
    #[serde(default)]
    pub capture: Option<CaptureRecord>,
    /// Workers told to stop that exited while their group lives on.
    #[serde(default)]
    pub lingering: Vec<(i32, ExitStatus)>,
    /// The supervisor's own output not yet taken by its reader.
    #[serde(default, with = "hex")]
    pub log_pending: Vec<u8>,
    /// Whether `RELOADING=1` went to the service manager for this upgrade.
    #[serde(default)]
    pub reloading: bool,
    /// Control requests answered by the new image, once it serves.
    #[serde(default)]
    pub waiting: Vec<u64>,
    /// When the upgrade was asked for (offset, ns).
    #[serde(default)]
    pub requested_at: i64,
    /// The new binary's own open file, executed through it: the new image
    /// takes it and closes it like the others.
    #[serde(default)]
    pub binary_fd: Option<RawFd>,
    /// What the configuration took from outside its command line and
    /// environment at the first start (absent: written by a handover
    /// that did not carry it, and the new program looks again).
    #[serde(default)]
    pub config: Option<ConfigRecord>,
    /// The writing image's own binary (`O_PATH`), executed again should
    /// the new program fail to take over.
    #[serde(default)]
    pub previous_binary: Option<RawFd>,
    /// Wall-clock milliseconds since the epoch when the writing image started.
    #[serde(default)]
    pub image_started_ms: Option<u64>,
    /// The event records' numbering, the retained records and the metrics
    /// counted from them (absent: written by a handover without them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<crate::supervisor::events::Carried>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigRecord {
    /// The envdir's values of the variables the configuration reads.
    #[serde(with = "os_pairs")]
    pub envdir: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// Socket activation's fd names, when it was addressed to the supervisor.
    pub activation: Option<Vec<Option<String>>>,
    /// `--user`/`--group`: uid, gid and groups as they were looked up.
    pub credentials: Option<(u32, u32, Vec<u32>)>,
}

impl ConfigRecord {
    pub fn of(given: &crate::config::Given) -> ConfigRecord {
        ConfigRecord {
            envdir: given.envdir.clone(),
            activation: given.activation.as_ref().map(|a| a.names.clone()),
            credentials: given.credentials.as_ref().map(|c| (c.uid, c.gid, c.groups.clone())),
        }
    }

    pub fn given(&self) -> crate::config::Given {
        crate::config::Given {
            envdir: self.envdir.clone(),
            activation: self.activation.clone().map(|names| crate::wire::env::Activation { names }),
            credentials: (self.credentials.clone())
                .map(|(uid, gid, groups)| crate::sys::spawn::Credentials { uid, gid, groups }),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListenerRecord {
    pub fd: RawFd,
    pub key: String,
    pub local: String,
    /// Its `LISTEN_FDNAMES` name.
    #[serde(default)]
    pub name: Option<String>,
    /// The unix socket file this supervisor created: path, device, inode.
    #[serde(default)]
    pub created: Option<(PathBuf, u64, u64)>,
    #[serde(default)]
    pub inherited_fd: Option<RawFd>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotifyRecord {
    pub fd: RawFd,
    /// The private directory's fd, holding its lock.
    pub lock_fd: RawFd,
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnRecord {
    pub fd: RawFd,
    #[serde(with = "hex")]
    pub input: Vec<u8>,
    #[serde(with = "hex")]
    pub output: Vec<u8>,
    pub eof: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EinhornRecord {
    pub fd: RawFd,
    pub path: PathBuf,
    pub conns: Vec<(ConnRecord, Option<i32>)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlRecord {
    pub fd: RawFd,
    pub path: PathBuf,
    pub identity: (u64, u64),
    pub next_id: u64,
    pub conns: Vec<ControlConnRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlConnRecord {
    pub conn: ConnRecord,
    /// Requests in order: the id (None for an error already answered) and
    /// the reply, once made.
    pub waiting: Vec<(Option<u64>, Option<HexBytes>)>,
    pub stopping: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HexBytes(#[serde(with = "hex")] pub Vec<u8>);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PidFileRecord {
    pub fd: RawFd,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoggerRecord {
    pub pid: Option<i32>,
    /// Offsets, ns.
    pub started: i64,
    pub restart_at: Option<i64>,
    /// The log pipe's read end and the command's stdout and stderr
    /// (absent from older records).
    #[serde(default)]
    pub pipe: Option<[RawFd; 3]>,
    /// The least time between this start and the next, in ms.
    #[serde(default)]
    pub delay_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaptureRecord {
    pub next_token: u64,
    pub streams: Vec<StreamRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamRecord {
    pub fd: RawFd,
    pub token: u64,
    pub stderr: bool,
    pub owner: Option<(u64, i32)>,
    #[serde(with = "hex")]
    pub pending: Vec<u8>,
}

impl Record {
    /// Every fd the record names, each once.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.listeners.iter().map(|l| l.fd).collect();
        fds.extend([self.notify.fd, self.notify.lock_fd, self.einhorn.fd]);
        fds.extend(self.einhorn.conns.iter().map(|(c, _)| c.fd));
        if let Some(control) = &self.control {
            fds.push(control.fd);
            fds.extend(control.conns.iter().map(|c| c.conn.fd));
        }
        fds.extend(self.pid_file.iter().map(|p| p.fd));
        fds.extend(self.logger.iter().flat_map(|l| l.pipe.into_iter().flatten()));
        fds.extend(self.capture.iter().flat_map(|c| c.streams.iter().map(|s| s.fd)));
        fds.extend(self.binary_fd);
        fds.extend(self.previous_binary);
        fds
    }

    pub fn encode(&self) -> Vec<u8> {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The record in `bytes`, or one line saying why it cannot be read.
    pub fn decode(bytes: &[u8]) -> crate::error::Result<Record> {
        #[derive(Deserialize)]
        struct Head {
            format: u32,
            #[serde(default)]
            version: String,
        }
        let head: Head =
            serde_json::from_slice(bytes).map_err(|e| Error::runtime(format!("not a state record: {e}")))?;
        if !READS.contains(&head.format) {
            let newer = if head.format > FORMAT { "newer" } else { "older" };
            return Err(Error::runtime(format!(
                "state record format {} (written by handover {}) is {newer} than this handover {} reads ({READS:?})",
                head.format,
                head.version,
                env!("CARGO_PKG_VERSION"),
            )));
        }
        let cannot = |e: String| Error::runtime(format!("cannot read the state record: {e}"));
        if head.format != 1 {
            return serde_json::from_slice(bytes).map_err(|e| cannot(e.to_string()));
        }
        // Format 1: its machine part read as format 2 says it.
        let mut record: Map<String, Value> =
            serde_json::from_slice(bytes).map_err(|e| cannot(e.to_string()))?;
        let written_at = record.get("written_at").and_then(Value::as_u64);
        let written_at = Moment::from_nanos(written_at.ok_or_else(|| cannot("no written_at".into()))?);
        let machine = record.get_mut("machine").map(Value::take).unwrap_or_default();
        let machine = snapshot::from_v1(machine, written_at).map_err(cannot)?;
        record.insert("machine".into(), serde_json::to_value(machine).map_err(|e| cannot(e.to_string()))?);
        serde_json::from_value(Value::Object(record)).map_err(|e| cannot(e.to_string()))
    }
}

/// Bytes as a lowercase hex string.
mod hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            text.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            text.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
        }
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        decode(&text).ok_or_else(|| serde::de::Error::custom("invalid hex string"))
    }

    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let digits = text.as_bytes();
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        let digit = |c: u8| char::from(c).to_digit(16);
        digits.chunks(2).map(|pair| Some((digit(pair[0])? << 4 | digit(pair[1])?) as u8)).collect()
    }
}

/// OS strings as hex (they need not be UTF-8).
mod os_strings {
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::HexBytes;

    pub fn serialize<S: Serializer>(strings: &[OsString], s: S) -> Result<S::Ok, S::Error> {
        let hexed: Vec<HexBytes> = strings.iter().map(|o| HexBytes(o.as_bytes().to_vec())).collect();
        hexed.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OsString>, D::Error> {
        let hexed = Vec::<HexBytes>::deserialize(d)?;
        Ok(hexed.into_iter().map(|h| OsString::from_vec(h.0)).collect())
    }
}

mod os_pairs {
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::HexBytes;

    pub fn serialize<S: Serializer>(pairs: &[(OsString, OsString)], s: S) -> Result<S::Ok, S::Error> {
        let hex = |o: &OsString| HexBytes(o.as_bytes().to_vec());
        let hexed: Vec<(HexBytes, HexBytes)> = pairs.iter().map(|(k, v)| (hex(k), hex(v))).collect();
        hexed.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(OsString, OsString)>, D::Error> {
        let hexed = Vec::<(HexBytes, HexBytes)>::deserialize(d)?;
        Ok(hexed.into_iter().map(|(k, v)| (OsString::from_vec(k.0), OsString::from_vec(v.0))).collect())
    }
}

#[cfg(test)]
mod tests;
