"""``%nexml`` subcommands for identity and data: whoami, connect, ingest, split, datasets."""

from __future__ import annotations

from argparse import Namespace
from typing import TYPE_CHECKING

from .magic_commands import arg, command, dataset_ref, ingest_source, secret, table

if TYPE_CHECKING:
    import pandas as pd

    from ..governance.roles import Principal
    from ..workspace import Workspace, views
    from .magics import NexmlMagics


@command("whoami")
def whoami(nx: NexmlMagics, args: Namespace) -> Principal:
    """Who the notebook acts as (role and name).

    Returns the Principal.
    """
    return nx.workspace.whoami()


@command(
    "connect",
    arg("--token", metavar="T",
        help="a token, or the name of a notebook variable holding one (keeps the secret out of "
             "the cell); default NEXML_TOKEN, then the credentials file of `nexml init`"),
    arg("--home", metavar="H", help="store folder (default NexmlMagics.home, then NEXML_HOME)"),
    arg("--database-url", metavar="U",
        help="SQLAlchemy URL of the store (default NexmlMagics.database_url, then "
             "NEXML_DATABASE_URL, then SQLite under the home)"),
)
def connect(nx: NexmlMagics, args: Namespace) -> Workspace:
    """Open the Workspace as a token's user; later subcommands act as that user.

    Without options it connects as `nexml_ext.connect()` does, from the environment or the
    credentials file. Returns the Workspace, so `ws = %nexml connect` gives the Python API too.
    """
    return nx.connect(
        secret(nx.user_ns, args.token), home=args.home, database_url=args.database_url
    )


@command(
    "ingest",
    arg("source", metavar="SOURCE",
        help="a notebook variable holding a DataFrame, or a CSV/Parquet path, an fsspec URL or a "
             "PostgreSQL/MySQL URL (with --table or --query)"),
    arg("--name", required=True, help="dataset name; the data becomes its next version"),
    arg("--table", metavar="T", help="table to read from a database URL"),
    arg("--query", metavar="Q", help="SELECT to run on a database URL"),
)
def ingest(nx: NexmlMagics, args: Namespace) -> views.DatasetVersion:
    """Register a table as the next version of a dataset (hashed, profiled, immutable).

    Returns the DatasetVersion.
    """
    source = ingest_source(nx.user_ns, args.source)
    return nx.workspace.ingest(source, args.name, table=args.table, query=args.query)


@command(
    "split",
    arg("dataset", metavar="DATASET",
        help="dataset version NAME:VERSION, or a variable holding one"),
    arg("--target", required=True, metavar="T", help="column to stratify on"),
    arg("--test-size", type=float, default=0.25, help="holdout share (default 0.25)"),
    arg("--seed", type=int, default=0, help="random seed (default 0)"),
)
def split(
    nx: NexmlMagics, args: Namespace
) -> tuple[views.DatasetVersion, views.DatasetVersion]:
    """Split a dataset version into NAME-train and NAME-holdout (stratified, seeded).

    Returns (train, holdout), two DatasetVersions: `train, holdout = %nexml split ...`.
    """
    return nx.workspace.split(
        dataset_ref(nx.user_ns, args.dataset), args.target, test_size=args.test_size,
        seed=args.seed,
    )


@command("datasets")
def datasets(nx: NexmlMagics, args: Namespace) -> pd.DataFrame:
    """Every dataset version, oldest first.

    Returns a pandas DataFrame.
    """
    return table(
        [
            {"ref": d.ref, "rows": d.row_count, "split": d.split, "created_by": d.created_by,
             "created_at": d.created_at, "sha256": d.content_sha256}
            for d in nx.workspace.datasets()
        ],
        ["ref", "rows", "split", "created_by", "created_at", "sha256"],
    )
