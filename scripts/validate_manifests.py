#!/usr/bin/env python3
"""Validates Kubernetes and KEDA manifests against their real schemas, strictly.

    validate_manifests.py --kube-version 1.30 --crds DIR [--group G] [--expect-kind K] FILE...
    validate_manifests.py --self-test --kube-version 1.30 --crds DIR FILE...

FILE is a YAML file (every document in it) or a Markdown file (every ```yaml block in it that
has a `kind`; the other blocks must still parse). Built-in kinds are checked with the schemas
that the `kubernetes-validate` package bundles (the OpenAPI schemas of each Kubernetes release,
strict: unknown fields are errors, as with `kubectl apply --validate=strict`). Kinds of a custom
resource (KEDA's ScaledObject) are checked with the openAPIV3Schema of the CRD files in DIR (from
KEDA's Go module), made strict the same way.

On top of the schemas, shareworker's rules: the Deployment's grace period outlasts
SHAREWORKER_SHUTDOWN_GRACE and its probes are on /healthz and /readyz, port 9464; the ScaledObject
queries max(shareworker_desired_replicas{group="..."}), the HPA uses that External metric, and
both scale a Deployment given alongside them (when there is one).

--self-test first checks that FILE passes, then breaks copies of its manifests in ways that the
schemas or the rules must reject, and fails when one of them is accepted.

Exit status: 0 when everything is valid, 1 when something is not, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import copy
import glob
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import jsonschema
import kubernetes_validate
import yaml

METRICS_PORT = 9464
KEDA_QUERY = re.compile(r'^max\(shareworker_desired_replicas\{group="([^"]+)"\}\)$')
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass
class Manifest:
    """One Kubernetes object and where it was read."""

    where: str
    data: dict[str, Any]

    @property
    def name(self) -> str:
        meta = self.data.get("metadata") or {}
        return f"{self.data.get('kind')}/{meta.get('name') if isinstance(meta, dict) else '?'}"


def load(path: str) -> tuple[list[Manifest], list[str]]:
    """The manifests in a YAML or Markdown file, and errors for what does not parse."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".md"):
        # (line of the block, its text) for each ```yaml fence.
        blocks = [
            (text[: m.start()].count("\n") + 2, m.group(1))
            for m in re.finditer(r"^```ya?ml[^\n]*\n(.*?)^```", text, re.M | re.S)
        ]
    else:
        blocks = [(1, text)]
    manifests, errors = [], []
    for line, block in blocks:
        try:
            docs = list(yaml.safe_load_all(block))
        except yaml.YAMLError as e:
            errors.append(f"{path}:{line}: not YAML: {e}")
            continue
        for i, doc in enumerate(docs):
            where = f"{path}:{line}" + (f" (document {i + 1})" if len(docs) > 1 else "")
            if path.endswith(".md") and not (isinstance(doc, dict) and "kind" in doc):
                continue  # other YAML on the page: it only has to parse
            if not isinstance(doc, dict):
                errors.append(f"{where}: a manifest is a mapping, found {type(doc).__name__}")
            else:
                manifests.append(Manifest(where, doc))
    return manifests, errors


