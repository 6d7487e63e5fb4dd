// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Flag values and whole command lines: the FQDN check against an independent oracle.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    apiserver_proxy_fuzz::checks::check_flags(data);
});
