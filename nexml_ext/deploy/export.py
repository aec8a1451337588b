"""Deployment bundles: what ``nexml deploy export`` writes to run a deployment elsewhere.

A bundle is a directory a container build can use as its context:

- ``artifact/``: the model artifact, copied through the artifact store's verified fetch (every
  file checked against ``MODEL.json`` and ``MODEL.json`` against the registry);
- ``Dockerfile`` and ``.dockerignore``: python:3.11-slim, nexml-ext at this package's version, a
  non-root user, the artifact, ``nexml server`` with the size's processes and concurrency;
- ``README.md``: how to build and run it and which environment it needs;
- for Kubernetes, ``deployment.yaml``, ``service.yaml`` and ``hpa.yaml``, sized by the size;
- ``bundle.json``: what was exported, from which artifact, by whom, when, and each file's
  SHA-256.

The gateway in the image is the same ``nexml server``: it keeps recording every decision in the
shared store (``NEXML_DATABASE_URL``), so a bundle never holds a secret: the database URL and the
token come from the environment (a Kubernetes Secret). Manifests are built as data and written
with ``yaml.safe_dump``. This module writes files only; the Workspace decides who may export,
what, and records it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ..errors import InvalidInput
from .sizes import Size

TARGETS: tuple[str, ...] = ("docker", "kubernetes")
BUNDLE_FORMAT = "nexml-bundle/1"
ARTIFACT_DIR = "artifact"
PORT = 8000
UID = 10001
#: Where the artifact goes in the image when the store is not a local folder.
IMAGE_ARTIFACT_COPY = "/opt/nexml/artifact"
#: The writable scratch directory (an emptyDir) of a Kubernetes pod.
SCRATCH = "/nexml-scratch"
_LABEL_PREFIX = "nexml-ext/"
_UNSAFE_PATH = re.compile(r"[\x00-\x1f\x7f$\"\\]")


@dataclass(frozen=True)
class BundleSpec:
    """Everything a bundle says, gathered by the Workspace from the registry."""

    deployment: str
    model: str
    version: int
    artifact_sha256: str
    artifact_uri: str
    artifact_root: str  # the artifact store's root, as its URIs are built from it
    size: Size
    target: str
    made_at: datetime  # naive UTC
    made_by: str
    made_by_role: str
    nexml_version: str

    @property
    def model_ref(self) -> str:
        return f"{self.model}:{self.version}"

    @property
    def local_store(self) -> bool:
        """The store is a local folder (its URIs are absolute paths)."""
        return self.artifact_root.startswith("/")

    @property
    def shown_root(self) -> str:
        """The store's root as a bundle may show it (no credentials from a URL)."""
        return redact(self.artifact_root)

    @property
    def shown_uri(self) -> str:
        return redact(self.artifact_uri)


@dataclass(frozen=True)
class Bundle:
    """A written bundle: where, what, and the SHA-256 of its ``bundle.json``."""

    path: Path
    deployment: str
    model_ref: str
    target: str
    artifact_sha256: str
    files: tuple[str, ...]
    bundle_sha256: str


def redact(url: str) -> str:
    """``url`` without any ``user:password@`` part."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1", url)


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise InvalidInput(f"unknown export target {target!r}: choose one of {', '.join(TARGETS)}")
    return target


def check_destination(out: str | Path, force: bool) -> Path:
    """The absolute destination; InvalidInput when it is a file, or a non-empty directory and
    ``force`` is not set. Nothing is written."""
    path = Path(out).expanduser().absolute()
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise InvalidInput(f"cannot export to {path}: it exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise InvalidInput(
            f"cannot export to {path}: the directory is not empty (--force replaces it)"
        )
    return path


def new_staging(out: Path) -> Path:
    """A fresh private directory beside ``out`` (same filesystem, so publishing is a rename)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.nexml-export-{uuid.uuid4().hex[:12]}"
    staging.mkdir(mode=0o700)
    return staging


