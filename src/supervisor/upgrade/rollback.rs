//! Rolling back: a new program that cannot take over after the exec (its
//! record unreadable, its configuration refused, a part it cannot
//! rebuild) executes the previous image's binary again, which its
//! predecessor kept open from its start and named in
//! `HANDOVER_UPGRADE_ROLLBACK`, with the same record and fds and a line
//! saying why (`HANDOVER_UPGRADE_ROLLED_BACK`). The previous program takes
//! over as after any upgrade, refuses the upgrade to those waiting for it,
//! and goes on as it was. It never rolls back in turn: should it fail too,
//! it stops what it supervised (`resume::give_up`).
//!
//! Nothing is opened between the failure and the exec, so no number the
//! record names can be reused meanwhile; signals stay blocked throughout.
use std::ffi::{CString, OsString};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;

use super::record::Record;
use super::{Handed, ROLLED_BACK};
use crate::error::io_text;
use crate::sys;
use crate::wire::env::HANDOVER_UPGRADE_STATE;

/// The longest reason handed back (it goes into the environment).
const MAX_WHY: usize = 2000;

pub struct Rollback {
    previous: RawFd,
    record: RawFd,
}

impl Rollback {
    /// From `HANDOVER_UPGRADE_ROLLBACK` (`PREVIOUS:STATE`); none for a
    /// program that is itself a roll-back.
    pub fn of(handed: &Handed) -> Option<Rollback> {
        if handed.rolled_back.is_some() {
            return None;
        }
        let (previous, record) = handed.rollback.as_ref()?.to_str()?.split_once(':')?;
        Some(Rollback { previous: previous.parse().ok()?, record: record.parse().ok()? })
    }

    /// Executes the previous binary with the record, saying `why`; returns
    /// only if that failed, with the reason. `record`, when it was read,
    /// names the fds to leave open and the command line; else they are
    /// this process's own (as the exec left them).
    pub fn exec(&self, record: Option<&Record>, why: &str) -> String {
        if let Err(e) = sys::fd::set_cloexec(&[self.previous, self.record], false) {
            return format!("cannot keep the previous program's fds: {}", io_text(&e));
        }
        for fd in record.map(Record::fds).unwrap_or_default() {
            // One already closed makes the previous program refuse the record.
            let _ = sys::fd::set_cloexec(&[fd], false);
        }
        let c = |bytes: &[u8]| CString::new(bytes.iter().copied().filter(|&b| b != 0).collect::<Vec<u8>>());
        let c = |bytes: &[u8]| c(bytes).unwrap_or_default();
        let (argv, pairs): (Vec<OsString>, Vec<(OsString, OsString)>) = match record {
            Some(record) => (record.argv.clone(), record.env.clone()),
            None => (std::env::args_os().collect(), std::env::vars_os().collect()),
        };
        let argv: Vec<CString> = argv.iter().map(|a| c(a.as_bytes())).collect();
        let mut env: Vec<CString> =
            pairs.iter().map(|(k, v)| c(&[k.as_bytes(), b"=", v.as_bytes()].concat())).collect();
        let why = why.as_bytes();
        let why = &why[..why.len().min(MAX_WHY)];
        env.push(c(format!("{HANDOVER_UPGRADE_STATE}={}", self.record).as_bytes()));
        env.push(c(&[ROLLED_BACK.as_bytes(), b"=", why].concat()));
        let e = sys::process::execute_fd(self.previous, &argv, &env);
        format!("cannot execute the previous program again: {}", io_text(&e))
    }
}
