"""German credit data replicated into Parquet directories, shared by the batch tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nexml_ext.ml.profile import profile


def write_parts(frame: pd.DataFrame, directory: Path, parts: int, row_group: int = 500) -> Path:
    """``frame`` split in order into ``parts`` Parquet files (small row groups: many chunks)."""
    directory.mkdir(parents=True)
    bounds = np.linspace(0, len(frame), parts + 1).astype(int)
    for i in range(parts):
        part = frame.iloc[bounds[i] : bounds[i + 1]]
        table = pa.Table.from_pandas(part, preserve_index=False)
        pq.write_table(table, directory / f"part-{i:03d}.parquet", row_group_size=row_group)
    return directory


def shifted(german: pd.DataFrame, weeks: int = 1, seed: int = 0) -> pd.DataFrame:
    """German credit with more spread-out, larger credit amounts and longer durations, rows reshuffled."""
    rng = np.random.default_rng(seed)
    frame = german.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    frame["credit_amount"] = (frame["credit_amount"] * rng.uniform(0.4, 2.8, len(frame))).round()
    frame["duration"] = frame["duration"] + 3 * weeks
    return frame


@pytest.fixture(scope="session")
def credit_current(german: pd.DataFrame) -> pd.DataFrame:
    """6,000 rows: the German data twice as it is, then four shifted copies."""
    copies = [german, german] + [shifted(german, w, seed=w) for w in range(1, 5)]
    return pd.concat(copies, ignore_index=True)


@pytest.fixture(scope="session")
def credit_dir(tmp_path_factory, credit_current: pd.DataFrame) -> Path:
    return write_parts(credit_current, tmp_path_factory.mktemp("credit") / "in", parts=5)


@pytest.fixture(scope="session")
def credit_profile(german: pd.DataFrame) -> dict:
    return profile(german.drop(columns=["risk"]))


@pytest.fixture(scope="session")
def stored_model(tmp_path_factory, model_dir):
    """The credit model stored in an artifact store and loaded back hash-verified, as the
    Workspace loads it: (LoadedModel, the manifest SHA-256 the registry would keep)."""
    from nexml_ext.ml.artifact import load_verified
    from nexml_ext.store.artifacts import ArtifactStore

    store = ArtifactStore(str(tmp_path_factory.mktemp("store")))
    stored = store.put_directory(model_dir, "models/credit/1")
    return load_verified(store, stored.uri, stored.sha256), stored.sha256


@pytest.fixture
def version(stack, fresh_artifact, german):
    """dana's credit model, registered with the German data as its training data (the
    drift baseline)."""
    train = stack.dana.register_dataset(german, "credit-train", split="train")
    return stack.dana.register_model(
        fresh_artifact(), "credit", template="credit_scoring", datasets=[train.ref]
    )
