"""Model artifacts: a flavour's payload beside ``MODEL.json`` metadata, loaded to score.

Flavours. ``sklearn``: a fitted estimator or pipeline (``model.joblib``). ``autogluon``: a
``TabularPredictor`` cloned for deployment with only the served model (``predictor/``) and, when
that model is LightGBM or CatBoost, a fast path beside it: the model's own booster in its
library's native format (``fast/lightgbm.txt`` or ``fast/catboost.cbm``) and AutoGluon's fitted
feature transform compiled into lookup tables (``fast/encoder.json``). The fast path skips
AutoGluon's pandas machinery, not its arithmetic: the tables hold what AutoGluon's feature
generator and the model's preprocessing output for every schema value, and probabilities are
rounded to float32 as AutoGluon rounds them, so scores equal the full predictor's.
``save_autogluon`` checks that on probe rows and serves the full predictor if they differ.

The store writes every file's SHA-256 into ``MODEL.json`` (``ArtifactStore.put_directory``) and
verifies them on ``fetch``. ``load`` must only be given a directory the store verified; it
re-checks the files against that table, when present, before anything is unpickled.
``load_verified`` does both. Heavy libraries are imported where they are used, so importing this
module (the registry, the CLI) stays cheap and serving the fast path never imports AutoGluon.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import threading
import time
import weakref
from importlib import metadata as distributions
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import IntegrityError, InvalidInput
from ..store.artifacts import MANIFEST_NAME, sha256_file

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..store.artifacts import ArtifactStore
    from .model_view import TreeView

SKLEARN_PAYLOAD = "model.joblib"
AUTOGLUON_PREDICTOR = "predictor"
FAST_DIR = "fast"
FAST_ENCODER = "fast/encoder.json"
FLAVOURS = ("sklearn", "autogluon")
PROBLEM_TYPES = ("binary", "multiclass", "regression")
PARITY_TOLERANCE = 1e-6

_SMALL_BATCH = 256  # up to this many rows a booster scores on one thread (no pool start-up)
_UNSEEN = "\x00nexml-unseen\x00"  # a category value no training set holds


# ---- saving --------------------------------------------------------------------------------------


def save_sklearn(
    estimator: Any,
    directory: str | Path,
    *,
    problem_type: str,
    target: str,
    input_schema: dict[str, Any],
    classes: list[Any] | None = None,
    metrics: dict[str, float] | None = None,
    lineage: dict[str, Any] | None = None,
    reason_codes: dict[str, str] | None = None,
) -> Path:
    """Write a fitted scikit-learn estimator or pipeline as an artifact directory.

    ``input_schema`` is ``ml.data.schema_of`` of the input columns (never the target);
    ``classes`` defaults to ``estimator.classes_``. Returns the directory. Raises InvalidInput
    for an unknown problem type, a bad schema or metadata that is not JSON.
    """
    import joblib

    if classes is None and problem_type != "regression":
        classes = list(getattr(estimator, "classes_", []))
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, path / SKLEARN_PAYLOAD)
    packages = ["scikit-learn", "joblib", *_estimator_packages(estimator)]
    fast_path = {"kind": "sklearn", "model": type(estimator).__name__,
                 "description": "the fitted estimator itself; nothing is skipped"}
    _write_metadata(path, "sklearn", problem_type, target, input_schema, classes, metrics,
                    lineage, reason_codes, packages, fast_path)
    return path


def save_autogluon(
    predictor: Any,
    directory: str | Path,
    *,
    problem_type: str,
    target: str,
    input_schema: dict[str, Any],
    classes: list[Any] | None = None,
    metrics: dict[str, float] | None = None,
    lineage: dict[str, Any] | None = None,
    reason_codes: dict[str, str] | None = None,
    model: str | None = None,
    latency_budget_ms: float | None = 5.0,
) -> Path:
    """Write a fitted AutoGluon ``TabularPredictor`` as an artifact directory.

    The served model is ``model`` if given; otherwise the first of the predictor's best model,
    then its single (non-ensemble) models by validation score, whose single-row serving time
    (schema validation included, timed here on rows drawn from the schema) fits
    ``latency_budget_ms``; ``None`` serves the best model whatever it costs. If none fits, the
    best model is served and the metadata says so. The predictor is cloned for deployment with
    only the served model, so the artifact holds exactly what is validated and served;
    ``MODEL.json["fast_path"]`` records the choice, every candidate's validation score and time,
    and the fast path's parity check against the clone.

    Raises InvalidInput if ``directory/predictor`` exists, the problem type, target or classes
    are not the predictor's, or the schema lacks an input column the predictor uses.
    """
    path = Path(directory)
    if problem_type != predictor.problem_type:
        raise InvalidInput(f"problem_type {problem_type!r} but the predictor is "
                           f"{predictor.problem_type!r}")
    if target != predictor.label:
        raise InvalidInput(f"target {target!r} but the predictor predicts {predictor.label!r}")
    columns = _schema_columns(input_schema)
    features = list(predictor.original_features)
    missing = [c for c in features if c not in columns]
    if missing:
        raise InvalidInput(f"input_schema lacks columns the predictor uses: {', '.join(missing)}")
    ag_classes = [] if problem_type == "regression" else [_plain(c) for c in predictor.class_labels]
    classes = ag_classes if classes is None else [_plain(c) for c in classes]
    if sorted(map(str, classes)) != sorted(map(str, ag_classes)):
        raise InvalidInput(f"classes {classes} are not the predictor's classes {ag_classes}")
    if (path / AUTOGLUON_PREDICTOR).exists():
        raise InvalidInput(f"{path / AUTOGLUON_PREDICTOR} already exists; give a new directory")

    probes = _probe_frame(columns, features)
    name, candidates = _choose_model(predictor, columns, probes, model, latency_budget_ms)
    clone = predictor.clone_for_deployment(str(path / AUTOGLUON_PREDICTOR), model=name,
                                           return_clone=True)
    fast_path = _write_fast_path(clone, name, path, probes, columns, ag_classes)
    fast_path.update(
        model=name, autogluon_best=predictor.model_best, latency_budget_ms=latency_budget_ms,
        candidates=candidates, autogluon_classes=ag_classes,
        positive_class=_plain(clone.positive_class) if problem_type == "binary" else None,
        decision_threshold=getattr(clone, "decision_threshold", None),
    )
    packages = ["autogluon.tabular", "autogluon.core", "autogluon.features", "lightgbm",
                "xgboost", "catboost", "scikit-learn"]
    _write_metadata(path, "autogluon", problem_type, target, input_schema, classes, metrics,
                    lineage, reason_codes, packages, fast_path)
    return path


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


# ---- loading -------------------------------------------------------------------------------------


def load(verified_directory: str | Path, *, fast: bool = True) -> LoadedModel:
    """Load the artifact in a directory the ``ArtifactStore`` verified (``fetch``), to score.

    Loading unpickles, so the directory must come from ``ArtifactStore.fetch`` (or be one this
    process just saved). When ``MODEL.json`` lists the files' hashes (every stored artifact),
    each file is checked again first and a changed, missing or extra file is refused.
    ``fast=False`` serves the AutoGluon flavour through the full cloned predictor.

    Raises InvalidInput for a missing or unknown flavour, IntegrityError for a changed file.
    """
    directory = Path(verified_directory)
    metadata = read_metadata(directory)
    _check_flavour(directory, metadata)
    _check_files(directory, metadata)
    return LoadedModel(directory, metadata, fast=fast)


def load_verified(
    store: ArtifactStore, uri: str, sha256: str, *, fast: bool = True
) -> LoadedModel:
    """Fetch ``uri`` from ``store``, verifying every file against ``sha256``, then load it.

    The fetched private copy lives as long as the returned model and is deleted after it.
    Raises NotFound, IntegrityError (before anything is unpickled), InvalidInput.
    """
    local = store.fetch(uri, sha256)
    try:
        metadata = read_metadata(local)
        _check_flavour(local, metadata)
        model = LoadedModel(local, metadata, fast=fast)
    except BaseException:
        shutil.rmtree(local, ignore_errors=True)
        raise
    weakref.finalize(model, shutil.rmtree, str(local), True)
    return model


class LoadedModel:
    """A loaded artifact: schema validation, predictions, scores and explanations.

    Every scoring method runs ``validate`` first, so only the schema's columns reach the model;
    extra columns (ids, protected attributes) are dropped, never refused.
    """

    def __init__(self, directory: Path, metadata: dict[str, Any], *, fast: bool = True) -> None:
        self.directory = Path(directory)
        self.metadata = metadata
        self.flavour: str = metadata["flavour"]
        self.problem_type: str = metadata.get("problem_type") or ""
        self.target: str = metadata.get("target") or ""
        self.classes: list[Any] = list(metadata.get("classes") or [])
        self.input_schema: dict[str, Any] = metadata.get("input_schema") or {}
        self.input_columns: list[str] = list(_schema_columns(self.input_schema))
        self.reason_codes: dict[str, str] = dict(metadata.get("reason_codes") or {})
        self.fast_path: dict[str, Any] = dict(metadata.get("fast_path") or {})
        self._lock = threading.Lock()
        self._predictor: Any = None
        self._estimator: Any = None
        self._native: _NativeScorer | None = None
        if self.flavour == "sklearn":
            import joblib

            self._estimator = joblib.load(self.directory / SKLEARN_PAYLOAD)
        elif fast and self.fast_path.get("kind") == "native":
            self._native = _NativeScorer.read(self.directory, self.classes)
        else:
            self._full_predictor()

    def __repr__(self) -> str:
        served = "the native booster" if self._native is not None else f"the {self.flavour} model"
        return (f"LoadedModel({self.flavour} {self.problem_type}, target={self.target!r}, "
                f"served by {served})")

    @property
    def classes_(self) -> np.ndarray:
        """The classes under scikit-learn's name, so metric code treats both alike."""
        import numpy as np

        return np.array(self.classes, dtype=object)

    @property
    def estimator(self) -> Any:
        """The scikit-learn estimator (sklearn flavour), else None."""
        return self._estimator

    def validate(self, X: Any) -> pd.DataFrame:
        """``X`` as the model's input: the schema's columns in schema order, training dtypes.

        ``X`` is a DataFrame, one row as a mapping, or a list of mappings. Columns the schema
        does not name (ids, protected attributes) are dropped, not refused. Raises one
        InvalidInput naming every bad field (``ml.data.coerce_to_schema``): missing columns,
        values of the wrong type, unseen categories, missing values where training had none.
        """
        import pandas as pd

        from .data import coerce_to_schema

        if isinstance(X, dict):
            X = pd.DataFrame([X])
        elif isinstance(X, list) and all(isinstance(r, dict) for r in X):
            X = pd.DataFrame(X)
        return coerce_to_schema(X, self.input_schema)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (rows, classes), columns in ``self.classes`` order."""
        self._need_classes()
        rows = self.validate(X)
        if self._native is not None:
            return self._native.proba(rows)
        if self._estimator is not None:
            return self._sklearn_proba(rows)
        return self._full_proba(rows)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (classification) or values (regression)."""
        import numpy as np

        rows = self.validate(X)
        if self._estimator is not None:
            return np.asarray(self._estimator.predict(rows))
        if self.problem_type == "regression":
            if self._native is not None:
                return self._native.raw(rows).astype(float)
            served = self.fast_path["model"]
            return self._full_predictor().predict(rows, model=served).to_numpy(dtype=float)
        proba = self._native.proba(rows) if self._native is not None else self._full_proba(rows)
        if self.problem_type == "binary":  # AutoGluon's rule: positive above the threshold
            positive = self.fast_path["positive_class"]
            negative = next(c for c in self.classes if c != positive)
            threshold = self.fast_path.get("decision_threshold")
            threshold = 0.5 if threshold is None else threshold
            above = proba[:, self.classes.index(positive)] > threshold
            return np.asarray([positive if a else negative for a in above])
        return np.asarray([self.classes[i] for i in proba.argmax(axis=1)])

    def score(self, X: Any) -> np.ndarray:
        """Binary: the probability of ``classes[1]``; regression: the prediction."""
        if self.problem_type == "binary":
            return self.predict_proba(X)[:, 1]
        if self.problem_type == "regression":
            return self.predict(X).astype(float)
        raise InvalidInput(f"score is defined for binary and regression, not {self.problem_type}")

    def predict_proba_full(self, X: Any) -> np.ndarray:
        """The full cloned AutoGluon predictor's own probabilities: the fast path's reference.

        For the sklearn flavour this is ``predict_proba``.
        """
        self._need_classes()
        rows = self.validate(X)
        if self._estimator is not None:
            return self._sklearn_proba(rows)
        return self._full_proba(rows)

    def tree_view(self) -> TreeView | None:
        """The trees behind the scores, for TreeSHAP; None for other models.

        sklearn: ``ml.model_view.sklearn_tree_view``; autogluon: the fast path's own LightGBM or
        CatBoost booster (binary or regression) with its native contributions.
        """
        if self._estimator is not None:
            from .model_view import sklearn_tree_view

            return sklearn_tree_view(self._estimator, self.input_columns)
        native = self._native
        if native is None or self.problem_type == "multiclass":
            return None
        from .model_view import TreeView

        # the booster's margin is its positive class's; a TreeView's is classes[1]'s
        flip = self.problem_type == "binary" and self.classes[1] != self.fast_path["positive_class"]
        sign = -1.0 if flip else 1.0
        used = {column: j for j, column in enumerate(native.inputs)}
        return TreeView(
            encode=native.encode,
            model=native.model,
            groups={c: [used[c]] if c in used else [] for c in self.input_columns},
            output="log_odds" if self.problem_type == "binary" else "raw",
            contributions=lambda matrix: sign * native.contributions(matrix),
        )

    def explain(self, X: Any, **kw: Any) -> Any:
        """Local explanations of the rows of ``X``: ``ml.explain.explain_local(self, X, **kw)``."""
        from .explain import explain_local

        return explain_local(self, X, **kw)

    def _need_classes(self) -> None:
        if self.problem_type == "regression":
            raise InvalidInput("a regression model has no class probabilities; use predict")

    def _sklearn_proba(self, rows: pd.DataFrame) -> np.ndarray:
        import numpy as np

        proba = np.asarray(self._estimator.predict_proba(rows), dtype=float)
        own = [_plain(c) for c in getattr(self._estimator, "classes_", self.classes)]
        return proba if own == self.classes else proba[:, [own.index(c) for c in self.classes]]

    def _full_predictor(self) -> Any:
        with self._lock:
            if self._predictor is None:
                from autogluon.tabular import TabularPredictor

                predictor = TabularPredictor.load(str(self.directory / AUTOGLUON_PREDICTOR),
                                                  verbosity=0)
                predictor.persist(models=[self.fast_path["model"]])
                self._predictor = predictor
            return self._predictor

    def _full_proba(self, rows: pd.DataFrame) -> np.ndarray:
        served = self.fast_path["model"]
        proba = self._full_predictor().predict_proba(rows, model=served, as_multiclass=True)
        return proba[self.classes].to_numpy(dtype=float)