def write_bundle(staging: Path, spec: BundleSpec) -> Bundle:
    """Write every bundle file into ``staging``, whose ``artifact/`` already holds the verified
    copy of the artifact. Returns the bundle as it will be once published at its destination."""
    if not (staging / ARTIFACT_DIR / "MODEL.json").is_file():
        raise InvalidInput(f"{staging} holds no fetched artifact")
    _write(staging / "Dockerfile", dockerfile(spec))
    _write(staging / ".dockerignore", DOCKERIGNORE)
    _write(staging / "README.md", readme(spec))
    if spec.target == "kubernetes":
        for name, document in kubernetes_manifests(spec).items():
            _write(staging / name, _yaml(spec, document))
    files = {
        rel: _sha256(staging / rel)
        for rel in sorted(
            p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()
        )
    }
    document = {
        "format": BUNDLE_FORMAT,
        "deployment": spec.deployment,
        "model": spec.model,
        "version": spec.version,
        "model_ref": spec.model_ref,
        "artifact_sha256": spec.artifact_sha256,
        "artifact_uri": spec.shown_uri,
        "size": spec.size.name,
        "size_spec": asdict(spec.size),
        "target": spec.target,
        "made_at": spec.made_at.isoformat(timespec="microseconds") + "Z",
        "made_by": spec.made_by,
        "made_by_role": spec.made_by_role,
        "nexml_version": spec.nexml_version,
        "files": files,
    }
    data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    (staging / "bundle.json").write_bytes(data)
    return Bundle(
        path=staging,
        deployment=spec.deployment,
        model_ref=spec.model_ref,
        target=spec.target,
        artifact_sha256=spec.artifact_sha256,
        files=(*files, "bundle.json"),
        bundle_sha256=hashlib.sha256(data).hexdigest(),
    )


@contextmanager
def publishing(staging: Path, out: Path) -> Iterator[Path]:
    """Move ``staging`` to ``out`` (replacing what is there), then run the body; if the body
    raises, take the bundle away again and put back what was replaced."""
    replaced = None
    if out.is_dir():
        if any(out.iterdir()):
            replaced = out.parent / f".{out.name}.nexml-replaced-{uuid.uuid4().hex[:12]}"
            os.rename(out, replaced)
        else:
            out.rmdir()
    try:
        os.rename(staging, out)
    except BaseException:
        if replaced is not None:
            os.rename(replaced, out)
        raise
    try:
        yield out
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        if replaced is not None:
            os.rename(replaced, out)
        raise
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)


# --- the files -----------------------------------------------------------------------------------

DOCKERIGNORE = """\
# Only the artifact goes into the image; manifests, notes and bundle.json stay out of it.
*
!artifact
"""


def image_artifact_path(spec: BundleSpec) -> str:
    """Where the image holds the artifact: at its registered path when the store is a local
    folder (so the gateway serves it from the image), else a reference copy."""
    if spec.local_store:
        if _UNSAFE_PATH.search(spec.artifact_uri):
            raise InvalidInput(
                f"cannot export {spec.deployment!r}: the artifact path {spec.artifact_uri!r} "
                "holds characters a Dockerfile cannot carry safely ($, quotes, backslashes or "
                "control characters)"
            )
        return spec.artifact_uri
    return IMAGE_ARTIFACT_COPY


def server_command(spec: BundleSpec) -> list[str]:
    size = spec.size
    return [
        "nexml", "server", "--host", "0.0.0.0", "--port", str(PORT),  # noqa: S104 - in a container
        "--processes", str(size.processes), "--concurrency", str(size.concurrency),
    ]


