"""An artifact's ``MODEL.json``: written beside the payload, read back, checked against files.

The store adds every file's SHA-256 to ``MODEL.json`` (``ArtifactStore.put_directory``);
``check_files`` re-checks a directory against that table before anything is unpickled.
"""

from __future__ import annotations

import json
import math
import platform
from importlib import metadata as distributions
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, InvalidInput
from ..store.artifacts import MANIFEST_NAME, sha256_file

FLAVOURS = ("sklearn", "autogluon")
PROBLEM_TYPES = ("binary", "multiclass", "regression")


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """The artifact's ``MODEL.json`` as a dict ({} if there is none).

    Raises InvalidInput if it is not a JSON object.
    """
    manifest = Path(directory) / MANIFEST_NAME
    if not manifest.exists():
        return {}
    try:
        data = json.loads(manifest.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{manifest} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{manifest} must hold a JSON object")
    return data


def schema_columns(schema: Any) -> dict[str, dict[str, Any]]:
    """The schema's ``columns`` mapping. Raises InvalidInput unless it names a column."""
    columns = schema.get("columns") if isinstance(schema, dict) else None
    if not isinstance(columns, dict) or not columns:
        raise InvalidInput(
            "input_schema must be {'columns': {name: {'dtype': ...}}} "
            "(ml.data.schema_of), with at least one column"
        )
    return columns


def write_metadata(
    path: Path,
    flavour: str,
    problem_type: str,
    target: str,
    input_schema: dict[str, Any],
    classes: list[Any] | None,
    metrics: dict[str, float] | None,
    lineage: dict[str, Any] | None,
    reason_codes: dict[str, str] | None,
    packages: list[str],
    fast_path: dict[str, Any],
) -> None:
    """Write ``MODEL.json`` into ``path``.

    Raises InvalidInput for an unknown problem type, a bad schema or one holding the target,
    or metadata that is not JSON.
    """
    if problem_type not in PROBLEM_TYPES:
        raise InvalidInput(
            f"problem_type must be one of {', '.join(PROBLEM_TYPES)}, got {problem_type!r}"
        )
    if target in schema_columns(input_schema):
        raise InvalidInput(f"input_schema must not include the target {target!r}")
    metadata = {
        "flavour": flavour,
        "problem_type": problem_type,
        "target": target,
        "input_schema": input_schema,
        "classes": list(classes or []),
        "metrics": metrics or {},
        "lineage": lineage or {},
        "reason_codes": reason_codes or {},
        "libraries": {
            "python": platform.python_version(),
            **_versions(["pandas", "numpy", *packages]),
        },
        "fast_path": fast_path,
    }
    try:
        text = json.dumps(_jsonable(metadata), indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"artifact metadata is not JSON-serialisable: {exc}") from None
    (path / MANIFEST_NAME).write_text(text)


def check_flavour(directory: Path, metadata: dict[str, Any]) -> None:
    """Refuse metadata whose flavour is missing or unknown (InvalidInput)."""
    flavour = metadata.get("flavour")
    if flavour not in FLAVOURS:
        raise InvalidInput(
            f"cannot load {directory}: artifact flavour {flavour!r} is not one "
            f"of {', '.join(FLAVOURS)}"
        )


def check_files(directory: Path, metadata: dict[str, Any]) -> None:
    """Refuse a directory whose files differ from the hashes the store wrote into MODEL.json."""
    files = metadata.get("files")
    if not isinstance(files, dict):
        return  # saved here and not stored yet: there is nothing to check against
    problems = []
    for rel, entry in sorted(files.items()):
        path = directory / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif sha256_file(path) != (entry or {}).get("sha256"):
            problems.append(f"{rel} changed")
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    problems += [
        f"{rel} is not in the manifest" for rel in sorted(present - set(files) - {MANIFEST_NAME})
    ]
    if problems:
        raise IntegrityError(f"artifact {directory} refused: " + "; ".join(problems))


def _versions(packages: list[str]) -> dict[str, str]:
    found = {}
    for name in packages:
        try:
            found[name] = distributions.version(name)
        except distributions.PackageNotFoundError:
            continue
    return found


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars made Python and NaN/inf made ``None`` (strict JSON)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    value = plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def plain(value: Any) -> Any:
    """``value`` as a Python scalar if it is a numpy scalar, else ``value`` itself."""
    numpy_scalar = type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0
    return value.item() if numpy_scalar else value
