// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Which events become lines: `tracing` target directives (`info`, `debug,netlink_proto=error`,
//! `RUST_LOG`), checked so that they select some of the program's own lines, and events named
//! [`ALWAYS`] (a start failure, the fatal error, a report of dropped lines) shown whatever they
//! say.

use tracing::Metadata;
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Layer};

use super::InitError;

/// The name of events shown whatever the filter: `error!(name: ALWAYS, …)`. Only what an
/// operator must see goes there: why the program could not start or stopped, and lost lines.
pub const ALWAYS: &str = "always shown";

/// The directives, parsed and checked. Empty directives (a stray or trailing comma) are left
/// out, as `env_logger` and `EnvFilter` leave them out. Refused: a directive that is not one
/// (named in the error), a filter without any directive, and one that selects none of the
/// lines of the crates in `own` (a typo such as `pod-webhook=debug`, a library alone), unless
/// it switches logging off outright (`off`).
pub(super) fn parse(directives: &str, own: &[&str]) -> Result<Selection, InitError> {
    let refused = |problem: String| InitError::Filter {
        directives: directives.to_string(),
        problem,
    };
    let hint = || {
        format!(
            "name a level (`info`, `debug`) or one of its targets ({}), e.g. `info,{}=debug`; \
             `off` for none",
            own.join(", "),
            own.first().copied().unwrap_or("TARGET"),
        )
    };
    let parts: Vec<&str> = directives
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect();
    if parts.is_empty() {
        return Err(refused(format!("it holds no directive: {}", hint())));
    }
    for part in &parts {
        if let Err(error) = part.parse::<Targets>() {
            return Err(refused(format!("directive {part:?}: {error}")));
        }
    }
    let targets: Targets = parts
        .join(",")
        .parse()
        .map_err(|error: tracing_subscriber::filter::ParseError| refused(error.to_string()))?;
    let off_outright = targets.default_level() == Some(LevelFilter::OFF);
    if !off_outright && !selects_own(&targets, own) {
        return Err(refused(format!(
            "it selects none of this program's lines: {}",
            hint()
        )));
    }
    Ok(Selection(targets))
}

/// Whether some directive can enable a line of a crate in `own`: a level without a target, or
/// a target that is one of them, a module in one, or a prefix of one's name (targets match by
/// prefix).
fn selects_own(targets: &Targets, own: &[&str]) -> bool {
    let on = |level: LevelFilter| level != LevelFilter::OFF;
    if targets.default_level().is_some_and(on) {
        return true;
    }
    targets.iter().any(|(target, level)| {
        on(level)
            && own.iter().any(|crate_name| {
                crate_name.starts_with(target)
                    || target
                        .strip_prefix(crate_name)
                        .is_some_and(|rest| rest.starts_with("::"))
            })
    })
}

/// The filter: the directives, and the events named [`ALWAYS`] at warn and error whatever
/// the directives say.
#[derive(Debug)]
pub(super) struct Selection(Targets);

fn always(meta: &Metadata<'_>) -> bool {
    meta.name() == ALWAYS
}

