//! The state record a supervisor image hands to the next across `execve`.
//!
//! One JSON document, in a memfd whose number is the value of
//! `HANDOVER_UPGRADE_STATE` (removed from the environment first thing).
//! Every fd it names was left open by the old image (close-on-exec
//! cleared just before the exec); the new image takes them all at once
//! (`sys::fd::take_carried`) and makes them close-on-exec again.
//!
//! Each part of the supervisor is one field, its record declared beside it
//! (`carry::Carry`). The machine's times are its own `Moment`s, readings
//! of `CLOCK_MONOTONIC` (the same clock for both images: the process is
//! the same). The other parts' instants are offsets in nanoseconds from
//! `written_at`, a reading of the same clock (`carry::Written`), so the
//! time the exec took is accounted for. Bytes (partial lines, unsent
//! replies, pending log output) are hex strings.
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

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::listen::Listener;
use crate::machine::Moment;
use crate::machine::event::ExitStatus;
use crate::machine::snapshot::{self, Snapshot};
use crate::state::PidFile;
use crate::supervisor::capture::Capture;
use crate::supervisor::carry::{Carry, Part, fds_of, hex};
use crate::supervisor::control::ControlServer;
use crate::supervisor::einhorn::EinhornSocket;
use crate::supervisor::events::Events;
use crate::supervisor::logger::Logger;
use crate::supervisor::notify_socket::NotifySocket;
use crate::supervisor::scrape::MetricsServer;

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
    #[serde(with = "os_strings::pairs")]
    pub env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// Wall-clock milliseconds since the epoch at the supervisor's first start.
    pub started_ms: u64,
    /// Upgrades before this one.
    pub upgrades: u64,
    pub machine: Snapshot,
    pub listeners: Part<Vec<Listener>>,
    pub notify: Part<NotifySocket>,
    pub einhorn: Part<EinhornSocket>,
    #[serde(default)]
    pub control: Option<Part<ControlServer>>,
    #[serde(default)]
    pub pid_file: Option<Part<PidFile>>,
    /// Whether this process wrote the status file (it removes it at exit).
    #[serde(default)]
    pub status_written: bool,
    #[serde(default)]
    pub logger: Option<Part<Logger>>,
    #[serde(default)]
    pub capture: Option<Part<Capture>>,
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
    /// When the upgrade was asked for (offset from `written_at`, ns).
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
    pub events: Option<Part<Events>>,
    /// The `--metrics-listen` socket (absent: none, or written by a
    /// handover that bound it again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Part<MetricsServer>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigRecord {
    /// The envdir's values of the variables the configuration reads.
    #[serde(with = "os_strings::pairs")]
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

impl Record {
    /// Every fd the record names, each once.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds = Vec::<Listener>::fds(&self.listeners);
        fds.extend(NotifySocket::fds(&self.notify));
        fds.extend(EinhornSocket::fds(&self.einhorn));
        fds.extend(fds_of::<ControlServer>(self.control.as_ref()));
        fds.extend(fds_of::<PidFile>(self.pid_file.as_ref()));
        fds.extend(fds_of::<Logger>(self.logger.as_ref()));
        fds.extend(fds_of::<Capture>(self.capture.as_ref()));
        fds.extend(fds_of::<MetricsServer>(self.metrics.as_ref()));
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
        if bytes.len() > MAX_RECORD {
            return Err(Error::runtime(format!("the state record is larger than {MAX_RECORD} bytes")));
        }
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
        let machine = snapshot::from_v1(machine, written_at).map_err(|e| cannot(e.message))?;
        record.insert("machine".into(), serde_json::to_value(machine).map_err(|e| cannot(e.to_string()))?);
        serde_json::from_value(Value::Object(record)).map_err(|e| cannot(e.to_string()))
    }
}

/// OS strings as hex (they need not be UTF-8), alone or in pairs.
mod os_strings {
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};

    use serde::{Deserialize, Deserializer, Serializer};

    use crate::supervisor::carry::HexBytes;

    fn hex(o: &OsString) -> HexBytes {
        HexBytes(o.as_bytes().to_vec())
    }

    fn os(h: HexBytes) -> OsString {
        OsString::from_vec(h.0)
    }

    pub fn serialize<S: Serializer>(strings: &[OsString], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(strings.iter().map(hex))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OsString>, D::Error> {
        Ok(Vec::<HexBytes>::deserialize(d)?.into_iter().map(os).collect())
    }

    pub mod pairs {
        use super::*;

        pub fn serialize<S: Serializer>(pairs: &[(OsString, OsString)], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(pairs.iter().map(|(k, v)| (hex(k), hex(v))))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(OsString, OsString)>, D::Error> {
            Ok(Vec::<(HexBytes, HexBytes)>::deserialize(d)?
                .into_iter()
                .map(|(k, v)| (os(k), os(v)))
                .collect())
        }
    }
}

#[cfg(test)]
mod tests;
