// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Raw bytes → AdmissionReview parsing → patch → response, with the patch applied to the pod.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    apiserver_proxy_fuzz::checks::check_review(data);
});
