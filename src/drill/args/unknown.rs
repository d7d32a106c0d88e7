//! A long option before the server command that neither the drill nor
//! handover knows is a typo (`--keep-alive` for `--keepalive`): the drill
//! says so, with clap's suggestion, before anything starts. Handover
//! accepts a unique abbreviation of its options, and so does this check.
//! With `--supervisor PROGRAM`, whose options the drill cannot know, only
//! an option that looks like one of the drill's own is refused.
use std::ffi::OsString;
use std::sync::LazyLock;

use clap::CommandFactory;
use clap::error::{ContextKind, ContextValue};

use super::Drill;

/// Handover's long options (and its subcommands'), with whether each takes a value.
static HANDOVER: LazyLock<Vec<(String, bool)>> =
    LazyLock::new(|| crate::cli::long_options(crate::cli::HandoverCli::command()));

/// Whether handover takes `--name`: exactly, or as a unique abbreviation.
fn handover_knows(name: &str) -> bool {
    let prefixed = HANDOVER.iter().filter(|(o, _)| o.starts_with(name)).count();
    HANDOVER.iter().any(|(o, _)| o == name) || (!name.is_empty() && prefixed == 1)
}

/// clap's "did you mean" for `--name` among `command`'s options.
fn suggestion(command: clap::Command, option: &str) -> Option<String> {
    let e = command.try_get_matches_from(["x", option]).err()?;
    match e.get(ContextKind::SuggestedArg)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(list) => list.first().cloned(),
        _ => None,
    }
}

/// The first of `theirs` (the arguments `split` left to the supervisor)
/// that is a long option nobody takes, as the line that refuses it;
/// `foreign`: the supervisor is not handover (`--supervisor`).
pub fn unknown(theirs: &[OsString], foreign: bool) -> Option<String> {
    let mut iter = theirs.iter().map(|a| a.to_string_lossy());
    while let Some(arg) = iter.next() {
        if arg == "--" || !arg.starts_with('-') {
            return None;
        }
        let Some(name) = arg.strip_prefix("--").map(|n| n.split('=').next().unwrap_or(n)) else { continue };
        if handover_knows(name) {
            if crate::cli::takes_value(name) && !arg.contains('=') {
                iter.next();
            }
            continue;
        }
        let option = format!("--{name}");
        let ours = suggestion(Drill::command(), &option);
        if foreign && ours.is_none() {
            continue;
        }
        let theirs = (!foreign).then(|| suggestion(crate::cli::HandoverCli::command(), &option)).flatten();
        // Of two suggestions, the one that shares more of what was typed.
        let shared = |s: &Option<String>| {
            s.as_ref().map_or(0, |s| s.chars().zip(option.chars()).take_while(|(a, b)| a == b).count())
        };
        let meant = if shared(&theirs) > shared(&ours) { theirs } else { ours };
        let hint = match meant {
            Some(meant) => format!("; did you mean '{meant}'?"),
            None => String::new(),
        };
        return Some(format!(
            "unexpected argument '{option}': neither a drill nor a supervisor option{hint} \
             (see handover drill --help)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(args: &[&str], foreign: bool) -> Option<String> {
        unknown(&args.iter().map(OsString::from).collect::<Vec<_>>(), foreign)
    }

    #[test]
    fn a_typo_is_refused_with_the_option_meant() {
        let said = check(&["--port", "0", "--keep-alive", "--", "app"], false).unwrap();
        assert_eq!(
            said,
            "unexpected argument '--keep-alive': neither a drill nor a supervisor option; \
             did you mean '--keepalive'? (see handover drill --help)"
        );
        let said = check(&["--connection=4", "--", "app"], true).unwrap();
        assert!(said.contains("'--connection'") && said.contains("'--connections'"), "{said}");
        let said = check(&["--drain-timout", "1s", "--", "app"], false).unwrap();
        assert!(said.contains("did you mean '--drain-timeout'?"), "{said}");
    }

    #[test]
    fn handover_options_their_abbreviations_values_and_the_command_pass() {
        assert_eq!(
            check(&["--port", "0", "--interv", "1", "--signal-on-hup=QUIT", "--", "--x"], false),
            None
        );
        assert_eq!(check(&["--port", "--keep-alive", "app", "--keep-alive"], false), None);
        assert_eq!(check(&["--port", "0", "app", "--whatever"], false), None);
        assert_eq!(check(&["--their-own-option", "--", "app"], true), None);
        assert!(check(&["--their-own-option", "--", "app"], false).is_some());
    }
}
