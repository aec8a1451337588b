"""Use cases for datasets: register a table as an immutable, hashed dataset version."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..errors import InvalidInput, NotFound
from ..governance.naming import check_name, parse_ref
from ..store import tables as t
from . import views
from .core import WorkspaceCore

if TYPE_CHECKING:
    import pandas as pd


class DatasetsMixin(WorkspaceCore):
    def ingest(
        self,
        source: Any,
        name: str,
        *,
        table: str | None = None,
        query: str | None = None,
        storage_options: dict[str, Any] | None = None,
        format: str | None = None,  # noqa: A002 - the reader's own word
    ) -> views.DatasetVersion:
        """Read a table from anywhere and register it as the next version of ``name``.

        ``source``: a DataFrame, a CSV/Parquet path, an fsspec URL (``s3://``, ``file://``,
        ``memory://``) or a SQLAlchemy URL of PostgreSQL or MySQL/MariaDB with ``table`` or
        ``query``. The lineage keeps where it came from with credentials removed.
        """
        self._authorize("dataset.register", f"dataset {name}")
        from ..ml.connectors import read_source

        frame, lineage = read_source(
            source, table=table, query=query, storage_options=storage_options, format=format
        )
        return self.register_dataset(frame, name, source=lineage)

    def register_dataset(
        self,
        data: pd.DataFrame | str | Path,
        name: str,
        *,
        source: dict[str, Any] | None = None,
        split: str | None = None,
        parent: str | None = None,
    ) -> views.DatasetVersion:
        """Register a table (DataFrame, CSV or Parquet path) as the next version of ``name``.

        The rows are stored as Parquet in the artifact store with their SHA-256, beside the
        schema and the drift-baseline profile. Registering content identical to an existing
        version of ``name`` returns that version unchanged.
        Raises PermissionDenied, InvalidInput (unreadable or empty table, bad name), NotFound
        (unknown parent).
        """
        import pandas as pd

        from ..ml import data as mldata  # pandas loads only when data is handled
        from ..ml.connectors import read_source
        from ..ml.profile import profile

        self._authorize("dataset.register", f"dataset {name}")
        check_name("dataset", name)
        if isinstance(data, pd.DataFrame):
            frame, origin = data, dict(source or {"kind": "dataframe"})
        else:
            frame, lineage = read_source(data)
            origin = dict(source or lineage)
        if frame.empty:
            raise InvalidInput(f"cannot register dataset {name!r}: the table has no rows")
        digest = mldata.content_sha256(frame)
        with self._read() as s:
            existing = self._find_dataset_version(s, name, digest)
            if existing is not None:
                return views.DatasetVersion.of(existing)
        # The costly parts happen before the write transaction, which then only inserts.
        schema, baseline = mldata.schema_of(frame), profile(frame)
        uri, data_sha = self._store.put_bytes(
            mldata.to_parquet_bytes(frame),
            f"datasets/{name}/{digest}-{t.utcnow():%Y%m%d%H%M%S%f}.parquet",
        )
        with self._write() as s:
            existing = self._find_dataset_version(s, name, digest)
            if existing is not None:
                return views.DatasetVersion.of(existing)
            dataset = s.execute(
                select(t.Dataset).where(t.Dataset.name == name)
            ).scalar_one_or_none()
            if dataset is None:
                dataset = t.Dataset(name=name, created_by=self.principal.name)
                s.add(dataset)
                s.flush()
            parent_id = self._dataset_version_row(s, parent).id if parent else None
            number = self._next_number(
                s, t.DatasetVersion.version, t.DatasetVersion.dataset_id == dataset.id
            )
            row = t.DatasetVersion(
                dataset=dataset,
                version=number,
                content_sha256=digest,
                row_count=len(frame),
                schema=schema,
                source=origin,
                profile=baseline,
                data_uri=uri,
                data_sha256=data_sha,
                parent_id=parent_id,
                split=split,
                created_by=self.principal.name,
            )
            s.add(row)
            s.flush()
            self._event(
                s,
                "dataset.register",
                f"dataset:{name}:{number}",
                sha256=digest,
                rows=len(frame),
                split=split,
                parent=parent,
            )
            return views.DatasetVersion.of(row)

    def split(
        self,
        ref: str,
        target: str,
        *,
        test_size: float = 0.25,
        seed: int = 0,
        stratify: bool = True,
    ) -> tuple[views.DatasetVersion, views.DatasetVersion]:
        """Split a dataset version into train and holdout versions (stratified, seeded).

        They are registered as ``<name>-train`` and ``<name>-holdout``, each with the parent
        version, the seed and the test size in its lineage, so the split can be reproduced.
        """
        from ..ml.data import split as split_frame

        name = parse_ref(ref, "dataset")[0]
        self._authorize("dataset.register", f"dataset {name}")
        frame = self.load_dataset(ref)
        train, holdout = split_frame(frame, target, test_size=test_size, seed=seed,
                                     stratify=stratify)
        recipe = {"kind": "split", "parent": ref, "target": target, "test_size": test_size,
                  "seed": seed, "stratified": stratify}
        return (
            self.register_dataset(train, f"{name}-train", split="train", parent=ref,
                                  source={**recipe, "part": "train"}),
            self.register_dataset(holdout, f"{name}-holdout", split="holdout", parent=ref,
                                  source={**recipe, "part": "holdout"}),
        )

    def datasets(self) -> list[views.DatasetVersion]:
        """Every dataset version, newest last."""
        self._authorize("dataset.view")
        with self._read() as s:
            rows = s.scalars(select(t.DatasetVersion).order_by(t.DatasetVersion.id))
            return [views.DatasetVersion.of(r) for r in rows]

    def dataset(self, ref: str) -> views.DatasetVersion:
        """One dataset version by ``NAME:VERSION``."""
        self._authorize("dataset.view", ref)
        with self._read() as s:
            return views.DatasetVersion.of(self._dataset_version_row(s, ref))

    def load_dataset(self, ref: str) -> pd.DataFrame:
        """The rows of a dataset version, read back and checked against their SHA-256."""
        from ..ml import data as mldata

        version = self.dataset(ref)
        if version.data_uri is None:
            raise NotFound(f"dataset {ref} has no stored rows")
        with self._read() as s:
            data_sha = self._dataset_version_row(s, ref).data_sha256 or ""
        return mldata.from_parquet_bytes(self._store.get_bytes(version.data_uri, data_sha))

    def _find_dataset_version(self, s, name: str, digest: str) -> t.DatasetVersion | None:
        return s.execute(
            select(t.DatasetVersion)
            .join(t.Dataset)
            .where(t.Dataset.name == name, t.DatasetVersion.content_sha256 == digest)
            .order_by(t.DatasetVersion.version)
            .limit(1)
        ).scalar_one_or_none()

    def _dataset_version_row(self, s, ref: str) -> t.DatasetVersion:
        name, version = parse_ref(ref, "dataset")
        row = s.execute(
            select(t.DatasetVersion)
            .join(t.Dataset)
            .where(t.Dataset.name == name, t.DatasetVersion.version == version)
        ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"dataset version {ref} not found")
        return row