# ---- the native fast path ------------------------------------------------------------------------


class _NativeScorer:
    """AutoGluon's feature transform as lookup tables in front of the model's own booster."""

    def __init__(self, spec: dict[str, Any], native: Any, classes: list[Any]) -> None:
        import numpy as np

        self.library: str = spec["library"]
        self.model = native
        self.problem_type: str = spec["problem_type"]
        self.columns: list[dict[str, Any]] = spec["columns"]
        self.inputs = [c["input"] for c in self.columns]
        self.categorical = [j for j, c in enumerate(self.columns) if c.get("categorical")]
        for column in self.columns:
            column["_missing"] = _float(column["missing"])
            if column["kind"] == "lookup":
                column["_table"] = {k: _float(v) for k, v in column["table"].items()}
                column["_unseen"] = _float(column["unseen"])
            else:
                column["_dtype"] = np.dtype(column["dtype"])
        ag = spec.get("autogluon_classes") or []
        internal = spec.get("internal_columns") or []
        # the output column behind each of our classes (None: a class the model never saw)
        self.order = [internal[ag.index(c)] for c in classes] if internal else []

    @classmethod
    def read(cls, directory: Path, classes: list[Any]) -> _NativeScorer:
        spec = json.loads((directory / FAST_ENCODER).read_text())
        path = str(directory / spec["file"])
        if spec["library"] == "lightgbm":
            import lightgbm

            native = lightgbm.Booster(model_file=path)
        else:
            from catboost import CatBoostClassifier, CatBoostRegressor

            regression = spec["problem_type"] == "regression"
            native = (CatBoostRegressor if regression else CatBoostClassifier)()
            native.load_model(path)
        return cls(spec, native, classes)

    def encode(self, rows: pd.DataFrame) -> np.ndarray:
        """Validated input rows -> the matrix the booster was fit on (CatBoost: objects)."""
        import numpy as np

        matrix = np.empty((len(rows), len(self.columns)))
        for j, column in enumerate(self.columns):
            values = rows[column["input"]].to_numpy()
            if column["kind"] == "lookup":
                table, unseen, missing = column["_table"], column["_unseen"], column["_missing"]
                matrix[:, j] = [
                    missing if _is_missing(v)
                    else table.get(v if type(v) is str else str(v), unseen)
                    for v in values
                ]
                continue
            numbers = values.astype(float)
            dtype = column["_dtype"]
            if dtype.kind in "iu":  # AutoGluon fills a missing whole number, then truncates
                numbers = np.where(np.isnan(numbers), column["_missing"], numbers)
            matrix[:, j] = numbers.astype(dtype).astype(float)
        if self.library != "catboost" or not self.categorical:
            return matrix
        mixed = matrix.astype(object)  # CatBoost hashes category codes as whole numbers
        mixed[:, self.categorical] = matrix[:, self.categorical].astype(np.int64)
        return mixed

    def raw(self, rows: pd.DataFrame) -> np.ndarray:
        """AutoGluon's own output of the model: the booster's prediction rounded to float32."""
        import numpy as np

        matrix = self.encode(rows)
        small = len(matrix) <= _SMALL_BATCH
        if self.library == "lightgbm":
            out = self.model.predict(matrix, num_threads=1 if small else 0)
        elif self.problem_type == "regression":
            out = self.model.predict(matrix, thread_count=1 if small else -1)
        else:
            out = self.model.predict_proba(matrix, thread_count=1 if small else -1)
            out = out[:, 1] if self.problem_type == "binary" else out
        return np.asarray(out).astype(np.float32)

    def proba(self, rows: pd.DataFrame) -> np.ndarray:
        import numpy as np

        out = self.raw(rows)
        if self.problem_type == "binary":  # as AutoGluon: negative = 1 - positive, in float32
            out = np.column_stack([1 - out, out])
        result = np.zeros((len(out), len(self.order)))
        for i, column in enumerate(self.order):
            if column is not None:
                result[:, i] = out[:, column]
        return result

    def contributions(self, matrix: Any) -> np.ndarray:
        """Per-row contributions in margin space, bias last: the booster's own TreeSHAP."""
        if self.library == "lightgbm":
            return self.model.predict(matrix, pred_contrib=True)
        from catboost import Pool

        pool = Pool(matrix, cat_features=self.categorical)
        return self.model.get_feature_importance(pool, type="ShapValues")


