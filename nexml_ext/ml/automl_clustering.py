"""AutoML clustering (sklearn only): KMeans and GaussianMixture for k in 2..8, k by silhouette."""

from __future__ import annotations

import time
import warnings

import numpy as np

from ..errors import InvalidInput
from .automl_sklearn import predict_time
from .preprocess import build_preprocessor, describe_fitted

CLUSTER_KS = tuple(range(2, 9))
SILHOUETTE_MAX_ROWS = 5000  # silhouette is quadratic in rows: score a seeded sample above this


def cluster(X, spec, time_limit, seed, progress, started):
    """Fit each clustering of ``X`` in the declared pipeline; the best silhouette wins.

    Returns ``train``'s result (rows, champion, candidates, preprocessing, classes, search).
    Raises InvalidInput when no clustering finds two or more clusters.
    """
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import silhouette_score
    from sklearn.mixture import GaussianMixture
    from sklearn.pipeline import Pipeline
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    prepare = build_preprocessor(spec, X, problem_type="clustering").fit(X)
    Xt = prepare.transform(X)
    sample = min(len(Xt), SILHOUETTE_MAX_ROWS)
    algorithms = {
        "KMeans": lambda k: KMeans(n_clusters=k, n_init=10, random_state=seed),
        "GaussianMixture": lambda k: GaussianMixture(n_components=k, random_state=seed),
    }
    board, candidates, skipped = [], {}, []
    plan = [(algo, k) for algo in algorithms for k in CLUSTER_KS]
    with (
        tqdm(
            total=len(plan), desc="clustering", unit="fit", disable=not progress, leave=False
        ) as bar,
        threadpool_limits(1),
        warnings.catch_warnings(),
    ):
        # One thread (see automl_sklearn.fit_sklearn); an unconverged mixture is still scored,
        # not refused.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for algo, k in plan:
            name = f"{algo}_k{k}"
            bar.update(1)
            if candidates and time.monotonic() - started > time_limit:
                skipped.append(name)
                continue
            began = time.perf_counter()
            model = algorithms[algo](k).fit(Xt)
            fitted = time.perf_counter() - began
            labels = model.predict(Xt)
            if len(set(labels)) < 2:
                score = float("nan")  # every row in one cluster: silhouette is undefined
            else:
                score = float(
                    silhouette_score(
                        Xt,
                        labels,
                        sample_size=sample if sample < len(Xt) else None,
                        random_state=seed,
                    )
                )
            pipeline = Pipeline([*prepare.steps, ("model", model)])  # shares fitted steps
            candidates[name] = pipeline
            board.append(
                {
                    "model": name,
                    "score_val": score,
                    "fit_time_s": fitted,
                    "predict_time_per_row_s": predict_time(pipeline, X, "clustering"),
                    "algorithm": algo,
                    "k": k,
                }
            )
    scored = [r for r in board if np.isfinite(r["score_val"])]
    if not scored:
        raise InvalidInput("no clustering separated the data into two or more clusters")
    best = max(scored, key=lambda r: r["score_val"])
    champion = candidates[best["model"]]
    return {
        "rows": board,  # train keeps the leaderboard columns; algorithm and k stay here
        "champion_name": best["model"],
        "champion": champion,
        "candidates": candidates,
        "preprocessing": describe_fitted(champion),
        "classes": [],
        "search": {
            "method": "silhouette",
            "algorithms": list(algorithms),
            "ks": list(CLUSTER_KS),
            "silhouette_rows": sample,
            "chosen_k": best["k"],
            "chosen_algorithm": best["algorithm"],
            "preprocess": spec.to_dict(),
            "skipped_for_time": skipped,
        },
    }
