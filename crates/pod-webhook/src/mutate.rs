// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The patch builder: a Pod's JSON in, the minimal JSON Patch out. Pure, no I/O.
//!
//! The pod is read through a narrow, borrowing view that looks only at the fields the decision
//! needs (the opt-out label, and each container's `env` names and `envFrom`); everything else
//! is skipped while parsing and never re-serialised, so unknown or newer fields survive
//! untouched: the webhook answers with a patch, never with a rewritten pod.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// The environment variable the webhook adds.
pub const ENV_NAME: &str = "KUBERNETES_SERVICE_HOST";

/// The pod label that opts a pod out of the mutation (`disable` or a false value).
pub const INJECT_LABEL: &str = "apiserver-proxy.networking.gardener.cloud/inject";

/// Most entries in each of `spec.initContainers` and `spec.containers`. Kubernetes sets no
/// number; real pods have a handful, rarely dozens. The patch grows with the containers (one
/// operation of up to ~480 bytes each, base64 included, with the longest FQDN), so a pod of
/// many empty containers would make a small request produce an answer many times its size:
/// the server's allowance for how much larger an answer may be than its request
/// ([`crate::review::answer_growth_bound`]) is derived from this number, so that every pod
/// within it is answered.
pub const MAX_CONTAINERS: usize = 100;

/// The longest `--apiserver-fqdn`: 253 characters (Kubernetes' `IsFullyQualifiedDomainName`)
/// and the optional trailing dot.
pub const MAX_FQDN_BYTES: usize = 254;

/// What the mutation needs to know besides the pod.
#[derive(Debug, Clone)]
pub struct MutateOptions {
    /// The value of `KUBERNETES_SERVICE_HOST`: the kube-apiserver's FQDN.
    pub apiserver_fqdn: String,
    /// Leave containers that use `envFrom` alone.
    pub skip_env_from: bool,
}

/// A narrow view of a Pod: only what the mutation looks at.
#[derive(Debug, Default, Deserialize)]
pub struct PodView<'a> {
    #[serde(default, borrow)]
    metadata: Option<MapOnly<MetadataView<'a>>>,
    #[serde(default)]
    spec: Option<MapOnly<SpecView>>,
}

#[derive(Debug, Default, Deserialize)]
struct MetadataView<'a> {
    #[serde(default, borrow)]
    labels: Option<InjectLabel<'a>>,
}

/// The value of [`INJECT_LABEL`] among the labels, found without collecting the map.
#[derive(Debug, Default)]
struct InjectLabel<'a>(Option<Cow<'a, str>>);

#[derive(Debug, Default, Deserialize)]
struct SpecView {
    #[serde(default, rename = "initContainers")]
    init_containers: Option<Containers>,
    #[serde(default)]
    containers: Option<Containers>,
}

/// A list of containers, refused past [`MAX_CONTAINERS`] while it is read, before it can
/// take memory.
#[derive(Debug, Default)]
struct Containers(Vec<MapOnly<ContainerView>>);

impl<'de> Deserialize<'de> for Containers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = Containers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of containers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut list = Vec::new();
                while let Some(container) = seq.next_element()? {
                    if list.len() == MAX_CONTAINERS {
                        return Err(serde::de::Error::custom(format_args!(
                            "more than {MAX_CONTAINERS} entries; a pod may have at most {MAX_CONTAINERS} containers and {MAX_CONTAINERS} init containers"
                        )));
                    }
                    list.push(container);
                }
                Ok(Containers(list))
            }
        }
        deserializer.deserialize_seq(ListVisitor)
    }
}

#[derive(Debug, Default, Deserialize)]
struct ContainerView {
    #[serde(default)]
    env: Option<EnvSummary>,
    #[serde(default, rename = "envFrom")]
    env_from: Option<SeqLen>,
}

/// What matters about a container's `env`: whether it already names [`ENV_NAME`].
#[derive(Debug, Default)]
struct EnvSummary {
    has_service_host: bool,
}

/// One `env` entry, reduced to whether its (required, single) `name` is [`ENV_NAME`]. Read
/// by hand rather than derived: the large pods are mostly `env` entries, and this builds no
/// string per entry.
struct EnvVarIsServiceHost(bool);