class _NotCompilable(Exception):
    """The fast path cannot reproduce this model exactly; the full predictor serves it."""


def _compile(predictor: Any, name: str, probes: pd.DataFrame,
             columns: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Compile AutoGluon's feature transform for the predictor's LightGBM or CatBoost ``name``.

    Returns ``(encoder spec, native model)``. Raises _NotCompilable when the model is of
    another kind or uses features AutoGluon derives, or the tables do not reproduce AutoGluon's
    own preprocessing on ``probes``: the AutoGluon internals read here are checked, not trusted.
    """
    try:
        return _compile_unchecked(predictor, name, probes, columns)
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise _NotCompilable(f"{type(exc).__name__}: {exc}") from None


def _compile_unchecked(predictor: Any, name: str, probes: pd.DataFrame,
                       entries: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    import numpy as np
    import pandas as pd
    from autogluon.tabular.models import CatBoostModel, LGBModel

    model = predictor._trainer.load_model(name)
    library = {LGBModel: "lightgbm", CatBoostModel: "catboost"}.get(type(model))
    if library is None:
        raise _NotCompilable(f"{name} is a {type(model).__name__}; the fast path serves "
                             "LightGBM and CatBoost models")
    features = list(model.features)
    derived = [f for f in features if f not in probes.columns]
    if derived:
        raise _NotCompilable(f"features {derived} are derived by AutoGluon, not input columns")
    # the reference: the model's own preprocessing of AutoGluon's own feature transform
    frame = model.preprocess(predictor._learner.feature_generator.transform(probes))
    if frame.shape[1] != len(features):
        raise _NotCompilable(f"{name} preprocesses into {frame.shape[1]} columns, not "
                             f"{len(features)}")
    native = model.model
    categorical = [j for j, c in enumerate(frame.columns)
                   if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    if library == "lightgbm":
        known = dict(zip(categorical, native.pandas_categorical or [], strict=True))
    elif categorical != sorted(native.get_cat_feature_indices()):
        raise _NotCompilable("CatBoost's categorical features are not AutoGluon's")
    reference = np.empty((len(probes), len(features)))
    columns = []
    for j, feature in enumerate(features):
        out = frame.iloc[:, j]
        if j in categorical:
            labels = out.astype(object).tolist()
            if library == "lightgbm":  # LightGBM's rule: the position among fit categories
                codes = [known[j].index(v) if v in known[j] else np.nan for v in labels]
            else:  # AutoGluon hands CatBoost whole-number codes
                codes = [float(v) for v in labels]
            out = pd.Series(codes, dtype=float)
        reference[:, j] = out.to_numpy(dtype=float)
        kind, raw = _kind(entries[feature]), probes[feature]
        if kind != "number":
            if kind == "category" and not entries[feature].get("categories"):
                raise _NotCompilable(f"the schema lists no categories for {feature!r}")
            column = _lookup_column(feature, raw, reference[:, j])
        elif j in categorical:
            raise _NotCompilable(f"AutoGluon treats the number column {feature!r} as categories")
        else:
            missing = reference[raw.isna().to_numpy(), j]
            column = {"input": feature, "kind": "number", "dtype": str(out.dtype),
                      "missing": _json_float(missing[0] if missing.size else math.nan)}
        columns.append({**column, "categorical": j in categorical})
    spec = {"library": library, "problem_type": predictor.problem_type, "columns": columns}
    encoded = _NativeScorer(json.loads(json.dumps(spec)), native, []).encode(probes)
    if not np.array_equal(encoded.astype(float), reference, equal_nan=True):
        raise _NotCompilable("the lookup tables do not reproduce AutoGluon's preprocessing")
    return spec, native


def _lookup_column(feature: str, raw: pd.Series, encoded: np.ndarray) -> dict[str, Any]:
    table: dict[str, Any] = {}
    unseen = missing = None
    for value, code in zip(raw.to_numpy(), encoded, strict=True):
        if _is_missing(value):
            missing = _json_float(code)
        elif value == _UNSEEN:
            unseen = _json_float(code)
        else:
            key = value if type(value) is str else str(value)
            if table.setdefault(key, _json_float(code)) != _json_float(code):
                raise _NotCompilable(f"{feature}: value {key!r} encodes two ways")
    return {"input": feature, "kind": "lookup", "table": table, "unseen": unseen,
            "missing": missing}


def _write_fast_path(clone: Any, name: str, directory: Path, probes: pd.DataFrame,
                     columns: dict[str, Any], ag_classes: list[Any]) -> dict[str, Any]:
    """Write the native fast path of ``clone``'s model ``name`` if it is exact; describe it."""
    import numpy as np
    import pandas as pd

    full = {"kind": "autogluon-predictor",
            "description": "AutoGluon's own predict_proba on the persisted cloned predictor"}
    try:
        spec, native = _compile(clone, name, probes, columns)
    except _NotCompilable as exc:
        return {**full, "reason": str(exc)}
    library = spec["library"]
    spec["file"] = f"{FAST_DIR}/{library}.{'txt' if library == 'lightgbm' else 'cbm'}"
    spec["autogluon_classes"] = ag_classes
    if clone.problem_type == "multiclass":
        spec["internal_columns"] = [clone.class_labels_internal_map.get(c) for c in ag_classes]
    elif clone.problem_type == "binary":
        spec["internal_columns"] = [int(c == clone.positive_class) for c in ag_classes]
    (directory / FAST_DIR).mkdir(parents=True, exist_ok=True)
    (directory / FAST_ENCODER).write_text(json.dumps(spec, indent=1, sort_keys=True))
    native.save_model(str(directory / spec["file"]))

    # parity, from the files just written, against the clone the artifact carries
    check = pd.concat([probes, _random_rows(columns, list(probes.columns), 500)],
                      ignore_index=True)
    scorer = _NativeScorer.read(directory, ag_classes)
    if clone.problem_type == "regression":
        ours = scorer.raw(check).astype(float)
        theirs = clone.predict(check, model=name).to_numpy(dtype=float)
    else:
        ours = scorer.proba(check)
        theirs = clone.predict_proba(check, model=name, as_multiclass=True)[ag_classes]
        theirs = theirs.to_numpy(dtype=float)
    difference = float(np.max(np.abs(ours - theirs)))
    if not difference <= PARITY_TOLERANCE:
        shutil.rmtree(directory / FAST_DIR)
        return {**full, "reason": f"the native path differed from it by {difference:.3g}"}
    return {
        "kind": "native",
        "library": library,
        "files": [FAST_ENCODER, spec["file"]],
        "description": (
            f"{name}'s own {library} booster scores a matrix built by lookup tables; skips "
            "TabularPredictor/learner/trainer dispatch and pandas feature generation"
        ),
        "exact_because": (
            "the tables hold what AutoGluon's feature generator and the model's preprocessing "
            "output for every schema value, an unseen value and a missing one; numbers get the "
            "same dtype casts; the booster is the model's own in its native format; outputs are "
            "rounded to float32 as AutoGluon rounds them"
        ),
        "parity": {"rows": len(check), "max_abs_diff": difference},
    }


# ---- choosing the served AutoGluon model ---------------------------------------------------------


def _choose_model(predictor: Any, columns: dict[str, Any], probes: pd.DataFrame,
                  model: str | None, budget_ms: float | None) -> tuple[str, list[dict[str, Any]]]:
    """The model to serve, and each model considered: validation score, path, p50 ms."""
    board = predictor.leaderboard(silent=True)
    scores = dict(zip(board["model"], board["score_val"], strict=True))
    if model is not None:
        if model not in scores:
            raise InvalidInput(f"the predictor has no model {model!r}; it has {sorted(scores)}")
        return model, [{"model": model, "score_val": scores[model], "chosen": True,
                        "why": "named by the caller"}]
    best = predictor.model_best
    singles = board[(board["stack_level"] == 1) & (board["model"] != best)]
    order = [best, *singles.sort_values("score_val", ascending=False)["model"]]
    sample = _random_rows(columns, list(probes.columns), 25)
    rows = [sample.iloc[[i]] for i in range(len(sample))]
    considered = []
    for name in order:
        path, call = _serving_call(predictor, name, probes, columns)
        p50 = _p50_ms(call, rows if path == "native" else rows[:10])
        if budget_ms is not None and budget_ms < p50 < 3 * budget_ms:  # near: a busy moment?
            p50 = min(p50, *(_p50_ms(call, rows[:10]) for _ in range(2)))
        entry = {"model": name, "score_val": scores[name], "path": path,
                 "single_row_p50_ms": round(p50, 3)}
        considered.append(entry)
        if budget_ms is None or p50 <= budget_ms:
            entry["chosen"] = True
            return name, considered
    considered[0]["chosen"] = True
    considered[0]["why"] = f"no model fits the {budget_ms} ms budget; serving the best"
    return best, considered


def _serving_call(predictor: Any, name: str, probes: pd.DataFrame,
                  columns: dict[str, Any]) -> tuple[str, Any]:
    """How model ``name`` would serve one row (validation included): native, else AutoGluon."""
    from .data import coerce_to_schema

    schema = {"columns": columns}
    try:
        spec, native = _compile(predictor, name, probes, columns)
    except _NotCompilable:
        return "autogluon-predictor", lambda row: predictor.predict_proba(
            coerce_to_schema(row, schema), model=name)
    scorer = _NativeScorer(json.loads(json.dumps(spec)), native, [])
    return "native", lambda row: scorer.raw(coerce_to_schema(row, schema))


def _p50_ms(call: Any, rows: list[pd.DataFrame]) -> float:
    call(rows[0])  # warm caches and lazy loads
    times = []
    for row in rows:
        start = time.perf_counter()
        call(row)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1000


def _probe_frame(columns: dict[str, Any], features: list[str]) -> pd.DataFrame:
    """Rows walking each input column through its values, an unseen value and a missing one."""
    import pandas as pd

    base = {name: _probe_values(columns[name])[0] for name in features}
    rows = [{**base, name: value} for name in features for value in _probe_values(columns[name])]
    frame = pd.DataFrame(rows, columns=features)
    for name in features:
        if _kind(columns[name]) == "category":
            frame[name] = frame[name].astype(object)
    return frame


def _probe_values(entry: dict[str, Any]) -> list[Any]:
    import pandas as pd

    kind = _kind(entry)
    if kind == "category":
        return [*entry.get("categories", []), _UNSEEN, None]
    if kind == "bool":
        return [False, True, None]
    if kind == "datetime":
        return [pd.Timestamp("2000-01-01"), pd.Timestamp("2020-06-30"), None]
    low, high = float(entry.get("min", 0.0)), float(entry.get("max", 1.0))
    ends = [round(low), round(high)] if _is_integer(entry) else [low, high]
    return [*ends, (low + high) / 2, low + 0.5, math.nan]


def _random_rows(columns: dict[str, Any], features: list[str], n: int) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    data: dict[str, Any] = {}
    for name in features:
        entry = columns[name]
        kind = _kind(entry)
        if kind == "category":
            data[name] = rng.choice(np.array(entry.get("categories") or [_UNSEEN], dtype=object), n)
        elif kind == "bool":
            data[name] = rng.random(n) < 0.5
        elif kind == "datetime":
            days = pd.to_timedelta(rng.integers(0, 7300, n), unit="D")
            data[name] = pd.Timestamp("2000-01-01") + days
        else:
            values = rng.uniform(float(entry.get("min", 0.0)), float(entry.get("max", 1.0)), n)
            data[name] = np.round(values).astype(np.int64) if _is_integer(entry) else values
    return pd.DataFrame(data, columns=features)


# ---- schema, metadata and files ------------------------------------------------------------------


def _schema_columns(schema: Any) -> dict[str, dict[str, Any]]:
    columns = schema.get("columns") if isinstance(schema, dict) else None
    if not isinstance(columns, dict) or not columns:
        raise InvalidInput("input_schema must be {'columns': {name: {'dtype': ...}}} "
                           "(ml.data.schema_of), with at least one column")
    return columns


def _kind(entry: dict[str, Any]) -> str:
    """number, bool, datetime or category: from ``entry["kind"]`` if given, else its dtype."""
    named = {"numeric": "number", "boolean": "bool", "datetime": "datetime",
             "categorical": "category"}
    if entry.get("kind") in named:
        return named[entry["kind"]]
    dtype = str(entry.get("dtype", "object")).lower()
    if dtype.startswith("bool"):
        return "bool"
    if dtype.startswith(("int", "uint", "float")):
        return "number"
    return "datetime" if dtype.startswith("datetime") else "category"


def _is_integer(entry: dict[str, Any]) -> bool:
    return str(entry.get("dtype", "")).lower().startswith(("int", "uint"))


def _write_metadata(path: Path, flavour: str, problem_type: str, target: str,
                    input_schema: dict[str, Any], classes: list[Any] | None,
                    metrics: dict[str, float] | None, lineage: dict[str, Any] | None,
                    reason_codes: dict[str, str] | None, packages: list[str],
                    fast_path: dict[str, Any]) -> None:
    if problem_type not in PROBLEM_TYPES:
        raise InvalidInput(f"problem_type must be one of {', '.join(PROBLEM_TYPES)}, "
                           f"got {problem_type!r}")
    if target in _schema_columns(input_schema):
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
        "libraries": {"python": platform.python_version(),
                      **_versions(["pandas", "numpy", *packages])},
        "fast_path": fast_path,
    }
    try:
        text = json.dumps(_jsonable(metadata), indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"artifact metadata is not JSON-serialisable: {exc}") from None
    (path / MANIFEST_NAME).write_text(text)


