// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Review to response (parse, decide, patch, encode) for the README's small pod and for a
//! 20-container pod of about 80 KB (`testdata/admission-large.json`).

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pod_webhook::mutate::MutateOptions;
use pod_webhook::review::{Outcome, review};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn bench(c: &mut Criterion) {
    let opts = MutateOptions {
        apiserver_fqdn: "foo.bar.".into(),
        skip_env_from: false,
    };
    let mut group = c.benchmark_group("review");
    for (name, file, containers) in [
        ("small_pod", "admission.json", 2),
        ("large_pod_20_containers", "admission-large.json", 20),
    ] {
        let body = fixture(file);
        // The fixture must take the full path: parse, mutate, encode.
        let answer = review(&body, &opts).expect("fixture is a valid review");
        assert_eq!(answer.outcome, Outcome::Mutated { containers });
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| review(std::hint::black_box(&body), &opts).expect("valid"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
