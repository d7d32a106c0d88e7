//! Values read from the command line and the environment: durations,
//! signals, exit codes, the watchdog period, the workers' credentials.
//! Each refusal is one line naming the option or variable.
use std::ffi::{OsStr, OsString};
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::fail;
use crate::error::{Error, Result, printable};
use crate::sys::spawn::Credentials;
use crate::wire::env as protocol;

/// The longest duration any option or variable accepts. Longer is a typo
/// (or `u64::MAX`), and every deadline stays far from the clock's limits.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Plain seconds (start_server) or a humane duration (`500ms`, `2s`, `1m`),
/// at most `MAX_DURATION`, for `--OPTION`.
pub fn parse_duration(option: &str, text: &str) -> Result<Duration> {
    parse_duration_of(&format!("--{option}"), text)
}

/// `parse_duration` for a value named `name` (`--interval`, `KILL_OLD_DELAY`).
pub(super) fn parse_duration_of(name: &str, text: &str) -> Result<Duration> {
    let text = text.trim();
    let invalid = |why: &str| fail(format!("invalid {name} value {text:?}: {why}"));
    if text.starts_with('-') {
        return invalid("must not be negative");
    }
    let parsed = if let Ok(secs) = text.parse::<u64>() {
        Some(Duration::from_secs(secs))
    } else if let Ok(secs) = text.parse::<f64>() {
        if !secs.is_finite() {
            return invalid("expected seconds or a duration like 500ms, 2s, 1m");
        }
        // Finite and not negative: only too large a value fails here.
        Duration::try_from_secs_f64(secs).ok()
    } else {
        match humantime::parse_duration(text) {
            Ok(duration) => Some(duration),
            Err(humantime::DurationError::NumberOverflow) => None,
            Err(_) => return invalid("expected seconds or a duration like 500ms, 2s, 1m"),
        }
    };
    match parsed {
        Some(duration) if duration <= MAX_DURATION => Ok(duration),
        _ => invalid("at most 365 days"),
    }
}

/// `TERM`, `SIGTERM`, `term` or a number, as start_server; checked now, not
/// at the first HUP (start_server's quirk Q5).
pub fn parse_signal(option: &str, text: &str) -> Result<Signal> {
    let upper = text.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let parsed = match bare.parse::<i32>() {
        Ok(number) => Signal::try_from(number).ok(),
        Err(_) => Signal::from_str(&format!("SIG{bare}")).ok(),
    };
    match parsed {
        Some(signal @ (Signal::SIGKILL | Signal::SIGSTOP)) => fail(format!(
            "invalid --{option} value {text:?}: {signal} cannot be caught, so the worker could not finish \
             its requests; give TERM or QUIT (--drain-timeout and --stop-timeout end with SIGKILL)"
        )),
        None => fail(format!(
            "invalid --{option} value {text:?}: expected a signal name such as TERM, QUIT, USR1"
        )),
        Some(signal) => Ok(signal),
    }
}

/// `--stop-on-exit` codes: exit statuses, 0 to 255.
pub(super) fn exit_codes(codes: &[i32]) -> Result<Vec<i32>> {
    match codes.iter().find(|code| !(0..=255).contains(*code)) {
        Some(code) => fail(format!("invalid --stop-on-exit value {code}: exit codes run from 0 to 255")),
        None => Ok(codes.to_vec()),
    }
}

/// systemd's watchdog, when it is meant for us: ping at half its period.
pub(super) fn watchdog(env: &[(OsString, OsString)]) -> Option<Duration> {
    let usec: u64 = lookup(env, protocol::WATCHDOG_USEC)?.to_str()?.parse().ok()?;
    let ours = match lookup(env, protocol::WATCHDOG_PID) {
        Some(pid) => pid.to_str().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id()),
        None => true,
    };
    // A period beyond a year is as good as none; pinging then keeps deadlines small.
    (ours && usec > 0).then(|| Duration::from_micros(usec / 2).min(MAX_DURATION))
}

/// `--user`/`--group` as ids, with the user's supplementary groups.
pub(super) fn credentials(user: Option<&str>, group: Option<&str>) -> Result<Option<Credentials>> {
    use nix::unistd::{Gid, Group, Uid, User, getgrouplist};
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    // A number is the id itself; a name or number that names nobody is refused.
    fn found<T>(option: &str, name: &str, id: &str, found: nix::Result<Option<T>>) -> Result<T> {
        let name = printable(name);
        found.ok().flatten().ok_or_else(|| {
            Error::usage(format!(
                "--{option} {name}: no such {option}; give an existing {option} name or {id}"
            ))
        })
    }
    let user = user.map(|name| {
        let by =
            name.parse().map_or_else(|_| User::from_name(name), |uid| User::from_uid(Uid::from_raw(uid)));
        found("user", name, "uid", by)
    });
    let user = user.transpose()?;
    let gid = group.map(|name| {
        let by =
            name.parse().map_or_else(|_| Group::from_name(name), |gid| Group::from_gid(Gid::from_raw(gid)));
        found("group", name, "gid", by).map(|group| group.gid)
    });
    let gid = gid.transpose()?;
    let Some(user) = user else {
        return fail("--group without --user would leave the workers running as root; add --user USER");
    };
    let gid = gid.unwrap_or(user.gid);
    let name = std::ffi::CString::new(user.name.clone()).map_err(|_| Error::usage("bad user name"))?;
    let groups = getgrouplist(&name, gid).unwrap_or_else(|_| vec![gid]);
    if !Uid::effective().is_root() && (user.uid != Uid::effective() || gid != Gid::effective()) {
        return fail("--user and --group need handover to run as root");
    }
    Ok(Some(Credentials {
        uid: user.uid.as_raw(),
        gid: gid.as_raw(),
        groups: groups.iter().map(|g| g.as_raw()).collect(),
    }))
}

/// Perl truth, as start_server reads ENABLE_AUTO_RESTART.
pub(super) fn truthy(value: &OsStr) -> bool {
    !value.is_empty() && value != "0"
}

pub(super) fn lookup<'a>(env: &'a [(OsString, OsString)], name: &str) -> Option<&'a OsStr> {
    env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_os_str())
}