def strict(schema: Any) -> Any:
    """The schema with unknown fields forbidden wherever the API server would drop them."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def load_crds(directory: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema, from the CRD files in a directory."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for version in spec["versions"]:
                    schema = version["schema"]["openAPIV3Schema"]
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    schemas[key] = strict(schema)
    if not schemas:
        raise SystemExit(f"error: no CustomResourceDefinition in {directory}/*.yaml")
    return schemas


def schema_errors(
    m: Manifest, kube_versions: list[str], crds: dict[tuple[str, str], dict[str, Any]]
) -> list[str]:
    """What the schemas say about one manifest."""
    api, kind = m.data.get("apiVersion"), m.data.get("kind")
    if not isinstance(api, str) or not isinstance(kind, str):
        return [f"{m.where}: `apiVersion` and `kind` must be strings"]
    group = api.split("/")[0] if "/" in api else ""
    if "." in group and not group.endswith(".k8s.io"):
        schema = crds.get((api, kind))
        if schema is None:
            known = ", ".join(f"{a} {k}" for a, k in sorted(crds))
            return [f"{m.where}: no CRD schema for {api} {kind} (known: {known})"]
        validator = jsonschema.Draft4Validator(schema)
        errors = [
            f"{m.where} {m.name}: {path_of(e)}: {e.message}"
            for e in sorted(validator.iter_errors(m.data), key=lambda e: list(e.absolute_path))
        ]
        meta = m.data.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
            errors.append(f"{m.where} {m.name}: metadata.name: required")
        return errors
    errors = []
    for version in kube_versions:
        try:
            kubernetes_validate.validate(m.data, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{m.where} {m.name}: Kubernetes {version}: {path_of(e)}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{m.where}: {e.message}")
    return errors


def path_of(e: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in e.absolute_path) or "(top)"


def seconds(duration: str) -> float:
    """Seconds in a shareworker duration such as "500ms", "30s", "5m", "1h"."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*", duration)
    if not m:
        raise ValueError(f"not a duration: {duration!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def dig(data: Any, *path: Any) -> Any:
    for key in path:
        if isinstance(data, dict):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
        else:
            return None
    return data


def rule_errors(manifests: list[Manifest], group: str | None) -> list[str]:
    """shareworker's own rules for its manifests."""
    errors = []
    deployments = {dig(m.data, "metadata", "name") for m in manifests if m.data.get("kind") == "Deployment"}
    for m in manifests:
        kind, name = m.data.get("kind"), dig(m.data, "metadata", "name")
        at = f"{m.where} {m.name}"
        if isinstance(name, str) and not DNS_1123_LABEL.match(name):
            errors.append(f"{at}: metadata.name must be a DNS-1123 label (lower case, digits, '-')")
        if kind == "Deployment":
            errors += deployment_rules(m, at)
        elif kind == "ScaledObject":
            target = dig(m.data, "spec", "scaleTargetRef", "name")
            if deployments and target not in deployments:
                errors.append(f"{at}: spec.scaleTargetRef.name {target!r} is none of the Deployments {sorted(deployments)}")
            triggers = [t for t in dig(m.data, "spec", "triggers") or [] if isinstance(t, dict)]
            prom = [t for t in triggers if t.get("type") == "prometheus"]
            if not prom:
                errors.append(f"{at}: no prometheus trigger")
            for t in prom:
                query = dig(t, "metadata", "query")
                match = KEDA_QUERY.match(query) if isinstance(query, str) else None
                if not match:
                    errors.append(f'{at}: the prometheus query must be max(shareworker_desired_replicas{{group="<group>"}}), found {query!r}')
                elif group is not None and match.group(1) != group:
                    errors.append(f"{at}: the query is for group {match.group(1)!r}, expected {group!r}")
                if dig(t, "metadata", "threshold") != "1" or t.get("metricType", "AverageValue") != "AverageValue":
                    errors.append(f"{at}: the hint is a replica count: use metricType AverageValue with threshold \"1\"")
        elif kind == "HorizontalPodAutoscaler":
            target = dig(m.data, "spec", "scaleTargetRef")
            if deployments and (dig(target, "kind") != "Deployment" or dig(target, "name") not in deployments):
                errors.append(f"{at}: spec.scaleTargetRef must be one of the Deployments {sorted(deployments)}")
            ext = [
                dig(x, "external")
                for x in dig(m.data, "spec", "metrics") or []
                if dig(x, "type") == "External" and dig(x, "external", "metric", "name") == "shareworker_desired_replicas"
            ]
            if not ext:
                errors.append(f"{at}: no External metric shareworker_desired_replicas")
            for x in ext:
                selected = dig(x, "metric", "selector", "matchLabels", "group")
                if not isinstance(selected, str) or (group is not None and selected != group):
                    errors.append(f"{at}: the metric must select group {group or '<group>'!r}, found {selected!r}")
                if dig(x, "target", "type") != "AverageValue" or str(dig(x, "target", "averageValue")) != "1":
                    errors.append(f"{at}: the hint is a replica count: use target type AverageValue, averageValue \"1\"")
    return errors


def deployment_rules(m: Manifest, at: str) -> list[str]:
    errors = []
    pod = dig(m.data, "spec", "template", "spec") or {}
    period = pod.get("terminationGracePeriodSeconds", 30)
    workers = [c for c in pod.get("containers") or [] if isinstance(c, dict)]
    for c in workers:
        env = {e.get("name"): e.get("value") for e in c.get("env") or [] if isinstance(e, dict)}
        grace = env.get("SHAREWORKER_SHUTDOWN_GRACE")
        if grace is None:
            errors.append(f"{at}: container {c.get('name')!r} sets no SHAREWORKER_SHUTDOWN_GRACE")
            continue
        try:
            if not isinstance(period, int) or period <= seconds(str(grace)):
                errors.append(f"{at}: terminationGracePeriodSeconds ({period}) must be longer than SHAREWORKER_SHUTDOWN_GRACE ({grace})")
        except ValueError as e:
            errors.append(f"{at}: SHAREWORKER_SHUTDOWN_GRACE: {e}")
        ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or [] if isinstance(p, dict)}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = dig(c, probe, "httpGet") or {}
            port = get.get("port")
            port = ports.get(port, port) if isinstance(port, str) else port
            if get.get("path") != path or port != METRICS_PORT:
                errors.append(f"{at}: container {c.get('name')!r}: {probe} must be an httpGet of {path} on port {METRICS_PORT}")
    if not workers:
        errors.append(f"{at}: no containers")
    return errors