impl<S: tracing::Subscriber> Layer<S> for Selection {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if always(meta) {
            Interest::always()
        } else {
            Layer::<S>::register_callsite(&self.0, meta)
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        always(meta) || Layer::<S>::enabled(&self.0, meta, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // Whatever the directives, warnings and errors named ALWAYS must reach the callsite.
        let hint = Layer::<S>::max_level_hint(&self.0).unwrap_or(LevelFilter::TRACE);
        Some(hint.max(LevelFilter::WARN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &[&str] = &["pod_webhook", "apiserver_proxy_pod_webhook", "common"];

    #[test]
    fn directives_must_select_some_of_the_programs_lines() {
        for (directives, accepted) in [
            ("info", true),
            ("debug,netlink_proto=error", true),
            ("pod_webhook=debug", true),
            ("pod_webhook::server=debug", true),
            ("common=warn", true),
            // Targets match by prefix: `pod` selects pod_webhook's lines.
            ("pod=debug", true),
            (" info , hyper=debug ", true),
            ("off", true),
            ("OFF", true),
            ("warn,pod_webhook=off", true),
            // A typo'd crate name, a library alone, a crate switched off: nothing of ours.
            ("pod-webhook=debug", false),
            ("podwebhook=debug", false),
            ("hyper=debug", false),
            ("rustls=trace,h2=debug", false),
            ("pod_webhook=off", false),
            ("pod_webhookx=debug", false),
            // A stray or trailing comma is left out.
            ("debug,", true),
            (",debug", true),
            ("info,,pod_webhook=debug", true),
            ("pod-webhook=debug,", false),
            // No directive at all.
            ("", false),
            ("   ", false),
            (",", false),
            // An unknown target alone selects nothing of ours; beside a level it is harmless.
            ("nonesuch", false),
            ("info,nonesuch=debug", true),
            // Not a directive at all.
            ("pod_webhook=loud", false),
            ("a=b=c", false),
        ] {
            let result = parse(directives, OWN);
            assert_eq!(result.is_ok(), accepted, "{directives:?}: {result:?}");
        }
    }

    #[test]
    fn a_refusal_says_what_is_wrong_and_how_to_fix_it() {
        let text = |directives| {
            parse(directives, OWN)
                .map(|_| String::new())
                .unwrap_or_else(|error| crate::error_chain(&error))
        };
        assert_eq!(
            text("pod-webhook=debug"),
            "invalid log filter \"pod-webhook=debug\": it selects none of this program's lines: \
             name a level (`info`, `debug`) or one of its targets (pod_webhook, apiserver_proxy_pod_webhook, \
             common), e.g. `info,pod_webhook=debug`; `off` for none"
        );
        assert_eq!(
            text(" , "),
            "invalid log filter \" , \": it holds no directive: name a level (`info`, `debug`) \
             or one of its targets (pod_webhook, apiserver_proxy_pod_webhook, common), e.g. \
             `info,pod_webhook=debug`; `off` for none"
        );
        assert_eq!(
            text("info,pod_webhook=loud"),
            "invalid log filter \"info,pod_webhook=loud\": directive \"pod_webhook=loud\": error \
             parsing level filter: expected one of \"off\", \"error\", \"warn\", \"info\", \
             \"debug\", \"trace\", or a number 0-5"
        );
        assert!(text("x=loud").starts_with("invalid log filter \"x=loud\": "));
    }

    /// The events a subscriber filtered by `directives` lets through, of a warning and an
    /// error plain and named [`ALWAYS`].
    fn let_through(directives: &str) -> Vec<String> {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt as _;

        #[derive(Debug, Default, Clone)]
        struct Seen(Arc<Mutex<Vec<String>>>);
        impl<S: tracing::Subscriber> Layer<S> for Seen {
            fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
                let meta = event.metadata();
                let name = if meta.name() == ALWAYS {
                    "always"
                } else {
                    "plain"
                };
                if let Ok(mut seen) = self.0.lock() {
                    seen.push(format!("{name} {}", meta.level()));
                }
            }
        }

        let seen = Seen::default();
        let selection = parse(directives, &["common"]).expect("accepted");
        let subscriber = tracing_subscriber::registry()
            .with(seen.clone())
            .with(selection);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!("plain");
            tracing::error!("plain");
            tracing::warn!(name: ALWAYS, "always");
            tracing::error!(name: ALWAYS, "always");
        });
        seen.0.lock().expect("the events").clone()
    }

    #[test]
    fn events_named_always_pass_whatever_the_filter() {
        for (directives, want) in [
            ("off", &["always WARN", "always ERROR"][..]),
            ("error", &["plain ERROR", "always WARN", "always ERROR"]),
            ("common=off,info", &["always WARN", "always ERROR"]),
            (
                "warn",
                &["plain WARN", "plain ERROR", "always WARN", "always ERROR"],
            ),
        ] {
            assert_eq!(let_through(directives), want, "{directives}");
        }
    }
}
