"""The Kubernetes example (examples/kubernetes): valid against the Kubernetes schema, and safe.

Offline: ``kubernetes-validate`` ships the Kubernetes JSON schemas in its wheel, and every validation
here runs with sockets blocked. Each object is validated in strict mode (unknown fields are errors)
against the oldest Kubernetes version the manifest says it needs and the newest the package knows.
Mutated copies prove the validation rejects what it should. The policy the example promises is
then read from the YAML: one run at a time, non-root and least privilege, limits, credentials only
from the Secret, and the CLI arguments the real parser accepts.
"""

from __future__ import annotations

import argparse
import copy
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, latest_version

from spotlake.cli import build_parser
from spotlake.collect import auth

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "examples" / "kubernetes"
CRONJOB = K8S / "cronjob.yaml"
SECRET = K8S / "secret.example.yaml"
DOCKERFILE = ROOT / "examples" / "aws-batch" / "Dockerfile"

#: The oldest version the manifest needs (CronJob timeZone GA, podFailurePolicy on by default) and
#: the newest the installed schemas cover.
VERSIONS = ["1.27.0", latest_version()]

#: The S3 run lock expires after 30 minutes (docs/operations.md): a run must be stopped before.
S3_LOCK_TTL_SECONDS = 30 * 60

Doc = dict[str, Any]


def load(path: Path) -> list[Doc]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert all(isinstance(d, dict) for d in docs), path
    return docs


def by_kind(kind: str) -> Doc:
    found = [d for d in load(CRONJOB) + load(SECRET) if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(cronjob: Doc) -> Doc:
    spec: Doc = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def container(cronjob: Doc) -> Doc:
    containers = pod_spec(cronjob)["containers"]
    assert len(containers) == 1
    assert "initContainers" not in pod_spec(cronjob)
    only: Doc = containers[0]
    return only


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to open a connection fails the test: the schemas must come from the wheel."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access during validation: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


def validate(doc: Doc, version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


# --- schema -------------------------------------------------------------------------------------


def test_the_example_has_the_expected_objects() -> None:
    assert [d["kind"] for d in load(CRONJOB)] == ["ServiceAccount", "PersistentVolumeClaim", "CronJob"]
    assert [d["kind"] for d in load(SECRET)] == ["Secret"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", [CRONJOB, SECRET], ids=lambda p: p.name)
def test_every_object_validates_against_the_kubernetes_schema(
    path: Path, version: str, no_network: None
) -> None:
    for doc in load(path):
        validate(doc, version)  # raises ValidationError or SchemaNotFoundError


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    """A mutation setting the dotted ``path`` (list indexes as numbers) of a CronJob to ``value``."""

    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return mutate


_DELETE = object()
_POD = "spec.jobTemplate.spec.template.spec"
_CONTAINER = f"{_POD}.containers.0"

INVALID = {
    # A misspelt field is silently dropped by a lenient client; strict validation rejects it.
    "misspelt securityContext field": _set(f"{_CONTAINER}.securityContext.runAsNonroot", True),
    "unknown CronJob field": _set("spec.concurrency", "Forbid"),
    "schedule not a string": _set("spec.schedule", 10),
    "runAsUser not an integer": _set(f"{_POD}.securityContext.runAsUser", "10001"),
    "container without a name": _set(f"{_CONTAINER}.name", _DELETE),
    "image not a string": _set(f"{_CONTAINER}.image", ["a", "b"]),
    "secretKeyRef without a key": _set(f"{_CONTAINER}.env.0.valueFrom.secretKeyRef.key", _DELETE),
    "jobTemplate without a pod template": _set("spec.jobTemplate.spec.template", _DELETE),
    "capabilities.drop not a list": _set(f"{_CONTAINER}.securityContext.capabilities.drop", "ALL"),
}


@pytest.mark.parametrize("mutation", list(INVALID.values()), ids=list(INVALID))
def test_the_schema_rejects_a_broken_copy(mutation: Callable[[Doc], None], no_network: None) -> None:
    broken = copy.deepcopy(by_kind("CronJob"))
    mutation(broken)
    for version in VERSIONS:
        with pytest.raises(kubernetes_validate.ValidationError):
            validate(broken, version)


def test_a_removed_api_version_is_an_error_not_a_pass(no_network: None) -> None:
    """batch/v1beta1 CronJob was removed in Kubernetes 1.25: no schema, and that must not pass."""
    old = copy.deepcopy(by_kind("CronJob"))
    old["apiVersion"] = "batch/v1beta1"
    with pytest.raises(SchemaNotFoundError):
        validate(old, VERSIONS[0])


# --- policy ---------------------------------------------------------------------------------------


def test_one_run_every_10_minutes_never_two_at_once() -> None:
    spec = by_kind("CronJob")["spec"]
    assert spec["schedule"] == "*/10 * * * *"
    assert spec["timeZone"] == "Etc/UTC"  # the run times are UTC like the data
    assert spec["concurrencyPolicy"] == "Forbid"
    assert 0 < spec["startingDeadlineSeconds"] < 600  # a late start is skipped before the next is due
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    assert spec.get("suspend") in (None, False)
    job = spec["jobTemplate"]["spec"]
    # An exit code is final; only a pod the cluster took away is started again (uncounted).
    assert job["backoffLimit"] == 0
    assert job["podFailurePolicy"]["rules"] == [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    ]
    assert pod_spec(by_kind("CronJob"))["restartPolicy"] == "Never"  # podFailurePolicy needs it
    assert 0 < job["activeDeadlineSeconds"] < S3_LOCK_TTL_SECONDS


def test_the_pod_runs_as_the_images_unprivileged_user() -> None:
    cronjob = by_kind("CronJob")
    pod = pod_spec(cronjob)
    user = re.search(r"^USER (\d+)\s*$", DOCKERFILE.read_text(), re.M)
    assert user, "the Dockerfile should name its user by number"
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == int(user[1]) != 0
    assert security["runAsGroup"] != 0 and security["fsGroup"] == security["runAsGroup"]
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert by_kind("ServiceAccount")["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == by_kind("ServiceAccount")["metadata"]["name"]
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key), key

    box = container(cronjob)["securityContext"]
    assert box["allowPrivilegeEscalation"] is False
    assert box["readOnlyRootFilesystem"] is True
    assert box.get("privileged", False) is False
    assert box["capabilities"] == {"drop": ["ALL"]}  # and nothing added
    assert "runAsUser" not in box or box["runAsUser"] == security["runAsUser"]


def test_only_mounted_volumes_are_writable_and_the_store_is_on_one() -> None:
    cronjob = by_kind("CronJob")
    volumes = {v["name"]: v for v in pod_spec(cronjob)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container(cronjob)["volumeMounts"]}
    assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]]
    args = build_parser().parse_args(container(cronjob)["args"])
    store_volume = volumes[mounts[args.store]]
    assert (
        store_volume["persistentVolumeClaim"]["claimName"]
        == by_kind("PersistentVolumeClaim")["metadata"]["name"]
    )
    for volume in volumes.values():
        assert set(volume) & {"emptyDir", "persistentVolumeClaim"}, volume  # no hostPath & co.


def test_requests_and_limits_for_cpu_memory_and_scratch_space() -> None:
    resources = container(by_kind("CronJob"))["resources"]

    def quantity(text: str | int) -> float:
        units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}
        match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|)", str(text))
        assert match, text
        return float(match[1]) * units[match[2]]

    for name in ("cpu", "memory", "ephemeral-storage"):
        request, limit = resources["requests"][name], resources["limits"][name]
        assert 0 < quantity(request) <= quantity(limit), name
    # Guaranteed memory: the limit is what the scheduler reserved (no OOM kill under pressure).
    assert quantity(resources["requests"]["memory"]) == quantity(resources["limits"]["memory"])


