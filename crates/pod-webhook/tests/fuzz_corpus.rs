// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Replays the fuzz seed corpora (`fuzz/corpus/<target>/`, which also keeps every crash the
//! fuzzer ever found) through the fuzz targets' own invariants on stable Rust.

#[path = "../../../fuzz/src/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let files = corpus(target);
    assert!(files.len() >= 10, "{target}: seed corpus too small");
    for file in &files {
        let data = std::fs::read(file).expect("read corpus file");
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            std::panic::resume_unwind(Box::new(format!(
                "{}: invariant broken: {}",
                file.display(),
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default()
            )));
        }
    }
    files.len()
}

#[test]
fn review_corpus_keeps_its_invariants() {
    replay("review", checks::check_review);
}

#[test]
fn flags_corpus_keeps_its_invariants() {
    replay("flags", checks::check_flags);
}

/// The oracle the review check compares against is right for the README example: both the
/// init container and the container gain the variable, nothing else changes.
#[test]
fn oracle_matches_the_readme_example() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/admission.json");
    let input: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("README example")).expect("JSON");
    let pod = &input["request"]["object"];
    let opts = pod_webhook::mutate::MutateOptions {
        apiserver_fqdn: checks::FQDN.into(),
        skip_env_from: false,
    };
    let mut want = pod.clone();
    let env = serde_json::json!([{"name": "KUBERNETES_SERVICE_HOST", "value": "foo.bar."}]);
    want["spec"]["initContainers"][0]["env"] = env.clone();
    want["spec"]["containers"][0]["env"] = env;
    assert_eq!(checks::expected_pod(pod, &opts), want);
    assert!(checks::applicable(&input["request"]));
}
