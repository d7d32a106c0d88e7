//! argv before clap sees it: which options take a value, and Getopt::Long's
//! single-dash long options rewritten to clap's double dash.
//!
//! Which options take a value is read from clap's own definitions (every
//! long name and alias of the command and its subcommands, classified by
//! its action), computed once, so a new option is known here the moment it
//! is declared. An option counts as valued when its action takes values
//! (`Set`, `Append`); handover has no option with an optional value.
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use std::sync::LazyLock;

use clap::CommandFactory;

use super::{HandoverCli, StartServerCli};

/// The words that start a client subcommand instead of the worker command.
const SUBCOMMANDS: [&str; 7] = ["restart", "stop", "status", "upgrade", "reopen", "events", "metrics"];

/// Every long option name of `command` and of its subcommands, aliases
/// included, with whether it takes a value; sorted, each pair once.
pub fn long_options(mut command: clap::Command) -> Vec<(String, bool)> {
    command.build();
    let mut options = BTreeSet::new();
    collect(&command, &mut options);
    options.into_iter().collect()
}

fn collect(command: &clap::Command, options: &mut BTreeSet<(String, bool)>) {
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let valued = arg.get_action().takes_values();
        let aliases = arg.get_all_aliases().unwrap_or_default();
        options.extend(std::iter::once(long).chain(aliases).map(|name| (name.to_owned(), valued)));
    }
    for subcommand in command.get_subcommands() {
        collect(subcommand, options);
    }
}

/// Long options that take a value, under either name (start_server's are a
/// subset of handover's), subcommands included: for telling a value from
/// the worker command.
static VALUED: LazyLock<Vec<String>> = LazyLock::new(|| {
    let commands = [HandoverCli::command(), StartServerCli::command()];
    let valued = commands.into_iter().flat_map(long_options).filter(|(_, valued)| *valued);
    valued.map(|(name, _)| name).collect::<BTreeSet<_>>().into_iter().collect()
});

/// Whether option `name` (or a unique abbreviation of it) takes a value.
pub fn takes_value(name: &str) -> bool {
    let matches = VALUED.iter().filter(|v| v.starts_with(name)).count();
    !name.is_empty() && (VALUED.iter().any(|v| v == name) || matches == 1)
}

/// Getopt::Long accepts `-version` for `--version`; clap does not. Rewrite
/// single-dash long options up to `--` or the first word of the command
/// (under the name `start_server`, which has no subcommands, any word).
pub fn normalize_args(args: Vec<OsString>) -> Vec<OsString> {
    let arg0 = args.first().and_then(|arg0| Path::new(arg0).file_name());
    let compat = arg0.is_some_and(|name| name == "start_server");
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    out.extend(iter.next());
    let mut takes_value = false;
    for arg in iter.by_ref() {
        let Some(text) = arg.to_str().map(str::to_owned) else {
            out.push(arg);
            break;
        };
        if takes_value {
            takes_value = false;
            out.push(arg);
            continue;
        }
        // A lone `-` is a word, not an option (clap takes it so): the
        // worker's command may start with it.
        if text == "--" || text == "-" || !text.starts_with('-') {
            out.push(arg);
            if text == "--" || compat || !SUBCOMMANDS.contains(&text.as_str()) {
                break;
            }
            continue;
        }
        let long = if text.starts_with("--") || text.len() <= 2 { text } else { format!("-{text}") };
        let name = long.trim_start_matches('-');
        if !name.contains('=') {
            takes_value = self::takes_value(name);
        }
        out.push(long.into());
    }
    out.extend(iter);
    out
}

#[cfg(test)]
mod tests {
    use clap::{Arg, ArgAction};

    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(OsString::from).collect();
        normalize_args(args).into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    fn all_options() -> Vec<(String, bool)> {
        [HandoverCli::command(), StartServerCli::command()].into_iter().flat_map(long_options).collect()
    }

    #[test]
    fn a_worker_command_named_dash_keeps_its_arguments() {
        let args = ["handover", "-", "--kill-old-delay", "--", "-control"];
        assert_eq!(norm(&args), args);
    }

    #[test]
    fn every_long_option_is_classified_as_its_clap_action_says() {
        let options = all_options();
        assert!(options.len() > 30, "{options:?}");
        for (name, valued) in &options {
            assert_eq!(takes_value(name), *valued, "--{name}");
        }
        let names: BTreeSet<_> = options.iter().map(|(name, _)| name).collect();
        assert_eq!(
            names.len(),
            options.iter().collect::<BTreeSet<_>>().len(),
            "one meaning per name: {options:?}"
        );
    }

    #[test]
    fn the_derived_set_is_the_one_normalisation_relies_on() {
        let valued: Vec<_> = all_options().into_iter().filter(|(_, v)| *v).map(|(n, _)| n).collect();
        assert_eq!(valued.iter().collect::<BTreeSet<_>>(), VALUED.iter().collect::<BTreeSet<_>>());
        for (name, valued) in all_options() {
            let option = format!("--{name}");
            let after = if valued { "-value" } else { "--value" };
            assert_eq!(norm(&["x", &option, "-value", "prog"]), ["x", &option, after, "prog"], "{option}");
        }
        for name in ["port", "timeout", "control", "stop-on-exit", "ready", "log-format"] {
            assert!(VALUED.iter().any(|v| v == name), "{name}");
        }
        for name in ["daemonize", "restart", "stop", "wait", "json", "log-capture", "help", "version"] {
            assert!(!takes_value(name), "{name}");
        }
    }

    #[test]
    fn abbreviations_are_valued_only_when_unique_among_the_valued() {
        assert!(takes_value("int"));
        assert!(takes_value("ready"));
        assert!(!takes_value("rea"), "ready or ready-timeout");
        assert!(!takes_value("p"), "port, path or pid-file");
        assert!(!takes_value("da"), "daemonize takes no value");
        assert!(!takes_value(""));
    }

    #[test]
    fn a_newly_declared_option_is_picked_up_with_its_aliases() {
        let command = HandoverCli::command()
            .arg(Arg::new("brand-new").long("brand-new").alias("fresh").value_name("X"))
            .arg(Arg::new("flag-new").long("flag-new").action(ArgAction::SetTrue))
            .mut_subcommand("stop", |stop| stop.arg(Arg::new("deep").long("deep").action(ArgAction::Append)));
        let options = long_options(command);
        for (name, valued) in [("brand-new", true), ("fresh", true), ("flag-new", false), ("deep", true)] {
            assert!(options.contains(&(name.to_owned(), valued)), "{name}: {options:?}");
        }
        assert!(!options.iter().any(|(name, _)| name.is_empty()));
    }

    #[test]
    fn subcommand_words_match_the_clap_subcommands() {
        let command = HandoverCli::command();
        let names: BTreeSet<_> = command.get_subcommands().map(|s| s.get_name()).collect();
        assert_eq!(names, SUBCOMMANDS.into_iter().collect());
    }

    mod fuzz;
}
