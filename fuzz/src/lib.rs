// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Fuzz targets of the pod webhook; the invariants live in [`checks`].

pub mod checks;
