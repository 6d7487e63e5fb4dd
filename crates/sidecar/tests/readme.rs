// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! docs/sidecar.md's flag table names exactly the flags of `--help`, with the same defaults.

use std::collections::BTreeMap;
use std::process::Command;

const SIDECAR: &str = env!("CARGO_BIN_EXE_apiserver-proxy-sidecar");

/// Flag name → default (`None` when `--help` shows none), from the short help.
fn flags_in_help() -> BTreeMap<String, Option<String>> {
    let output = Command::new(SIDECAR)
        .arg("-h")
        .output()
        .expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("utf-8 help");
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') && line.starts_with("  ") {
            let long = trimmed
                .split([' ', ',', '['])
                .find(|word| word.starts_with("--"))
                .expect("a long flag");
            flags.insert(long.to_string(), None);
            current = Some(long.to_string());
        }
        if let (Some(flag), Some(at)) = (&current, line.find("[default: ")) {
            let rest = &line[at + "[default: ".len()..];
            let default = rest.split(']').next().unwrap_or_default().to_string();
            flags.insert(flag.clone(), Some(default));
        }
    }
    flags
}

/// Flag name → default, from the docs/sidecar.md table between the flags markers.
fn flags_in_readme() -> BTreeMap<String, Option<String>> {
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/sidecar.md"
    ))
    .expect("docs/sidecar.md");
    let start = readme
        .find("<!-- flags: apiserver-proxy-sidecar -->")
        .expect("flags marker in docs/sidecar.md");
    let table = &readme[start..];
    let table = &table[..table.find("<!-- /flags -->").expect("end marker")];
    let mut flags = BTreeMap::new();
    for row in table.lines().filter(|row| row.starts_with("| `-")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let long = cells[1]
            .split(", ")
            .map(|name| name.trim_matches('`'))
            .find(|name| name.starts_with("--"))
            .expect("a long flag in the row");
        // `lo` → lo; `""` (off) → ""; (required) or empty → no default.
        let default = cells[2]
            .strip_prefix('`')
            .and_then(|cell| cell.split('`').next())
            .map(str::to_string);
        flags.insert(long.to_string(), default);
    }
    flags
}

#[test]
fn readme_flag_table_matches_help() {
    let help = flags_in_help();
    let readme = flags_in_readme();
    assert!(
        help.len() > 20,
        "parsed too few flags from --help: {help:?}"
    );
    assert_eq!(
        readme, help,
        "docs/sidecar.md's flag table differs from --help"
    );
}

/// docs/sidecar.md's rule table shows each rule the sidecar writes, in its order, with the
/// comment it carries: an operator searching `iptables-save` for the documented text finds it.
#[test]
fn the_rule_table_shows_the_rules_and_comments_the_sidecar_writes() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/sidecar.md"
    ))
    .expect("docs/sidecar.md");
    let table: Vec<Vec<String>> = docs
        .lines()
        .map(str::trim)
        .skip_while(|line| *line != "| table | chain | rule | why |")
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().trim_matches('`').to_string())
                .collect()
        })
        .collect();
    let written: Vec<Vec<String>> = sidecar::rules::wanted_rules([10, 96, 0, 2].into(), 443)
        .into_iter()
        .map(|rule| {
            let shown: Vec<&str> = rule
                .bare
                .iter()
                .map(|token| match token.as_str() {
                    "10.96.0.2/32" => "IP",
                    "443" => "PORT",
                    token => token,
                })
                .collect();
            // The table leaves out the `-m tcp` that iptables-save adds.
            let shown = shown.join(" ").replace(" -m tcp", "");
            let comment = rule
                .spec
                .windows(2)
                .find(|pair| pair[0] == "--comment")
                .map(|pair| pair[1].clone())
                .expect("a comment");
            assert_eq!(comment, format!("apiserver-proxy: {}", rule.why));
            vec![
                rule.table.to_string(),
                rule.chain.to_string(),
                shown,
                rule.why.to_string(),
            ]
        })
        .collect();
    assert_eq!(table, written);
}