def dockerfile(spec: BundleSpec) -> str:
    artifact = image_artifact_path(spec)
    probe = (
        "import urllib.request; "
        f"urllib.request.urlopen('http://127.0.0.1:{PORT}/healthz', timeout=4)"
    )
    lines = [
        f"# nexml-ext gateway for deployment {spec.deployment}: {spec.model_ref}, "
        f"size {spec.size.name}.",
        f"# Artifact MODEL.json sha256 {spec.artifact_sha256}.",
        f"# Made by `nexml deploy export` ({spec.made_by}, {spec.made_at:%Y-%m-%d %H:%M} UTC).",
        "# No secret is built in: NEXML_DATABASE_URL and NEXML_TOKEN come from the environment.",
        "FROM python:3.11-slim",
        "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 "
        "PIP_DISABLE_PIP_VERSION_CHECK=1",
        "RUN apt-get update \\",
        " && apt-get install -y --no-install-recommends libgomp1 \\",
        " && rm -rf /var/lib/apt/lists/*",
        f'RUN pip install "nexml-ext=={spec.nexml_version}"',
        f"RUN useradd --create-home --uid {UID} --user-group nexml",
        f"COPY --chown={UID}:{UID} {json.dumps([f'{ARTIFACT_DIR}/', artifact + '/'])}",
        # The user must be able to reach it (a registered path may pass through /root).
        f"RUN {json.dumps(['chmod', 'o+x', *_ancestors(artifact)])}",
    ]
    if spec.local_store:
        lines.append(f"ENV NEXML_ARTIFACT_ROOT={json.dumps(spec.artifact_root)}")
    lines += [
        "ENV NEXML_HOME=/home/nexml/.nexml",
        f"USER {UID}",
        "WORKDIR /home/nexml",
        f"EXPOSE {PORT}",
        "HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \\",
        f"  CMD {json.dumps(['python', '-c', probe])}",
        f"CMD {json.dumps(server_command(spec))}",
    ]
    return "\n".join(lines) + "\n"


