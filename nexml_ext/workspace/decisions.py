"""Use cases that move a version through its lifecycle: approve, reject, deploy, roll back, retire.

Each one is a single transaction holding a row lock on the version, so two people deciding the
same version at once cannot both win: the second finds it decided and gets ``Conflict``.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from sqlalchemy import select

from .. import __version__
from ..deploy import export, sizes
from ..errors import Conflict, IntegrityError, InvalidInput, InvalidTransition, NotFound
from ..governance import lifecycle
from ..governance.audit import GENESIS
from ..governance.lifecycle import Status
from ..governance.naming import check_name, format_ref
from ..store import tables as t
from . import views
from .core import WorkspaceCore


class DecisionsMixin(WorkspaceCore):
    def approve(self, ref: str, *, findings: str) -> views.Approval:
        """Approve a staging version.

        Refused unless: the principal may approve (manager, superadmin) and is not the author;
        the version is in staging; ``findings`` are written; a platform validation of this exact
        artifact hash exists; the mandatory compliance sections of its risk tier are complete;
        and the stored artifact still matches its hash.
        Raises PermissionDenied, Conflict, InvalidTransition, InvalidInput, IncompleteCompliance,
        IntegrityError.
        """
        return self._decide("approve", ref, findings)

    def reject(self, ref: str, *, findings: str) -> views.Approval:
        """Reject a staging version with written findings (never one's own)."""
        return self._decide("reject", ref, findings)

    def _decide(self, move: str, ref: str, findings: str) -> views.Approval:
        self._authorize(f"model.{move}", ref)
        with self._write() as s:
            version = self._version_row(s, ref, lock=True)
            lifecycle.check_not_author(self.principal, move, ref, version.author)
            target = lifecycle.next_status(move, version.status, ref)
            text = lifecycle.check_findings(move, ref, findings)
            validation_id = report_id = None
            if move == "approve":
                validations = list(
                    s.scalars(
                        select(t.Validation)
                        .where(t.Validation.model_version_id == version.id)
                        .order_by(t.Validation.id.desc())
                    )
                )
                lifecycle.check_validated(
                    ref, version.artifact_sha256, [v.artifact_sha256 for v in validations]
                )
                rests_on = next(
                    v for v in validations if v.artifact_sha256 == version.artifact_sha256
                )
                validation_id, report_id = rests_on.id, rests_on.report_id
                state = self._compliance_state(s, version)  # type: ignore[attr-defined]
                lifecycle.check_compliance(ref, state.tier, state.score.missing_mandatory)
                self._verify_artifact(move, ref, version)
            before = version.status
            version.status = target.value
            approval = t.Approval(
                model_version_id=version.id,
                decision=target.value,
                findings=text,
                approver=self.principal.name,
                approver_role=self.principal.role.value,
                artifact_sha256=version.artifact_sha256,
                validation_id=validation_id,
            )
            s.add(approval)
            s.flush()
            self._event(
                s,
                f"model.{move}",
                ref,
                before={"status": before},
                after={"status": target.value},
                findings=text,
                artifact_sha256=version.artifact_sha256,
                validation=validation_id,
                **({"report": report_id} if report_id is not None else {}),
            )
            return views.Approval.of(ref, approval, report_id)

    def approvals(self, ref: str) -> list[views.Approval]:
        """Decisions recorded on a version, oldest first."""
        self._authorize("model.view", ref)
        with self._read() as s:
            version = self._version_row(s, ref)
            rows = list(
                s.scalars(
                    select(t.Approval)
                    .where(t.Approval.model_version_id == version.id)
                    .order_by(t.Approval.id)
                )
            )
            ids = {r.validation_id for r in rows if r.validation_id is not None}
            reports: dict[int, int | None] = {}
            if ids:
                query = select(t.Validation.id, t.Validation.report_id)
                for vid, rid in s.execute(query.where(t.Validation.id.in_(ids))):
                    reports[vid] = rid
            return [views.Approval.of(ref, r, reports.get(r.validation_id)) for r in rows]

    def deploy(self, ref: str, *, name: str, size: str = "small") -> views.Deployment:
        """Deploy an approved version under deployment ``name`` (state only; serving comes later).

        If ``name`` already serves another version of the same model, that version goes back
        to ``approved``. The artifact is re-verified against its hash first.
        """
        self._authorize("model.deploy", ref)
        check_name("deployment", name)
        sizes.get(size)  # InvalidInput naming the sizes
        with self._write() as s:
            version = self._version_row(s, ref, lock=True)
            target = lifecycle.next_status("deploy", version.status, ref)
            deployment = self._deployment_row(s, name, required=False)
            if deployment is not None and deployment.model_id != version.model_id:
                raise InvalidInput(
                    f"cannot deploy {ref} as {name!r}: that deployment serves model "
                    f"{deployment.model_version.model.name}; choose another name"
                )
            self._verify_artifact("deploy", ref, version)
            return self._switch(s, "model.deploy", name, deployment, version, target, size)

    def rollback(self, name: str, *, to: str) -> views.Deployment:
        """Point deployment ``name`` back at an earlier approved version ``to``."""
        self._authorize("model.rollback", f"deployment {name}")
        with self._write() as s:
            deployment = self._deployment_row(s, name)
            if deployment.status != "active":
                raise InvalidTransition(
                    f"cannot roll back {name!r}: the deployment is {deployment.status}"
                )
            current = deployment.model_version
            version = self._version_row(s, to, lock=True)
            if version.model_id != deployment.model_id:
                raise InvalidInput(
                    f"cannot roll back {name!r} to {to}: it serves model {current.model.name}"
                )
            if version.version >= current.version:
                raise InvalidTransition(
                    f"cannot roll back {name!r} to {to}: it is not earlier than the deployed "
                    f"{format_ref(current.model.name, current.version)}; deploy it instead"
                )
            target = lifecycle.next_status("rollback", version.status, to)
            self._verify_artifact("roll back to", to, version)
            return self._switch(
                s, "model.rollback", name, deployment, version, target, deployment.size
            )

    def retire(self, ref: str, *, reason: str = "") -> views.ModelVersion:
        """Retire a version for good; if it is deployed, its deployment stops too."""
        self._authorize("model.retire", ref)
        with self._write() as s:
            version = self._version_row(s, ref, lock=True)
            before = version.status
            version.status = lifecycle.next_status("retire", version.status, ref).value
            stopped = []
            for deployment in s.scalars(
                select(t.Deployment).where(
                    t.Deployment.model_version_id == version.id, t.Deployment.status == "active"
                )
            ):
                deployment.status = "retired"
                stopped.append(deployment.name)
            s.flush()
            self._event(
                s,
                "model.retire",
                ref,
                before={"status": before},
                after={"status": version.status},
                reason=reason.strip(),
                deployments_stopped=stopped,
            )
            return views.ModelVersion.of(version)

    def deployments(self) -> list[views.Deployment]:
        """Every deployment and the version it serves."""
        self._authorize("model.view")
        with self._read() as s:
            return [
                self._deployment_view(d)
                for d in s.scalars(select(t.Deployment).order_by(t.Deployment.name))
            ]

    def export_deployment(
        self, name: str, *, target: str, out: str | Path, force: bool = False
    ) -> export.Bundle:
        """Write a bundle to run deployment ``name`` elsewhere (``target`` docker or kubernetes)
        into the directory ``out``; see ``nexml_ext.deploy.export`` for its contents.

        Refused unless the principal may export (manager, superadmin), the deployment exists
        and is active, the artifact still matches its registered hash (the bundle's copy is the
        verified one), and ``out`` is missing or empty (``force`` replaces a non-empty one).
        The bundle is built beside ``out`` and moved into place in one rename; the export is an
        audit event naming the deployment, version, artifact hash, target and bundle hash.
        Raises PermissionDenied, NotFound, InvalidTransition, InvalidInput, IntegrityError,
        Conflict (the deployment changed while the bundle was built).
        """
        self._authorize("deployment.export", f"deployment {name}")
        target = export.check_target(target)
        with self._read() as s:
            deployment = self._active_deployment(s, name, "export")
            version = deployment.model_version
            spec = export.BundleSpec(
                deployment=name,
                model=version.model.name,
                version=version.version,
                artifact_sha256=version.artifact_sha256,
                artifact_uri=version.artifact_uri,
                artifact_root=self._store.root,
                size=sizes.get(deployment.size),
                target=target,
                made_at=t.utcnow(),
                made_by=self.principal.name,
                made_by_role=self.principal.role.value,
                nexml_version=__version__,
            )
            version_id = version.id
        destination = export.check_destination(out, force)
        staging = export.new_staging(destination)
        try:
            try:
                self._store.fetch(
                    spec.artifact_uri, spec.artifact_sha256, staging / export.ARTIFACT_DIR
                )
            except (IntegrityError, NotFound) as exc:
                raise IntegrityError(
                    f"cannot export {name!r}: the artifact of {spec.model_ref} no longer "
                    f"matches the registered hash: {exc}"
                ) from None
            bundle = export.write_bundle(staging, spec)
            with export.publishing(staging, destination), self._write() as s:
                current = self._active_deployment(s, name, "export", lock=True)
                if current.model_version_id != version_id:
                    raise Conflict(
                        f"cannot export {name!r}: it was switched to another version while "
                        "the bundle was built; nothing was written"
                    )
                self._event(
                    s,
                    "deployment.export",
                    f"deployment:{name}",
                    version=spec.model_ref,
                    artifact_sha256=spec.artifact_sha256,
                    size=spec.size.name,
                    target=target,
                    out=str(destination),
                    bundle_sha256=bundle.bundle_sha256,
                    nexml_version=__version__,
                )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return replace(bundle, path=destination)

    # --- helpers ---------------------------------------------------------------------------

    def _switch(self, s, action, name, deployment, version, target: Status, size):
        ref = format_ref(version.model.name, version.version)
        previous = None
        if deployment is None:
            # The deployment's decision chain starts now, so concurrent first predictions from
            # several gateway processes lock an existing head instead of racing to create it.
            s.add(t.ChainHead(chain=f"predictions:{name}", seq=0, hash=GENESIS))
            deployment = t.Deployment(
                name=name,
                model_id=version.model_id,
                model_version_id=version.id,
                size=size,
                created_by=self.principal.name,
            )
            s.add(deployment)
        else:
            old = deployment.model_version
            if deployment.status == "active" and old.id != version.id:
                # A shadow-only deployment's version (staging, approved) never was deployed.
                if lifecycle.answers(old.status):
                    old.status = lifecycle.next_status("undeploy", old.status, ref).value
                previous = format_ref(old.model.name, old.version)
            deployment.model_version_id = version.id
            deployment.model_version = version
            deployment.size, deployment.status = size, "active"
        before = version.status
        version.status = target.value
        s.flush()
        self._event(
            s,
            action,
            f"deployment:{name}",
            version=ref,
            previous=previous,
            size=size,
            before={"status": before},
            after={"status": target.value},
            artifact_sha256=version.artifact_sha256,
        )
        return self._deployment_view(deployment)

    def _deployment_row(self, s, name: str, required: bool = True) -> t.Deployment | None:
        row = s.execute(
            select(t.Deployment).where(t.Deployment.name == name).with_for_update()
        ).scalar_one_or_none()
        if row is None and required:
            raise NotFound(f"deployment {name!r} not found")
        return row

    def _active_deployment(self, s, name: str, move: str, lock: bool = False) -> t.Deployment:
        query = select(t.Deployment).where(t.Deployment.name == name)
        row = s.execute(query.with_for_update() if lock else query).scalar_one_or_none()
        if row is None:
            raise NotFound(f"deployment {name!r} not found")
        if row.status != "active":
            raise InvalidTransition(f"cannot {move} {name!r}: the deployment is {row.status}")
        return row

    def _deployment_view(self, d: t.Deployment) -> views.Deployment:
        mv = d.model_version
        return views.Deployment(
            d.name,
            format_ref(mv.model.name, mv.version),
            d.size,
            d.status,
            d.created_by,
            d.updated_at,
        )

    def _verify_artifact(self, move: str, ref: str, version: t.ModelVersion) -> None:
        try:
            self._store.verify(version.artifact_uri, version.artifact_sha256)
        except (IntegrityError, NotFound) as exc:
            raise IntegrityError(
                f"cannot {move} {ref}: its artifact no longer matches the registered hash: {exc}"
            ) from None
