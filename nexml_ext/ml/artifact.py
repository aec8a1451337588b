"""Model artifacts: a directory with the flavour's payload beside ``MODEL.json`` metadata.

Only the scikit-learn flavour exists so far. Heavy libraries are imported inside the functions
that need them, so the CLI and registry start without loading them. ``load`` must only be called
on a directory the artifact store has verified (``ArtifactStore.fetch``), since it unpickles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..store.artifacts import MANIFEST_NAME

SKLEARN_PAYLOAD = "model.joblib"


def save_sklearn(
    estimator: Any,
    directory: str | Path,
    *,
    problem_type: str,
    target: str,
    input_schema: dict[str, Any],
    classes: list[Any] | None = None,
    metrics: dict[str, float] | None = None,
) -> Path:
    """Write a fitted scikit-learn estimator or pipeline as an artifact directory."""
    import joblib
    import sklearn

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, path / SKLEARN_PAYLOAD)

    metadata = {
        "flavour": "sklearn",
        "problem_type": problem_type,
        "target": target,
        "input_schema": input_schema,
        "classes": [c.item() if hasattr(c, "item") else c for c in (classes or [])],
        "metrics": metrics or {},
        "libraries": {"scikit-learn": sklearn.__version__, "joblib": joblib.__version__},
    }
    (path / MANIFEST_NAME).write_text(json.dumps(metadata, indent=2, sort_keys=True))
    return path


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """The artifact's ``MODEL.json`` as a dict ({} if there is none)."""
    manifest = Path(directory) / MANIFEST_NAME
    if not manifest.exists():
        return {}
    try:
        return json.loads(manifest.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{manifest} is not valid JSON: {exc}") from exc


def load(verified_directory: str | Path) -> Any:
    """Unpickle the model in a verified artifact directory."""
    metadata = read_metadata(verified_directory)
    flavour = metadata.get("flavour")
    if flavour != "sklearn":
        raise InvalidInput(f"cannot load artifact flavour {flavour!r}: only 'sklearn' is supported")
    import joblib

    return joblib.load(Path(verified_directory) / SKLEARN_PAYLOAD)
