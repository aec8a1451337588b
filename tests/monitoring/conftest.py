"""A deployed German credit model and weeks of simulated traffic, once per module and backend.

Each simulated week's traffic is the holdout the version was validated on, shuffled: before the
shift the recorded inputs are distributed as the validation data (close to the training data)
and the scores as the validation scores; from week ``SHIFT_WEEK`` on, credit amounts and
durations are stretched.
Decisions are recorded at simulated times through the Workspace's clock seam (``set_clock``,
a superadmin's audited act), as the platform scores them for the gateway.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nexml_ext.ml.data import split
from nexml_ext.workspace import Workspace
from tests.conftest import Stack, open_stack
from tests.workspace.conftest import module_world

START = datetime(2026, 1, 5)  # a Monday
WEEKS = 6
SHIFT_WEEK = 3  # 0-based: the fourth simulated week is the first shifted one
DAYS = (0, 1, 3, 5)  # decisions recorded on Monday, Tuesday, Thursday and Saturday
LABELLED_WEEKS = (0, 1)  # outcomes arrive for the first two weeks
FINDINGS = "Validated on the holdout; documentation complete."


class SimClock:
    """A settable clock: what the workspace takes "now" from."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Receiver:
    """A local HTTP receiver on 127.0.0.1 that keeps every POST (the webhook sink's target)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/nexml"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Scenario:
    backend: str
    stack: Stack
    ref: str
    clock: SimClock
    platform: Workspace  # the superadmin's workspace acting as the platform, on simulated time
    receiver: Receiver
    source: Path
    weeks: list[dict[str, Any]] = field(default_factory=list)  # per week: rows, decisions

    def week_start(self, week: int) -> datetime:
        return START + timedelta(days=7 * week)


def shifted(rows: pd.DataFrame) -> pd.DataFrame:
    """The synthetic shift: larger loans over longer terms."""
    out = rows.copy()
    out["credit_amount"] = (out["credit_amount"] * 2.5).round().astype(int)
    out["duration"] = (out["duration"] * 2).astype(int)
    return out


@pytest.fixture(scope="module")
def scenario(module_settings, model_dir, german, tmp_path_factory) -> Iterator[Scenario]:
    backend, settings = module_settings
    stack = open_stack(settings)
    admin = stack.admin
    world = module_world(stack, model_dir, german, tmp_path_factory, f"monitoring-{backend}")
    version = world.staged(stack.dana, "credit-risk")
    world.document(stack.dana, version.ref)
    stack.mia.validate(version.ref, dataset=world.holdout)
    stack.mark.approve(version.ref, findings=FINDINGS)
    stack.mark.deploy(version.ref, name="credit")

    source = tmp_path_factory.mktemp(f"monitoring-source-{backend}") / "labelled.csv"
    german.to_csv(source, index=False)
    clock = SimClock(START)
    admin.set_clock(clock)
    platform = admin._as_platform()  # the gateway's identity, on the simulated clock
    receiver = Receiver()
    scenario = Scenario(backend, stack, version.ref, clock, platform, receiver, source)

    _, holdout = split(german, "risk", test_size=0.25, seed=7)  # the registered holdout
    for week in range(WEEKS):
        picked = holdout.sample(frac=1.0, random_state=week).reset_index(drop=True)
        rows = picked.drop(columns=["risk", "sex", "age"])
        if week >= SHIFT_WEEK:
            rows = shifted(rows)
        decisions = []
        for part, day in zip(np.array_split(np.arange(len(rows)), len(DAYS)), DAYS,
                             strict=True):
            clock.now = scenario.week_start(week) + timedelta(days=day, hours=10)
            decisions += platform.score_deployment("credit", rows.iloc[part], explain=False)
        scenario.weeks.append({"picked": picked, "rows": rows, "decisions": decisions})
    # outcomes of the first weeks arrive during week 2, with the protected attributes the
    # lender keeps apart from the model's inputs
    clock.now = scenario.week_start(2) + timedelta(days=2)
    for week in LABELLED_WEEKS:
        w = scenario.weeks[week]
        stack.mark.record_outcomes([
            {"request_id": d.request_id,
             "outcome": {"label": int(row.risk), "sex": row.sex, "age": int(row.age)}}
            for d, row in zip(w["decisions"], w["picked"].itertuples(), strict=True)
        ])
    try:
        yield scenario
    finally:
        receiver.close()
        stack.close()
