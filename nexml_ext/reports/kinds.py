"""The report kinds: which template, what it needs, and what its run may read."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidInput

#: Reads every run may make: model versions, dataset versions, compliance records.
_BASE_READS = frozenset({"model.view", "dataset.view", "compliance.view"})


@dataclass(frozen=True)
class Kind:
    """One kind of report.

    ``reads`` is the whole authority of the run's kernel: the platform's principal, limited to
    these actions and to reading. ``requires`` are the actions the person asking must hold
    themselves (beyond ``report.generate``), so a run never reads what its requester could not.
    """

    name: str
    notebook: str
    title: str
    subject: bool  # needs a model version reference
    period: bool  # needs a date range
    reads: frozenset[str]
    requires: tuple[str, ...] = ()
    deployment: bool = False  # needs a deployment name
    dataset: bool = False  # needs a dataset version reference (the data the run scores)


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "compliance",
            "compliance.ipynb",
            "Compliance record",
            subject=True,
            period=False,
            reads=_BASE_READS,
            requires=("compliance.view",),
        ),
        Kind(
            "audit",
            "audit.ipynb",
            "Audit report",
            subject=False,
            period=True,
            reads=_BASE_READS | {"audit.view", "audit.verify", "prediction.read"},
            requires=("audit.view", "audit.verify", "prediction.read"),
        ),
        Kind(
            "drift",
            "drift.ipynb",
            "Drift report",
            subject=False,
            period=True,
            reads=_BASE_READS | {"prediction.read"},
            requires=("prediction.read",),
            deployment=True,
        ),
        # Batch inference of one model version on one dataset version. The run computes the
        # platform's validation (``Workspace.validation_run``: what ``validate`` records) and
        # the platform records it, linked to the report, when the report is done: the numbers
        # an approval rests on are the report's. ``model.analyse`` lets it load and score the
        # hash-verified model; asking needs ``validation.request`` (managers).
        Kind(
            "validation",
            "validation.ipynb",
            "Validation report",
            subject=True,
            period=False,
            reads=_BASE_READS | {"model.analyse"},
            requires=("validation.request",),
            dataset=True,
        ),
        # A retrained challenger against the champion it was trained to replace (named in the
        # challenger's lineage), both scored on the same holdout: side by side, with the
        # recommendation. It is also the challenger's platform validation, recorded like the
        # validation report's (``nexml_ext.workspace.retraining``).
        Kind(
            "comparison",
            "comparison.ipynb",
            "Champion/challenger comparison",
            subject=True,
            period=False,
            reads=_BASE_READS | {"model.analyse"},
            requires=("validation.request",),
            dataset=True,
        ),
    )
}


def kind(name: str) -> Kind:
    """The kind called ``name``; InvalidInput naming the known kinds otherwise."""
    found = KINDS.get(name)
    if found is None:
        raise InvalidInput(
            f"unknown report kind {name!r}: choose one of {', '.join(sorted(KINDS))}"
        )
    return found
