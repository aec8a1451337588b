"""Use cases for scoring routes: set, list, rotate the key, resolve a request, check a key.

The spec lives in the ``routes`` row: ``rules`` holds the ordered rules (each naming its target
deployment), ``default_deployment_id`` and ``shadow_deployment_id`` point at deployments, and
``canary`` holds ``{"to", "share"}`` (empty without one). A route key is shown once, when the
route is created or its key rotated; only its SHA-256 is stored.

Serving reads a route on every request, so parsed specs (and, in ``predictions.py``, the
versions deployments serve) are cached per database under a revision fingerprint. Every request
reads, in one statement, the route's id, revision and key hash and the deployments' count, the
sums of their revisions and of their versions' revisions, and their highest id; anything cached
under another fingerprint is read and parsed again. Revisions only ever grow (SQLAlchemy's
``version_id_col`` counts every update) and these rows are never deleted, so every change that
matters — set route, rotate key, deploy, roll back, retire, in any process — changes the
fingerprint and takes effect on the next request. The key itself is compared on every request
against the hash just read.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, func, select, true
from sqlalchemy.orm import Session

from ..errors import AuthenticationFailed, Conflict, InvalidInput, NotFound
from ..governance import lifecycle, routing
from ..governance.naming import check_name
from ..governance.routing import RouteDecision, RouteSpec
from ..store import tables as t
from ..store.database import Database
from . import views
from .core import WorkspaceCore


@dataclass
class ServingState:
    """What serving caches, valid while the deployments' fingerprint is ``deployments``:
    parsed route specs by route name (with the route id and revision they were parsed at) and
    the served versions by deployment name (filled by ``predictions.py``)."""

    deployments: tuple[Any, ...]
    routes: dict[str, tuple[int, int, RouteSpec]] = field(default_factory=dict)
    served: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteRevision:
    """The route row as read on this request: its id, revision and key hash."""

    id: int
    revision: int
    key_sha256: str | None


_SERVING: weakref.WeakKeyDictionary[Database, ServingState] = weakref.WeakKeyDictionary()
_SERVING_LOCK = threading.Lock()


def _fingerprint() -> Any:
    """The deployments' fingerprint: count, sum of revisions, sum of their versions' revisions,
    highest id (one row, as a subquery)."""
    D, V = t.Deployment, t.ModelVersion
    return (
        select(
            func.count(D.id).label("n"),
            func.coalesce(func.sum(D.revision), 0).label("revisions"),
            func.coalesce(func.sum(V.revision), 0).label("version_revisions"),
            func.coalesce(func.max(D.id), 0).label("last"),
        )
        .join(V, V.id == D.model_version_id)
        .subquery()
    )


_DEPLOYMENTS = _fingerprint()
_FINGERPRINT = select(_DEPLOYMENTS)
_ROUTE_AND_FINGERPRINT = (
    select(t.Route.id, t.Route.revision, t.Route.key_sha256, _DEPLOYMENTS)
    .select_from(t.Route)
    .join(_DEPLOYMENTS, true())
    .where(t.Route.name == bindparam("route"))
)


class RoutesMixin(WorkspaceCore):
    def set_route(
        self, name: str, spec: Mapping[str, Any] | str
    ) -> tuple[views.Route, str | None]:
        """Create or replace route ``name`` from a spec dict or its YAML text.

        Every deployment it names must exist and be active, and every rule must fit the input
        schema of the versions they serve (see :func:`governance.routing.parse_route`).
        Returns the Route and, when the route is new, its key (shown this once; None on update,
        which keeps the key). Raises PermissionDenied, InvalidInput, Conflict.
        """
        self._authorize("route.manage", f"route {name}")
        check_name("route", name)
        raw = routing.parse_route_yaml(spec) if isinstance(spec, str) else spec
        with self._write() as s:
            deployments = self._active_deployments(s)
            parsed = routing.parse_route(raw, _schemas(deployments), name=name)
            _check_answering(parsed, deployments)  # a shadow-only deployment never answers
            row = self._route_row(s, name, required=False, lock=True)
            before = None if row is None else _spec_of(s, row)
            key = None
            if row is None:
                key, key_sha256 = routing.new_route_key()
                row = t.Route(name=name, key_sha256=key_sha256, created_by=self.principal.name)
                s.add(row)
            _fill(row, parsed, {d.name: d.id for d in deployments})
            s.flush()
            self._event(
                s,
                "route.set",
                f"route:{name}",
                before=before,
                after=parsed.to_dict(),
                key_issued=key is not None,
            )
            return self._route_view(s, row), key

    def routes(self) -> list[views.Route]:
        """Every route, by name."""
        self._authorize("model.view")
        with self._read() as s:
            rows = s.scalars(select(t.Route).order_by(t.Route.name))
            return [self._route_view(s, r) for r in rows]

    def route(self, name: str) -> views.Route:
        """One route; NotFound if there is none of that name."""
        self._authorize("model.view", f"route {name}")
        with self._read() as s:
            return self._route_view(s, self._route_row(s, name))

    def rotate_route_key(self, name: str) -> str:
        """Replace route ``name``'s key; the old one stops working at once. Returns the new key
        (shown this once). Raises PermissionDenied, NotFound."""
        self._authorize("route.manage", f"route {name}")
        key, key_sha256 = routing.new_route_key()
        with self._write() as s:
            row = self._route_row(s, name, lock=True)
            row.key_sha256 = key_sha256
            s.flush()
            self._event(s, "route.rotate_key", f"route:{name}", revision=row.revision)
        return key

    def resolve_route(
        self, name: str, row: Mapping[str, Any], subject_id: str | None = None
    ) -> RouteDecision:
        """Where a request with fields ``row`` (and subject ``subject_id``) goes on route
        ``name``: the deployment that answers, the rule that chose it, and any shadow.

        The stored spec is checked again against the deployments as they are now, so a route
        whose deployment was retired or now serves a model without a rule's field is refused
        (Conflict) rather than mis-routing. Raises NotFound, Conflict.
        """
        return self.route_spec(name).decide(row, subject_id)

    def route_spec(self, name: str) -> RouteSpec:
        """Route ``name`` parsed against its deployments as they are now (see resolve_route)."""
        return self._route_for_request(name, None, check_key=False)[0]

    def check_route_key(self, name: str, key: str | None) -> None:
        """Accept ``key`` for route ``name`` or raise AuthenticationFailed (constant time);
        NotFound if there is no such route."""
        self._authorize("model.view", f"route {name}")
        _, route = self._serving_snapshot(name)
        _check_key(name, route, key)

    def _route_for_request(
        self, name: str, key: str | None, *, check_key: bool
    ) -> tuple[RouteSpec, ServingState]:
        """Route ``name``'s spec as it is now and the serving state it belongs to, from one
        read; with ``check_key``, ``key`` is checked first (AuthenticationFailed, nothing
        else done). Raises NotFound, AuthenticationFailed, Conflict."""
        self._authorize("model.view", f"route {name}")
        state, route = self._serving_snapshot(name)
        if check_key:
            _check_key(name, route, key)
        assert route is not None
        cached = state.routes.get(name)
        if cached is not None and cached[:2] == (route.id, route.revision):
            return cached[2], state
        spec = self._parse_stored_route(name)  # read after the fingerprint: same or newer
        state.routes[name] = (route.id, route.revision, spec)
        return spec, state

    def _serving_snapshot(self, route: str | None) -> tuple[ServingState, RouteRevision | None]:
        """Read the fingerprint (and route ``route``'s row) in one statement; the state cached
        under it. Raises NotFound for a ``route`` that does not exist."""
        with self._db.engine.connect() as connection:  # Core: this runs on every request
            if route is None:
                deployments, found = tuple(connection.execute(_FINGERPRINT).one()), None
            else:
                row = connection.execute(_ROUTE_AND_FINGERPRINT, {"route": route}).one_or_none()
                if row is None:
                    raise NotFound(f"route {route!r} not found")
                found, deployments = RouteRevision(*row[:3]), tuple(row[3:])
        with _SERVING_LOCK:
            state = _SERVING.get(self._db)
            if state is None or state.deployments != deployments:
                state = _SERVING[self._db] = ServingState(deployments)
        return state, found

    def _parse_stored_route(self, name: str) -> RouteSpec:
        with self._read() as s:
            row = self._route_row(s, name)
            spec = _spec_of(s, row)
            try:
                deployments = self._active_deployments(s)
                parsed = routing.parse_route(spec, _schemas(deployments), name=name)
                _check_answering(parsed, deployments)
                return parsed
            except InvalidInput as exc:
                raise Conflict(
                    f"route {name} no longer fits its deployments ({exc}); set it again"
                ) from None

    def check_deployment_key(self, deployment: str, key: str | None) -> None:
        """Accept ``key`` for scoring ``deployment`` directly (the Open Inference Protocol path):
        it must be the key of a route that can send traffic there (rule target, default,
        canary; never a shadow-only deployment, whose answers nobody may see). Raises
        AuthenticationFailed otherwise; routes that no longer fit their deployments are
        skipped, as they serve nothing."""
        if key:
            for route in self.routes():
                try:
                    answering = _answering(self.route_spec(route.name))
                    reaches = deployment in {target for _, target in answering}
                except Conflict:
                    continue
                if not reaches:
                    continue
                try:
                    self.check_route_key(route.name, key)
                except AuthenticationFailed:
                    continue
                return
        why = "no key presented" if not key else "no route sending to it accepts this key"
        raise AuthenticationFailed(f"route key refused for model {deployment}: {why}")

    # --- helpers ---------------------------------------------------------------------------

    def _route_row(
        self, s: Session, name: str, *, required: bool = True, lock: bool = False
    ) -> t.Route | None:
        query = select(t.Route).where(t.Route.name == name)
        row = s.execute(query.with_for_update() if lock else query).scalar_one_or_none()
        if row is None and required:
            raise NotFound(f"route {name!r} not found")
        return row

    def _active_deployments(self, s: Session) -> list[t.Deployment]:
        return list(s.scalars(select(t.Deployment).where(t.Deployment.status == "active")))

    def _route_view(self, s: Session, row: t.Route) -> views.Route:
        spec = _spec_of(s, row)
        return views.Route(
            row.name,
            tuple(spec["rules"]),
            spec["default"],
            spec["canary"],
            spec["shadow"],
            row.revision,
            row.created_at,
            row.created_by,
        )


def _check_key(name: str, route: RouteRevision | None, key: str | None) -> None:
    stored = route.key_sha256 if route is not None else None
    if not routing.route_key_matches(key, stored):
        why = "no key presented" if not key else "wrong key"
        raise AuthenticationFailed(f"route key refused for route {name}: {why}")


def _answering(spec: RouteSpec) -> list[tuple[str, str]]:
    """The deployments that may answer on a route (not its shadow), with where it names them."""
    pairs = [(f"rule {r.name!r}", r.to) for r in spec.rules] + [("default", spec.default)]
    return pairs + ([("canary", spec.canary.to)] if spec.canary else [])


def _check_answering(spec: RouteSpec, deployments: list[t.Deployment]) -> None:
    """InvalidInput if a shadow-only deployment (serving a version that is not deployed)
    would answer on the route (``governance.lifecycle.check_answering``)."""
    statuses = {d.name: d.model_version.status for d in deployments}
    lifecycle.check_answering(spec.name, _answering(spec), statuses)


def _schemas(deployments: list[t.Deployment]) -> dict[str, dict[str, Any]]:
    return {d.name: d.model_version.input_schema or {} for d in deployments}


def _fill(row: t.Route, spec: RouteSpec, ids: dict[str, int]) -> None:
    data = spec.to_dict()
    row.rules = data["rules"]
    row.default_deployment_id = ids[spec.default]
    row.shadow_deployment_id = ids[spec.shadow] if spec.shadow else None
    row.canary = (
        {"to": spec.canary.to, "share": spec.canary.share, "deployment_id": ids[spec.canary.to]}
        if spec.canary
        else {}
    )


def _spec_of(s: Session, row: t.Route) -> dict[str, Any]:
    """The spec dict a stored route stands for (deployments by name, as a person writes it)."""

    def name_of(deployment_id: int | None) -> str | None:
        if deployment_id is None:
            return None
        deployment = s.get(t.Deployment, deployment_id)
        return deployment.name if deployment is not None else None

    canary = row.canary or {}
    return {
        "rules": [dict(r) for r in row.rules or []],
        "default": name_of(row.default_deployment_id),
        "canary": {"to": canary["to"], "share": canary["share"]} if canary else None,
        "shadow": name_of(row.shadow_deployment_id),
    }
