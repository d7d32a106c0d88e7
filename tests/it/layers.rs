//! The source tree keeps its layers (README, "Development"): a module uses
//! only modules of lower layers, `unsafe` lives in `sys/` alone, and the
//! state machine makes no syscalls and reads no clock. Read from the
//! sources, test code excluded (it may reach anywhere).
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Each top-level module and its layer, lowest first.
const LAYERS: &[(&str, u8)] = &[
    ("error", 0),
    ("machine", 1),
    ("wire", 1),
    ("sys", 2),
    ("state", 2),
    ("listen", 3),
    ("config", 4),
    ("supervisor", 5),
    ("client", 5),
    ("cli", 6),
    ("drill", 7),
    ("main", 8),
];

fn layer(module: &str) -> u8 {
    let found = LAYERS.iter().find(|(name, _)| *name == module);
    found.unwrap_or_else(|| panic!("src/{module} has no layer in tests/it/layers.rs")).1
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every non-test source file with its top-level module and its code
/// before any `#[cfg(test)]`.
fn code() -> Vec<(String, PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut out = Vec::new();
    for path in files {
        let relative = path.strip_prefix(&src).unwrap();
        let name = relative.file_name().unwrap().to_string_lossy();
        if name.ends_with("tests.rs") || relative.components().any(|c| c.as_os_str() == "tests") {
            continue;
        }
        let top = relative.components().next().unwrap().as_os_str().to_string_lossy();
        let module = top.trim_end_matches(".rs").to_string();
        let text = fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
        out.push((module, relative.to_path_buf(), code));
    }
    out
}

/// The top-level modules named in `crate::NAME` paths.
fn uses(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            found.push(name);
        }
    }
    found
}

#[test]
fn modules_use_only_lower_layers() {
    let mut wrong: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (module, path, code) in code() {
        for used in uses(&code) {
            if used != module && layer(&used) >= layer(&module) {
                wrong.entry(path.display().to_string()).or_default().push(used);
            }
        }
    }
    assert!(wrong.is_empty(), "modules reaching sideways or up (see LAYERS): {wrong:?}");
}

#[test]
fn unsafe_lives_in_sys_alone() {
    let outside: Vec<PathBuf> = (code().into_iter())
        .filter(|(module, _, code)| module != "sys" && code.contains("unsafe"))
        .map(|(_, path, _)| path)
        .collect();
    assert!(outside.is_empty(), "unsafe outside src/sys: {outside:?}");
}

#[test]
fn the_machine_makes_no_syscalls_and_reads_no_clock() {
    for (module, path, code) in code() {
        if module != "machine" {
            continue;
        }
        for banned in ["Instant::now", "SystemTime", "std::fs", "std::io", "std::process", "std::net"] {
            assert!(!code.contains(banned), "{} uses {banned}", path.display());
        }
        // libc's constants (errno and signal numbers) are vocabulary; its functions are not.
        let calls = code
            .match_indices("libc::")
            .filter(|(at, _)| code[at + "libc::".len()..].starts_with(|c: char| c.is_ascii_lowercase()));
        assert_eq!(calls.count(), 0, "{} calls libc", path.display());
        let nix: Vec<&str> =
            code.lines().filter(|l| l.contains("nix::") && !l.contains("nix::sys::signal::Signal")).collect();
        assert!(nix.is_empty(), "{} uses nix beyond the Signal type: {nix:?}", path.display());
    }
}