/// Reads a string and tells whether it equals the one given, without building it.
#[derive(Clone, Copy)]
struct StrEquals(&'static str);

/// A struct read only from a JSON object. serde's derived structs also accept an array of the
/// field values in order; kube-apiserver never sends that, and reading `"spec": [[{}]]` as
/// init containers would produce a patch that cannot apply, so such input is refused.
#[derive(Debug, Default)]
pub struct MapOnly<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(ObjectVisitor(std::marker::PhantomData))
            .map(MapOnly)
    }
}

/// The length of a JSON array whose elements are skipped.
#[derive(Debug, Default)]
struct SeqLen(usize);

/// A string that borrows from the input when it holds no escapes.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for InjectLabel<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LabelsVisitor;
        impl<'de> Visitor<'de> for LabelsVisitor {
            type Value = InjectLabel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of label names to string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut found = None;
                while let Some(is_inject) = map.next_key_seed(StrEquals(INJECT_LABEL))? {
                    if is_inject {
                        let Str(value) = map.next_value::<Str<'de>>()?;
                        found = Some(value);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(InjectLabel(found))
            }
        }
        deserializer.deserialize_map(LabelsVisitor)
    }
}

impl<'de> Deserialize<'de> for EnvSummary {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnvVisitor;
        impl<'de> Visitor<'de> for EnvVisitor {
            type Value = EnvSummary;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of environment variables")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut has_service_host = false;
                while let Some(EnvVarIsServiceHost(is)) = seq.next_element()? {
                    has_service_host |= is;
                }
                Ok(EnvSummary { has_service_host })
            }
        }
        deserializer.deserialize_seq(EnvVisitor)
    }
}

impl<'de> Deserialize<'de> for EnvVarIsServiceHost {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct VarVisitor;
        impl<'de> Visitor<'de> for VarVisitor {
            type Value = EnvVarIsServiceHost;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut name = None;
                while let Some(is_name) = map.next_key_seed(StrEquals("name"))? {
                    if !is_name {
                        map.next_value::<IgnoredAny>()?;
                    } else if name.is_some() {
                        return Err(serde::de::Error::duplicate_field("name"));
                    } else {
                        name = Some(map.next_value_seed(StrEquals(ENV_NAME))?);
                    }
                }
                name.map(EnvVarIsServiceHost)
                    .ok_or_else(|| serde::de::Error::missing_field("name"))
            }
        }
        deserializer.deserialize_map(VarVisitor)
    }
}

impl<'de> DeserializeSeed<'de> for StrEquals {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for StrEquals {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<bool, E> {
        Ok(value == self.0)
    }
}

impl<'de> Deserialize<'de> for SeqLen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LenVisitor;
        impl<'de> Visitor<'de> for LenVisitor {
            type Value = SeqLen;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut len = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    len += 1;
                }
                Ok(SeqLen(len))
            }
        }
        deserializer.deserialize_seq(LenVisitor)
    }
}

/// Why a pod was left unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The pod carries the opt-out label.
    OptedOut,
    /// Every container already has the variable (or was skipped for `envFrom`).
    NothingToDo,
}

impl SkipReason {
    /// Every reason, for the metric that counts them by reason.
    pub const ALL: [SkipReason; 2] = [SkipReason::OptedOut, SkipReason::NothingToDo];

    /// A short name for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            SkipReason::OptedOut => "opted_out",
            SkipReason::NothingToDo => "nothing_to_do",
        }
    }
}

/// One JSON Patch operation; the webhook only ever adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatchOp<'a> {
    op: &'static str,
    /// The JSON pointer the value goes to.
    pub path: String,
    value: AddValue<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
enum AddValue<'a> {
    /// A whole `env` array holding the one entry.
    List([EnvVar<'a>; 1]),
    /// One entry appended to an existing `env`.
    Entry(EnvVar<'a>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct EnvVar<'a> {
    name: &'static str,
    value: &'a str,
}

/// The result of looking at a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation<'a> {
    /// The pod needs these operations, in order.
    Patch(Vec<PatchOp<'a>>),
    /// The pod stays as it is.
    Unchanged(SkipReason),
}

/// Whether a label value turns the injection off: `disable`, or a value Go's
/// `strconv.ParseBool` reads as false.
pub fn is_opt_out(value: &str) -> bool {
    matches!(
        value,
        "disable" | "false" | "False" | "FALSE" | "f" | "F" | "0"
    )
}

/// Builds a JSON pointer from its reference tokens, escaping `~` and `/` (RFC 6901).
pub fn json_pointer<'t>(tokens: impl IntoIterator<Item = &'t str>) -> String {
    let mut out = String::new();
    for token in tokens {
        out.push('/');
        for c in token.chars() {
            match c {
                '~' => out.push_str("~0"),
                '/' => out.push_str("~1"),
                c => out.push(c),
            }
        }
    }
    out
}

/// Parses the pod JSON into the narrow view. Errors carry the path of the offending field.
pub fn parse_pod(json: &str) -> Result<PodView<'_>, serde_path_to_error::Error<serde_json::Error>> {
    // Fast path first; only a failure pays for tracking the path.
    match serde_json::from_str::<MapOnly<PodView<'_>>>(json) {
        Ok(pod) => Ok(pod.0),
        Err(_) => {
            let mut de = serde_json::Deserializer::from_str(json);
            serde_path_to_error::deserialize::<_, MapOnly<PodView<'_>>>(&mut de).map(|pod| pod.0)
        }
    }
}

