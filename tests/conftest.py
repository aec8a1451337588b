"""Shared fixtures: a real store on each backend, real identities, a real small model.

Every store-backed test runs twice: on SQLite (a fresh file) and on the PostgreSQL server on this
machine (a fresh schema in database ``test``). A missing PostgreSQL server is an error, never a
skip: set NEXML_TEST_BACKENDS=sqlite to run one leg deliberately.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from nexml_ext.config import Settings
from nexml_ext.workspace import Workspace

PG_URL = os.environ.get("NEXML_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = [b for b in os.environ.get("NEXML_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]
DATA = Path(__file__).resolve().parents[1] / "nexml_ext" / "data" / "german_credit.csv"
#: Debian's chromium (scripts/setup-test.sh installs it); Playwright never downloads a browser.
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def german() -> pd.DataFrame:
    return pd.read_csv(DATA)


@pytest.fixture(scope="session")
def pg_admin_engine():
    engine = create_engine(PG_URL)
    with engine.connect() as conn:  # fails loudly if the server is not there
        conn.execute(text("select 1"))
    yield engine
    engine.dispose()


def pg_schema_url(schema: str) -> str:
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@contextmanager
def store_settings(backend: str, home: Path, request) -> Iterator[Settings]:
    """Settings for an empty store on ``backend`` (not yet initialised): a SQLite file under
    ``home``, or a fresh PostgreSQL schema dropped afterwards."""
    if backend == "sqlite":
        yield Settings.from_env(
            home=home,
            database_url=f"sqlite:///{home / 'nexml.db'}",
            artifact_root=str(home / "artifacts"),
            token="",
        )
        return
    engine = request.getfixturevalue("pg_admin_engine")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield Settings.from_env(
            home=home,
            database_url=pg_schema_url(schema),
            artifact_root=str(home / "artifacts"),
            token="",
        )
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def settings(backend: str, tmp_path: Path, request) -> Iterator[Settings]:
    """Settings for an empty store on ``backend`` (not yet initialised)."""
    with store_settings(backend, tmp_path / "home", request) as made:
        yield made


@pytest.fixture(scope="module", params=BACKENDS)
def module_settings(request, tmp_path_factory) -> Iterator[tuple[str, Settings]]:
    """``(backend, settings)`` of an empty store shared by one test module, per backend."""
    home = tmp_path_factory.mktemp(f"module-{request.param}") / "home"
    with store_settings(request.param, home, request) as made:
        yield request.param, made


@dataclass
class Stack:
    """An initialised store and one open Workspace per person."""

    settings: Settings
    admin: Workspace
    dana: Workspace  # data scientist, author of most versions
    dave: Workspace  # a second data scientist
    mark: Workspace  # manager
    mia: Workspace  # a second manager
    cora: Workspace  # compliance officer
    tokens: dict[str, str]

    def as_user(self, token: str) -> Workspace:
        return Workspace.open(self.settings, token)

    def close(self) -> None:
        for ws in (self.admin, self.dana, self.dave, self.mark, self.mia, self.cora):
            ws.close()


PEOPLE = {
    "dana": "data_scientist",
    "dave": "data_scientist",
    "mark": "manager",
    "mia": "manager",
    "cora": "compliance_officer",
}


def open_stack(settings: Settings) -> Stack:
    """Initialise the store with ada (superadmin) and PEOPLE, each with an open Workspace."""
    admin, admin_token = Workspace.init(settings, "ada")
    tokens = {"ada": admin_token}
    for name, role in PEOPLE.items():
        tokens[name] = admin.add_user(name, role)[1]
    opened = {name: Workspace.open(settings, tokens[name]) for name in PEOPLE}
    return Stack(settings, admin, tokens=tokens, **opened)


@pytest.fixture
def stack(settings: Settings) -> Iterator[Stack]:
    result = open_stack(settings)
    yield result
    result.close()


@pytest.fixture(scope="module")
def module_stack(module_settings) -> Iterator[tuple[str, Stack]]:
    """``(backend, stack)`` shared by one test module, per backend."""
    backend, settings = module_settings
    result = open_stack(settings)
    yield backend, result
    result.close()


def fit_credit_artifact(data: pd.DataFrame, directory: Path) -> Path:
    """A small real credit model (a random forest, sex and age left out) saved as an artifact
    directory: quicker than AutoML where a test only needs some real model, and a tree model so
    explanations take the fast TreeSHAP path."""
    from sklearn.ensemble import RandomForestClassifier

    from nexml_ext.ml.artifact import save_sklearn
    from nexml_ext.ml.data import schema_of
    from nexml_ext.ml.preprocess import PreprocessSpec, build_pipeline

    features = data.drop(columns=["risk", "sex", "age"])
    forest = RandomForestClassifier(n_estimators=60, max_depth=6, random_state=0, n_jobs=1)
    pipeline = build_pipeline(PreprocessSpec(), features, forest, problem_type="binary")
    pipeline.fit(features, data["risk"])
    return save_sklearn(pipeline, directory, problem_type="binary", target="risk",
                        input_schema=schema_of(features), classes=list(pipeline.classes_))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, german) -> Path:
    """A real scikit-learn credit model saved as an artifact directory (fitted once)."""
    return fit_credit_artifact(german, tmp_path_factory.mktemp("artifact") / "credit")


@pytest.fixture
def fresh_artifact(model_dir: Path, tmp_path: Path):
    """Copies of the trained artifact, so each registration is of its own directory."""

    def make(tag: str = "") -> Path:
        target = tmp_path / f"artifact-{tag or uuid.uuid4().hex[:6]}"
        shutil.copytree(model_dir, target)
        return target

    return make


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium driven by Playwright, one per test module."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run sh scripts/setup-test.sh"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()