def _ancestors(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def readme(spec: BundleSpec) -> str:
    name = k8s_name(spec.deployment)
    size = spec.size
    where = (
        "The image carries the artifact at its\n  registered path and sets "
        f"`NEXML_ARTIFACT_ROOT` to\n  `{spec.artifact_root}`,\n  so this deployment is served "
        "from the image; point `NEXML_ARTIFACT_ROOT` at a shared\n  store (e.g. `s3://...`) "
        "to serve the store's other deployments too."
        if spec.local_store
        else "Set it to the store the registry uses,\n  "
        f"`{spec.shown_root}`; the image keeps a reference copy of this artifact at\n  "
        f"`{IMAGE_ARTIFACT_COPY}`."
    )
    text = f"""\
# nexml-ext gateway bundle: deployment `{spec.deployment}`

Serves `{spec.model_ref}` (artifact `MODEL.json` SHA-256 `{spec.artifact_sha256}`) with size
`{size.name}`: {size.processes} server process(es) per container, {size.concurrency} concurrent
connections each (callers beyond that get 503). Made by {spec.made_by} on
{spec.made_at:%Y-%m-%d %H:%M} UTC for target `{spec.target}` with nexml-ext {spec.nexml_version};
`bundle.json` lists every file's SHA-256.

The container runs `nexml server`, which serves every active deployment of the store it is
pointed at and records each decision in that store's audit trail before answering.

## Environment (required; never written into this bundle)

- `NEXML_DATABASE_URL`: the shared store, e.g.
  `postgresql+psycopg://USER:PASSWORD@HOST:5432/nexml`; the decision trail every replica
  appends to.
- `NEXML_TOKEN`: a token of the user the gateway runs as (`nexml token create`); keep it in a
  secret store.
- `NEXML_ARTIFACT_ROOT`: where artifacts are read from. {where}

## Docker

```
docker build -t {name}:{spec.artifact_sha256[:12]} .
docker run --rm -p {PORT}:{PORT} --env-file nexml.env {name}:{spec.artifact_sha256[:12]}
```

`nexml.env` (yours, outside this folder) holds the variables above. The image runs as a
non-root user; its HEALTHCHECK calls `/healthz`.
"""
    if spec.target == "kubernetes":
        text += f"""
## Kubernetes

```
kubectl create secret generic {secret_name(spec.deployment)} \\
  --from-literal=NEXML_DATABASE_URL=... --from-literal=NEXML_TOKEN=...
kubectl apply -f deployment.yaml -f service.yaml -f hpa.yaml
```

Push the image where the cluster pulls from and set `image:` in `deployment.yaml`. The pods
read their environment from the Secret `{secret_name(spec.deployment)}`, run as a non-root user
with a read-only root filesystem, are ready when `/readyz` answers (the store is reachable)
and alive while `/healthz` answers. The HorizontalPodAutoscaler keeps {size.min_replicas} to
{size.max_replicas} replicas at {size.cpu_target_percent}% average CPU; each requests
{size.cpu_request} CPU and {size.memory_request} memory (limits {size.cpu_limit} and
{size.memory_limit}). `/metrics` sums a pod's processes: scrape every pod.
"""
    return text


def k8s_name(deployment: str) -> str:
    """A DNS-1123 name for the deployment's Kubernetes objects: ``nexml-<name>``."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", deployment.lower()).strip("-") or "deployment"
    return f"nexml-{cleaned}"[:63].rstrip("-")


def secret_name(deployment: str) -> str:
    return f"{k8s_name(deployment)[:56].rstrip('-')}-env"


def _label_value(value: str) -> str:
    """A Kubernetes label value: at most 63 characters, alphanumeric at both ends."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


def kubernetes_manifests(spec: BundleSpec) -> dict[str, dict[str, Any]]:
    """``deployment.yaml``, ``service.yaml`` and ``hpa.yaml`` as data."""
    name = k8s_name(spec.deployment)
    size = spec.size
    selector = {"app.kubernetes.io/name": "nexml-gateway", "app.kubernetes.io/instance": name}
    labels = {
        **selector,
        "app.kubernetes.io/version": _label_value(spec.nexml_version),
        "app.kubernetes.io/managed-by": "nexml-ext",
        _LABEL_PREFIX + "deployment": _label_value(spec.deployment),
        _LABEL_PREFIX + "model": _label_value(spec.model),
        _LABEL_PREFIX + "model-version": str(spec.version),
        _LABEL_PREFIX + "artifact-sha256": spec.artifact_sha256[:16],
        _LABEL_PREFIX + "size": size.name,
    }
    annotations = {
        _LABEL_PREFIX + "deployment": spec.deployment,
        _LABEL_PREFIX + "model-ref": spec.model_ref,
        _LABEL_PREFIX + "artifact-sha256": spec.artifact_sha256,
    }
    metadata = {"name": name, "labels": labels, "annotations": annotations}

    def probe(path: str, **timing: int) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": "http"}, "timeoutSeconds": 5, **timing}

    container = {
        "name": "gateway",
        "image": f"{name}:{spec.artifact_sha256[:12]}",
        "imagePullPolicy": "IfNotPresent",
        "command": server_command(spec),
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "envFrom": [{"secretRef": {"name": secret_name(spec.deployment)}}],
        # The root filesystem is read-only: temporary files (verified artifact copies) go to
        # an emptyDir, mounted where no registered artifact path can be hidden by it.
        "env": [
            {"name": "TMPDIR", "value": SCRATCH},
            {"name": "NEXML_HOME", "value": f"{SCRATCH}/home"},
            {"name": "MPLCONFIGDIR", "value": f"{SCRATCH}/matplotlib"},
        ],
        "resources": size.resources(),
        # Up to three minutes to load the models before liveness counts.
        "startupProbe": probe("/healthz", periodSeconds=5, failureThreshold=36),
        "readinessProbe": probe("/readyz", periodSeconds=10, failureThreshold=3),
        "livenessProbe": probe("/healthz", periodSeconds=20, failureThreshold=3),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH}],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": size.min_replicas,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 45,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": UID,
                        "runAsGroup": UID,
                        "fsGroup": UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "scratch", "emptyDir": {}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": size.min_replicas,
            "maxReplicas": size.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": size.cpu_target_percent,
                        },
                    },
                }
            ],
        },
    }
    return {"deployment.yaml": deployment, "service.yaml": service, "hpa.yaml": hpa}


def _yaml(spec: BundleSpec, document: dict[str, Any]) -> str:
    header = (
        f"# nexml-ext deployment {spec.deployment}: {spec.model_ref}, size {spec.size.name}; "
        "made by `nexml deploy export`.\n"
    )
    # A fresh copy of every shared mapping, so the YAML has no anchors or aliases.
    return header + yaml.safe_dump(
        _unshared(document), sort_keys=False, default_flow_style=False
    )


def _unshared(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unshared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unshared(v) for v in value]
    return value


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