def validate(
    files: list[str], kube_versions: list[str], crds: dict, group: str | None, kinds: Sequence[str] = ()
) -> list[str]:
    errors, manifests = [], []
    for path in files:
        found, bad = load(path)
        errors += bad
        if not found and not bad:
            errors.append(f"{path}: no manifest found")
        manifests += found
    for kind in kinds:
        if not any(m.data.get("kind") == kind for m in manifests):
            errors.append(f"no {kind} in {', '.join(files)}")
    for m in manifests:
        errors += schema_errors(m, kube_versions, crds)
    errors += rule_errors(manifests, group)
    return errors


# Breakages that must be rejected: (kind, what, change). Each change edits a copy in place.
def _set(path: list[Any], value: Any) -> Callable[[dict], None]:
    def change(d: dict) -> None:
        for key in path[:-1]:
            d = d[key]
        d[path[-1]] = value

    return change


def _delete(path: list[Any]) -> Callable[[dict], None]:
    def change(d: dict) -> None:
        for key in path[:-1]:
            d = d[key]
        del d[path[-1]]

    return change


BREAKAGES: list[tuple[str, str, Callable[[dict], None]]] = [
    ("Deployment", "a misspelt field", _set(["spec", "template", "spec", "containers", 0, "livenesProbe"], {})),
    ("Deployment", "a number as a string", _set(["spec", "template", "spec", "terminationGracePeriodSeconds"], "45")),
    ("Deployment", "no selector", _delete(["spec", "selector"])),
    ("Deployment", "a grace period shorter than the shutdown grace", _set(["spec", "template", "spec", "terminationGracePeriodSeconds"], 20)),
    ("Deployment", "the readiness probe on /healthz", _set(["spec", "template", "spec", "containers", 0, "readinessProbe", "httpGet", "path"], "/healthz")),
    ("HorizontalPodAutoscaler", "a misspelt field", _set(["spec", "maxReplica"], 20)),
    ("HorizontalPodAutoscaler", "no maxReplicas", _delete(["spec", "maxReplicas"])),
    ("HorizontalPodAutoscaler", "a target without a type", _delete(["spec", "metrics", 0, "external", "target", "type"])),
    ("HorizontalPodAutoscaler", "another metric", _set(["spec", "metrics", 0, "external", "metric", "name"], "kafka_lag")),
    ("ScaledObject", "a trigger without a type", _delete(["spec", "triggers", 0, "type"])),
    ("ScaledObject", "a misspelt field", _set(["spec", "scaleTargetRef", "nam"], "x")),
    ("ScaledObject", "a number where KEDA wants a string", _set(["spec", "triggers", 0, "metadata", "threshold"], 1)),
    ("ScaledObject", "a string where KEDA wants a number", _set(["spec", "maxReplicaCount"], "20")),
    ("ScaledObject", "a sum() query", _set(["spec", "triggers", 0, "metadata", "query"], 'sum(shareworker_desired_replicas{group="g"})')),
    ("ScaledObject", "no scale target", _delete(["spec", "scaleTargetRef"])),
]


def self_test(files: list[str], kube_versions: list[str], crds: dict, group: str | None, kinds: list[str]) -> int:
    errors = validate(files, kube_versions, crds, group, kinds)
    if errors:
        print("self-test: the given manifests must be valid first:", *errors, sep="\n  ")
        return 1
    manifests = [m for path in files for m in load(path)[0]]
    kinds = {m.data["kind"] for m in manifests}
    failed = 0
    for kind, what, change in BREAKAGES:
        if kind not in kinds:
            print(f"self-test: FAIL: no {kind} among the manifests to break")
            failed += 1
            continue
        broken = [copy.deepcopy(m) for m in manifests]
        target = next(m for m in broken if m.data["kind"] == kind)
        change(target.data)
        found = [e for m in broken for e in schema_errors(m, kube_versions, crds)] + rule_errors(broken, group)
        if found:
            print(f"self-test: ok: {kind} with {what} is rejected: {found[0]}")
        else:
            print(f"self-test: FAIL: {kind} with {what} is accepted")
            failed += 1
    print(f"self-test: {len(BREAKAGES) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--kube-version", action="append", required=True, help="Kubernetes release(s) to check against")
    p.add_argument("--crds", required=True, metavar="DIR", help="directory of CRD YAML files (KEDA's config/crd/bases)")
    p.add_argument("--group", help="the share group the autoscalers must select")
    p.add_argument("--expect-kind", action="append", default=[], metavar="KIND", help="fail unless a manifest of this kind is among FILE")
    p.add_argument("--self-test", action="store_true", help="also check that broken copies are rejected")
    args = p.parse_args()
    crds = load_crds(args.crds)
    if args.self_test:
        return self_test(args.files, args.kube_version, crds, args.group, args.expect_kind)
    errors = validate(args.files, args.kube_version, crds, args.group, args.expect_kind)
    for e in errors:
        print(f"invalid: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"valid: {', '.join(args.files)} (Kubernetes {', '.join(args.kube_version)}; CRDs from {args.crds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
