"""Builders for model versions in each lifecycle state, on a real store."""

from __future__ import annotations

import itertools
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from nexml_ext.demo import demo_compliance
from nexml_ext.ml.data import split
from nexml_ext.workspace import Workspace

_names = itertools.count(1)


@dataclass
class World:
    """A stack plus registered data and helpers that build versions as a given author."""

    stack: object
    fresh_artifact: object
    train: str
    holdout: str

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(_names)}"

    def staged(self, author: Workspace, model: str | None = None, template="credit_scoring"):
        return author.register_model(
            self.fresh_artifact(),
            model or self.unique("m"),
            template=template,
            datasets=[self.train],
        )

    def document(self, author: Workspace, ref: str) -> None:
        record = author.compliance(ref)
        for section, fields in demo_compliance().items():
            record.set(section, fields)

    def ready(self, author: Workspace, model: str | None = None):
        """Staged, documented and validated by the platform (asked for by a manager)."""
        version = self.staged(author, model)
        self.document(author, version.ref)
        self.stack.mia.validate(version.ref, dataset=self.holdout)
        return version

    def approved(self, author: Workspace, model: str | None = None):
        version = self.ready(author, model)
        approver = self.stack.mia if author is not self.stack.mia else self.stack.mark
        approver.approve(version.ref, findings="Validated on the holdout; documentation complete.")
        return version


    @classmethod
    def build(cls, stack, fresh_artifact, german) -> World:  # type: ignore[no-untyped-def]
        """The German credit split (75/25, seed 7) registered by dana on ``stack``."""
        train, holdout = split(german, "risk", test_size=0.25, seed=7)
        t = stack.dana.register_dataset(train, "credit-train", split="train")
        h = stack.dana.register_dataset(holdout, "credit-holdout", split="holdout")
        return cls(stack, fresh_artifact, t.ref, h.ref)


def module_world(stack, model_dir: Path, german, tmp_path_factory, label: str) -> World:
    """A World for a module-scoped store: each version gets its own copy of the session's
    fitted artifact (``model_dir``) in a folder of its own."""
    artifacts = tmp_path_factory.mktemp(f"{label}-artifacts")

    def fresh(tag: str = "") -> Path:
        target = artifacts / f"artifact-{tag or uuid.uuid4().hex[:6]}"
        shutil.copytree(model_dir, target)
        return target

    return World.build(stack, fresh, german)


@pytest.fixture
def world(stack, fresh_artifact, german) -> World:
    return World.build(stack, fresh_artifact, german)