def test_credentials_come_only_from_the_secret() -> None:
    env = container(by_kind("CronJob"))["env"]
    secret = by_kind("Secret")
    secret_name = secret["metadata"]["name"]
    refs = {}
    for item in env:
        if item["name"].startswith(("AZURE_", "SPOTLAKE_SLACK")):
            assert "value" not in item, f"{item['name']} must come from the Secret, not a literal"
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret_name
            refs[item["name"]] = ref
    # Exactly what AzureCredentials.from_env reads, required; the Slack webhook optional.
    assert set(refs) == {*auth._ENV_VARS, auth.SLACK_WEBHOOK_ENV}
    for name in auth._ENV_VARS:
        assert refs[name]["key"] == name and not refs[name].get("optional", False), name
    assert refs[auth.SLACK_WEBHOOK_ENV]["optional"] is True
    assert set(secret["stringData"]) == set(refs)
    assert "envFrom" not in container(by_kind("CronJob"))  # nothing else leaks in from the Secret


def test_the_secret_example_holds_placeholders_only() -> None:
    secret = by_kind("Secret")
    assert secret["type"] == "Opaque" and "data" not in secret
    for key, value in secret["stringData"].items():
        assert "REPLACE" in value, f"{key}: a real-looking value in the example"
    text = CRONJOB.read_text() + SECRET.read_text()
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text)
    assert "hooks.slack.com/services" not in text


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_the_container_runs_the_images_entrypoint_with_arguments_the_cli_accepts() -> None:
    box = container(by_kind("CronJob"))
    assert "command" not in box  # the Dockerfile's ENTRYPOINT ["spotlake"]
    assert re.search(r"(:[\w.-]+|@sha256:[0-9a-f]{64})$", box["image"]), "pin a tag or digest"
    assert not box["image"].endswith(":latest")
    argv = box["args"]
    assert all(isinstance(a, str) for a in argv)
    args = build_parser().parse_args(argv)
    assert argv[:2] == ["collect", "azure"] and args.quiet
    assert args.credentials == "env" and args.lock_timeout > 0
    # Exact option names only (argparse alone would accept an abbreviation).
    azure = _subparsers(_subparsers(build_parser())["collect"])["azure"]
    known = {option for action in azure._actions for option in action.option_strings}
    assert {a for a in argv if a.startswith("--")} <= known
