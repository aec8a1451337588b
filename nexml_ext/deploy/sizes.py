"""What a deployment size means, in one place.

A size is chosen when a version is deployed (``Workspace.deploy(..., size=...)``) and says two
things:

- how ``nexml server`` runs on one machine: ``processes`` server processes sharing one listening
  socket, each admitting ``concurrency`` connections and requests in flight (uvicorn's
  ``limit_concurrency``; callers beyond it get 503 instead of queueing without bound). The server
  runs the largest size among the active deployments, since one gateway serves them all;
- what ``nexml deploy export`` writes for running elsewhere: the container's CPU and memory
  requests and limits (sized to its processes) and the Kubernetes replica range the
  HorizontalPodAutoscaler moves within.

The choice: ``small`` is one process (a model scored a few times a second, or a trial);
``medium`` two, the common case for a production model on a two-core node; ``large`` four, for
a model that takes a steady stream of traffic. Memory grows with processes because each one
loads its own copy of every served model. Concurrency per process is generous next to
scikit-learn's sub-millisecond predictions: it bounds the damage of a slow store, not normal
load.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import InvalidInput


@dataclass(frozen=True)
class Size:
    """One deployment size: local serving and the resources of an exported bundle."""

    name: str
    processes: int
    concurrency: int  # per process: uvicorn's limit_concurrency, beyond it 503
    min_replicas: int
    max_replicas: int
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    cpu_target_percent: int = 70  # the HPA's average CPU utilisation target

    def resources(self) -> dict[str, dict[str, str]]:
        """Kubernetes container ``resources`` for one replica."""
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


SMALL = Size("small", 1, 64, 1, 2, "500m", "1", "512Mi", "1Gi")
MEDIUM = Size("medium", 2, 128, 2, 4, "1", "2", "1Gi", "2Gi")
LARGE = Size("large", 4, 256, 3, 10, "2", "4", "2Gi", "4Gi")

#: Every size, smallest first.
BY_NAME: dict[str, Size] = {s.name: s for s in (SMALL, MEDIUM, LARGE)}
#: The size names, smallest first (what ``deploy`` accepts).
SIZES: tuple[str, ...] = tuple(BY_NAME)
DEFAULT = SMALL.name


def get(name: str) -> Size:
    """The size called ``name``; InvalidInput naming the valid ones otherwise."""
    size = BY_NAME.get(name) if isinstance(name, str) else None
    if size is None:
        raise InvalidInput(f"invalid deployment size {name!r}: choose one of {', '.join(SIZES)}")
    return size


def largest(names: Iterable[str]) -> Size:
    """The largest of ``names`` (``small`` when there are none): what one server must carry."""
    chosen = SMALL
    for name in names:
        size = get(name)
        if size.processes > chosen.processes or (
            size.processes == chosen.processes and size.concurrency > chosen.concurrency
        ):
            chosen = size
    return chosen