def _check_flavour(directory: Path, metadata: dict[str, Any]) -> None:
    flavour = metadata.get("flavour")
    if flavour not in FLAVOURS:
        raise InvalidInput(f"cannot load {directory}: artifact flavour {flavour!r} is not one "
                           f"of {', '.join(FLAVOURS)}")


def _check_files(directory: Path, metadata: dict[str, Any]) -> None:
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
    problems += [f"{rel} is not in the manifest"
                 for rel in sorted(present - set(files) - {MANIFEST_NAME})]
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


def _estimator_packages(estimator: Any) -> list[str]:
    """Booster libraries whose classes appear in the estimator (LightGBM in a pipeline, ...)."""
    seen = {type(estimator).__module__.split(".")[0]}
    params = estimator.get_params(deep=True) if hasattr(estimator, "get_params") else {}
    seen.update(type(v).__module__.split(".")[0] for v in params.values() if hasattr(v, "fit"))
    return sorted(seen & {"lightgbm", "xgboost", "catboost", "imblearn"})


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars made Python and NaN/inf made ``None`` (strict JSON)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plain(value: Any) -> Any:
    numpy_scalar = type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0
    return value.item() if numpy_scalar else value


def _json_float(value: Any) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _is_missing(value: Any) -> bool:
    if value is None or (isinstance(value, float) and value != value):
        return True
    return type(value).__name__ in ("NAType", "NaTType")
