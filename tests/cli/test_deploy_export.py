"""`nexml deploy export`: bundles to run a deployment elsewhere, on a real store (both backends).

Manifests are parsed back with yaml.safe_load_all and checked against the deployment's size; the
bundle's artifact files are checked against MODEL.json and MODEL.json against the registry; each
export is an audit event; refusals write nothing. The CLI is run as a real process, and plain
`nexml deploy REF --name N` keeps working beside the new subcommand.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from nexml_ext import __version__
from nexml_ext.deploy import export, sizes
from nexml_ext.errors import (
    IntegrityError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    PermissionDenied,
)
from nexml_ext.governance import tokens
from tests.workspace.conftest import world  # noqa: F401 - the fixture, shared


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _bundle_text(root: Path) -> str:
    return "\n".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in root.rglob("*")
        if p.is_file() and "artifact" not in p.relative_to(root).parts
    )


def _check_artifact(bundle: Path, artifact_sha256: str) -> None:
    """The bundle's artifact is exactly the registered one: MODEL.json by its registry hash,
    every other file by MODEL.json, and nothing else."""
    artifact = bundle / "artifact"
    manifest_path = artifact / "MODEL.json"
    assert _sha256(manifest_path) == artifact_sha256
    manifest = json.loads(manifest_path.read_text())
    present = {p.relative_to(artifact).as_posix() for p in artifact.rglob("*") if p.is_file()}
    assert present == set(manifest["files"]) | {"MODEL.json"}
    for rel, entry in manifest["files"].items():
        assert _sha256(artifact / rel) == entry["sha256"], rel
        assert (artifact / rel).stat().st_size == entry["size"]


LABEL = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize("name", ["main", "Credit_Risk.EU", "x" * 64, "a-" * 32, "9._-x"])
def test_kubernetes_names_and_labels_are_valid_for_any_deployment_name(name):
    spec = export.BundleSpec(
        deployment=name, model=name, version=12, artifact_sha256="ab" * 32,
        artifact_uri="/srv/nexml/artifacts/models/m/1", artifact_root="/srv/nexml/artifacts",
        size=sizes.get("large"), target="kubernetes", made_at=datetime(2026, 1, 2, 3, 4, 5),
        made_by="mark", made_by_role="manager", nexml_version=__version__,
    )
    manifests = export.kubernetes_manifests(spec)
    for document in manifests.values():
        metadata = document["metadata"]
        assert DNS_LABEL.match(metadata["name"]) and len(metadata["name"]) <= 63
        for value in metadata["labels"].values():
            assert LABEL.match(value) and len(value) <= 63, value
    secret = manifests["deployment.yaml"]["spec"]["template"]["spec"]["containers"][0][
        "envFrom"][0]["secretRef"]["name"]
    assert DNS_LABEL.match(secret) and len(secret) <= 63
    assert manifests["deployment.yaml"]["metadata"]["annotations"]["nexml-ext/deployment"] == name


def test_export_docker_and_kubernetes_bundles(world, tmp_path):  # noqa: F811
    s = world.stack
    version = world.approved(s.dana, "credit-risk")
    s.mark.deploy(version.ref, name="main", size="medium")
    medium = sizes.get("medium")

    docker = s.mark.export_deployment("main", target="docker", out=tmp_path / "docker")
    assert docker.path == tmp_path / "docker" and docker.target == "docker"
    assert docker.model_ref == version.ref and docker.artifact_sha256 == version.artifact_sha256
    top = {p.name for p in docker.path.iterdir()}
    assert top == {"Dockerfile", ".dockerignore", "README.md", "bundle.json", "artifact"}
    _check_artifact(docker.path, version.artifact_sha256)

    dockerfile = (docker.path / "Dockerfile").read_text()
    lines = dockerfile.splitlines()
    assert "FROM python:3.11-slim" in lines
    assert f'RUN pip install "nexml-ext=={__version__}"' in lines
    user = [line for line in lines if line.startswith("USER ")]
    assert user == ["USER 10001"]  # a non-root user, set before the command
    assert lines.index("USER 10001") < next(
        i for i, line in enumerate(lines) if line.startswith("CMD ")
    )
    copy = next(line for line in lines if line.startswith("COPY "))
    assert json.loads(copy.split(" ", 2)[2]) == ["artifact/", version.artifact_uri + "/"]
    assert f"ENV NEXML_ARTIFACT_ROOT={json.dumps(s.settings.artifact_root)}" in lines
    chmod = json.loads(next(line for line in lines if line.startswith('RUN ["chmod"'))[4:])
    assert str(Path(version.artifact_uri).parent) in chmod  # the user can reach the artifact
    assert "EXPOSE 8000" in lines
    assert "/healthz" in dockerfile and "HEALTHCHECK" in dockerfile
    cmd = json.loads(next(line for line in lines if line.startswith("CMD "))[4:])
    assert cmd == ["nexml", "server", "--host", "0.0.0.0", "--port", "8000",
                   "--processes", "2", "--concurrency", str(medium.concurrency)]
    assert (docker.path / ".dockerignore").read_text().splitlines()[-2:] == ["*", "!artifact"]
    readme = (docker.path / "README.md").read_text()
    for variable in ("NEXML_DATABASE_URL", "NEXML_ARTIFACT_ROOT", "NEXML_TOKEN"):
        assert variable in readme

    kube = s.mark.export_deployment("main", target="kubernetes", out=tmp_path / "k8s")
    assert {"deployment.yaml", "service.yaml", "hpa.yaml"} <= {p.name for p in kube.path.iterdir()}
    _check_artifact(kube.path, version.artifact_sha256)
    docs = {}
    for name in ("deployment.yaml", "service.yaml", "hpa.yaml"):
        [doc] = list(yaml.safe_load_all((kube.path / name).read_text()))
        docs[doc["kind"]] = doc
    deployment, service, hpa = docs["Deployment"], docs["Service"], docs["HorizontalPodAutoscaler"]
    assert deployment["apiVersion"] == "apps/v1"
    assert service["apiVersion"] == "v1" and service["spec"]["type"] == "ClusterIP"
    assert hpa["apiVersion"] == "autoscaling/v2"

    spec = deployment["spec"]
    assert spec["replicas"] == medium.min_replicas
    labels = deployment["metadata"]["labels"]
    assert labels["nexml-ext/deployment"] == "main"
    assert labels["nexml-ext/model"] == "credit-risk"
    assert labels["nexml-ext/model-version"] == str(version.version)
    assert version.artifact_sha256.startswith(labels["nexml-ext/artifact-sha256"])
    assert len(labels["nexml-ext/artifact-sha256"]) >= 12
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["resources"] == {
        "requests": {"cpu": medium.cpu_request, "memory": medium.memory_request},
        "limits": {"cpu": medium.cpu_limit, "memory": medium.memory_limit},
    }
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    port = container["ports"][0]
    assert port["containerPort"] == 8000 and service["spec"]["ports"][0]["targetPort"] in (
        8000, port["name"])
    assert container["command"][container["command"].index("--processes") + 1] == "2"
    [env_from] = container["envFrom"]
    assert env_from["secretRef"]["name"]  # environment from a Secret, by name only
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (
        medium.min_replicas, medium.max_replicas)
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["averageUtilization"] == medium.cpu_target_percent

    # bundle.json says what was exported and lists every file's hash.
    meta = json.loads((kube.path / "bundle.json").read_text())
    assert meta["deployment"] == "main" and meta["model_ref"] == version.ref
    assert meta["artifact_sha256"] == version.artifact_sha256
    assert (meta["size"], meta["target"], meta["made_by"]) == ("medium", "kubernetes", "mark")
    assert meta["nexml_version"] == __version__ and meta["made_at"].endswith("Z")
    for rel, digest in meta["files"].items():
        assert _sha256(kube.path / rel) == digest, rel
    assert "deployment.yaml" in meta["files"] and "artifact/MODEL.json" in meta["files"]

    # No secret goes into a bundle: no token, no database URL.
    for bundle in (docker.path, kube.path):
        text = _bundle_text(bundle)
        for token in s.tokens.values():
            # the whole secret (its urlsafe text may hold "_", so split it the token's way)
            assert token not in text and tokens.parse_token(token)[1] not in text
        assert s.settings.database_url not in text

    # Each export is an audit event: who, which deployment and version, hash, target.
    events = s.cora.audit.log(action="deployment.export")
    assert [(e.actor, e.object_ref, e.data["target"]) for e in events] == [
        ("mark", "deployment:main", "docker"), ("mark", "deployment:main", "kubernetes")]
    for event, bundle in zip(events, (docker, kube), strict=True):
        assert event.data["version"] == version.ref
        assert event.data["artifact_sha256"] == version.artifact_sha256
        assert event.data["bundle_sha256"] == _sha256(bundle.path / "bundle.json")
    assert s.cora.audit.verify().ok


def test_export_refusals_write_nothing(world, tmp_path):  # noqa: F811
    s = world.stack
    version = world.approved(s.dana)
    s.mark.deploy(version.ref, name="main")
    out = tmp_path / "out" / "bundle"
    before = len(s.cora.audit.log())

    with pytest.raises(PermissionDenied, match="data_scientist dana may not export deployment"):
        s.dana.export_deployment("main", target="docker", out=out)
    with pytest.raises(NotFound, match="deployment 'nosuch' not found"):
        s.mark.export_deployment("nosuch", target="docker", out=out)
    with pytest.raises(InvalidInput, match="unknown export target 'helm'"):
        s.mark.export_deployment("main", target="helm", out=out)
    assert not (tmp_path / "out").exists()

    # A non-empty directory is kept unless forced; forced, it is replaced whole.
    out.mkdir(parents=True)
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(InvalidInput, match="not empty"):
        s.mark.export_deployment("main", target="docker", out=out)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert len(s.cora.audit.log()) == before
    s.mark.export_deployment("main", target="docker", out=out, force=True)
    assert not (out / "mine.txt").exists() and (out / "Dockerfile").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["bundle"]  # no leftovers beside it

    # A changed artifact is refused by name; nothing is written and nothing recorded.
    stored = Path(version.artifact_uri)
    victim = next(p for p in sorted(stored.rglob("*")) if p.is_file() and p.name != "MODEL.json")
    original = victim.read_bytes()
    victim.write_bytes(original + b"\0")
    events = len(s.cora.audit.log())
    listing = sorted(tmp_path.iterdir())
    with pytest.raises(IntegrityError, match="no longer matches the registered hash"):
        s.mark.export_deployment("main", target="kubernetes", out=tmp_path / "tampered")
    assert not (tmp_path / "tampered").exists()
    assert sorted(tmp_path.iterdir()) == listing  # not even the staging directory is left
    victim.write_bytes(original)

    # An inactive deployment cannot be exported.
    s.mark.retire(version.ref, reason="superseded")
    with pytest.raises(InvalidTransition, match="cannot export 'main': the deployment is retired"):
        s.mark.export_deployment("main", target="docker", out=tmp_path / "retired")
    assert not (tmp_path / "retired").exists()
    assert len(s.cora.audit.log()) == events + 1  # the retirement only


def _cli(stack, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXML_")}
    env.update(NEXML_HOME=str(stack.settings.home), NEXML_TOKEN=token,
               NEXML_DATABASE_URL=stack.settings.database_url,
               NEXML_ARTIFACT_ROOT=str(stack.settings.artifact_root))
    return subprocess.run([sys.executable, "-m", "nexml_ext.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def _one_line_error(result: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    assert result.returncode == code, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr


def test_cli_deploy_and_export(world, tmp_path):  # noqa: F811
    s = world.stack
    version = world.approved(s.dana)
    mark = s.tokens["mark"]

    deployed = _cli(s, mark, "deploy", version.ref, "--name", "credit", "--size", "large")
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout.strip() == f"deployment credit now serves {version.ref} (large)"
    [d] = s.mark.deployments()
    assert (d.name, d.model_ref, d.size, d.status) == ("credit", version.ref, "large", "active")

    out = tmp_path / "bundles" / "credit"
    missing = _cli(s, mark, "deploy", "export", "nosuch", "--target", "docker", "--out", str(out))
    _one_line_error(missing, 3, "deployment 'nosuch' not found")
    assert not (tmp_path / "bundles").exists()

    refused = _cli(s, s.tokens["dana"], "deploy", "export", "credit", "--target", "docker",
                   "--out", str(out))
    _one_line_error(refused, 4, "may not export deployment credit")
    assert not (tmp_path / "bundles").exists()

    exported = _cli(s, mark, "deploy", "export", "credit", "--target", "kubernetes",
                    "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.splitlines()[0] == (
        f"exported deployment credit ({version.ref}, artifact {version.artifact_sha256[:12]}) "
        f"for kubernetes to {out}"
    )
    large = sizes.get("large")
    [hpa] = list(yaml.safe_load_all((out / "hpa.yaml").read_text()))
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (
        large.min_replicas, large.max_replicas)
    [event] = s.cora.audit.log(action="deployment.export")
    assert (event.actor, event.data["target"], event.data["out"]) == ("mark", "kubernetes", str(out))