/// Decides what to add to the pod: for each init container, then each container, that lacks
/// [`ENV_NAME`] among its `env` names, one `add` operation.
pub fn mutate<'o>(pod: &PodView<'_>, opts: &'o MutateOptions) -> Mutation<'o> {
    let opted_out = pod
        .metadata
        .as_ref()
        .and_then(|m| m.0.labels.as_ref())
        .and_then(|l| l.0.as_deref())
        .is_some_and(is_opt_out);
    if opted_out {
        return Mutation::Unchanged(SkipReason::OptedOut);
    }
    let Some(MapOnly(spec)) = &pod.spec else {
        return Mutation::Unchanged(SkipReason::NothingToDo);
    };
    let entry = EnvVar {
        name: ENV_NAME,
        value: &opts.apiserver_fqdn,
    };
    let mut ops = Vec::new();
    for (field, containers) in [
        ("initContainers", &spec.init_containers),
        ("containers", &spec.containers),
    ] {
        let containers = containers.iter().flat_map(|c| &c.0);
        for (index, MapOnly(container)) in containers.enumerate() {
            if opts.skip_env_from && container.env_from.as_ref().is_some_and(|s| s.0 > 0) {
                continue;
            }
            let index = index.to_string();
            match &container.env {
                Some(env) if env.has_service_host => {}
                Some(_) => ops.push(PatchOp {
                    op: "add",
                    path: json_pointer(["spec", field, &index, "env", "-"]),
                    value: AddValue::Entry(entry.clone()),
                }),
                None => ops.push(PatchOp {
                    op: "add",
                    path: json_pointer(["spec", field, &index, "env"]),
                    value: AddValue::List([entry.clone()]),
                }),
            }
        }
    }
    if ops.is_empty() {
        Mutation::Unchanged(SkipReason::NothingToDo)
    } else {
        Mutation::Patch(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn opts(skip_env_from: bool) -> MutateOptions {
        MutateOptions {
            apiserver_fqdn: "foo.bar.".into(),
            skip_env_from,
        }
    }

    fn patch_of(pod: &Value, skip_env_from: bool) -> Option<Value> {
        let text = pod.to_string();
        let view = parse_pod(&text).expect("pod parses");
        let opts = opts(skip_env_from);
        match mutate(&view, &opts) {
            Mutation::Patch(ops) => Some(serde_json::to_value(ops).expect("serialises")),
            Mutation::Unchanged(_) => None,
        }
    }

    fn host() -> Value {
        json!({"name": "KUBERNETES_SERVICE_HOST", "value": "foo.bar."})
    }

    #[test]
    fn readme_example_patch() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "app", "image": "nginx"}],
        }});
        assert_eq!(
            patch_of(&pod, false),
            Some(json!([
                {"op": "add", "path": "/spec/initContainers/0/env", "value": [host()]},
                {"op": "add", "path": "/spec/containers/0/env", "value": [host()]},
            ]))
        );
    }

    #[test]
    fn table() {
        let cases: Vec<(&str, Value, bool, Option<Value>)> = vec![
            ("no spec", json!({"metadata": {}}), false, None),
            ("no containers", json!({"spec": {}}), false, None),
            ("null containers", json!({"spec": {"containers": null}}), false, None),
            (
                "null env is replaced by a one-element array",
                json!({"spec": {"containers": [{"name": "a", "env": null}]}}),
                false,
                Some(json!([{"op": "add", "path": "/spec/containers/0/env", "value": [host()]}])),
            ),
            (
                "empty env gets an append",
                json!({"spec": {"containers": [{"name": "a", "env": []}]}}),
                false,
                Some(json!([{"op": "add", "path": "/spec/containers/0/env/-", "value": host()}])),
            ),
            (
                "other env gets an append",
                json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}]}}),
                false,
                Some(json!([{"op": "add", "path": "/spec/containers/0/env/-", "value": host()}])),
            ),
            (
                "existing plain value is kept",
                json!({"spec": {"containers": [{"name": "a", "env": [{"name": "KUBERNETES_SERVICE_HOST", "value": "x"}]}]}}),
                false,
                None,
            ),
            (
                "existing valueFrom is kept",
                json!({"spec": {"containers": [{"name": "a", "env": [{"name": "KUBERNETES_SERVICE_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]}]}}),
                false,
                None,
            ),
            (
                "only the containers that lack it",
                json!({"spec": {"containers": [
                    {"name": "a", "env": [{"name": "KUBERNETES_SERVICE_HOST", "value": "x"}]},
                    {"name": "b"},
                ]}}),
                false,
                Some(json!([{"op": "add", "path": "/spec/containers/1/env", "value": [host()]}])),
            ),
            (
                "escaped name still matches",
                json!({"spec": {"containers": [{"name": "a", "env": [{"name": "KUBERNETES_SERVICE_HOST"}]}]}}).to_string().replace("_HOST", "\\u005fHOST").parse::<Value>().expect("valid"),
                false,
                None,
            ),
            (
                "envFrom without the flag",
                json!({"spec": {"containers": [{"name": "a", "envFrom": [{"configMapRef": {"name": "c"}}]}]}}),
                false,
                Some(json!([{"op": "add", "path": "/spec/containers/0/env", "value": [host()]}])),
            ),
            (
                "envFrom with the flag",
                json!({"spec": {"containers": [{"name": "a", "envFrom": [{"configMapRef": {"name": "c"}}]}]}}),
                true,
                None,
            ),
            (
                "empty envFrom with the flag",
                json!({"spec": {"containers": [{"name": "a", "envFrom": []}]}}),
                true,
                Some(json!([{"op": "add", "path": "/spec/containers/0/env", "value": [host()]}])),
            ),
            (
                "label with another value",
                json!({"metadata": {"labels": {INJECT_LABEL: "true"}}, "spec": {"containers": [{"name": "a"}]}}),
                false,
                Some(json!([{"op": "add", "path": "/spec/containers/0/env", "value": [host()]}])),
            ),
        ];
        for (name, pod, skip_env_from, want) in cases {
            assert_eq!(patch_of(&pod, skip_env_from), want, "case {name}");
        }
    }

    #[test]
    fn opt_out_values() {
        for value in ["disable", "false", "False", "FALSE", "f", "F", "0"] {
            let pod = json!({"metadata": {"labels": {"a": "b", INJECT_LABEL: value}},
                             "spec": {"containers": [{"name": "a"}]}});
            let text = pod.to_string();
            let view = parse_pod(&text).expect("parses");
            assert_eq!(
                mutate(&view, &opts(false)),
                Mutation::Unchanged(SkipReason::OptedOut),
                "{value}"
            );
        }
        for value in ["true", "enable", "no", "", "False "] {
            assert!(!is_opt_out(value), "{value}");
        }
    }

    #[test]
    fn wrong_types_name_the_field() {
        let cases = [
            (
                json!({"spec": {"containers": {"name": "a"}}}),
                "spec.containers",
            ),
            (
                json!({"spec": {"containers": [{"name": "a", "env": "x"}]}}),
                "spec.containers[0].env",
            ),
            (
                json!({"spec": {"initContainers": [{"env": [{"value": "x"}]}]}}),
                "spec.initContainers[0].env[0]",
            ),
            (
                json!({"metadata": {"labels": {INJECT_LABEL: 1}}}),
                "metadata.labels.apiserver-proxy.networking.gardener.cloud/inject",
            ),
        ];
        for (pod, path) in cases {
            let text = pod.to_string();
            let err = parse_pod(&text).expect_err("must fail");
            assert_eq!(err.path().to_string(), path, "{pod}");
        }
    }

    #[test]
    fn pointer_escapes_tokens() {
        assert_eq!(json_pointer(["a/b", "c~d", "0"]), "/a~1b/c~0d/0");
        assert_eq!(
            json_pointer(["spec", "containers", "-"]),
            "/spec/containers/-"
        );
    }
}
