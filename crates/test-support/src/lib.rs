// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! What the integration tests of both binaries share. A library rather than a module each test
//! includes: every test uses a different subset, and unused public items of a library are fine.

mod process;
mod read;

pub use process::{KillOnDrop, cargo_bin};
pub use read::{read_until, read_until_close};

#[cfg(feature = "webhook")]
pub mod certs;
#[cfg(feature = "sidecar")]
pub mod netns;
#[cfg(feature = "webhook")]
pub mod webhook;
