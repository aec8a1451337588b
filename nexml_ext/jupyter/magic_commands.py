"""The ``%nexml`` subcommand registry: one argparse parser and one function per subcommand.

A subcommand module declares each command with :func:`command`; the function receives the
``NexmlMagics`` instance and the parsed arguments, calls one Workspace method and returns what
the notebook should show. Nothing here decides anything: refusals come from the Workspace.
"""

from __future__ import annotations

import argparse
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

    from .magics import NexmlMagics

Run = Callable[["NexmlMagics", argparse.Namespace], Any]


class CommandParser(argparse.ArgumentParser):
    """argparse that reports instead of exiting: a usage mistake raises UsageError, and
    ``--help`` prints the help and raises HelpShown (the magic then returns None)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if message:
            raise UsageError(f"{self.prog}: {message.strip()}")
        raise HelpShown


class HelpShown(Exception):  # noqa: N818 - a signal, not a failure
    """Raised after a subcommand printed its help: there is nothing to run."""


@dataclass(frozen=True)
class Arg:
    """One ``add_argument`` call, declared beside the command it belongs to."""

    flags: tuple[str, ...]
    options: dict[str, Any]


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


@dataclass(frozen=True)
class Subcommand:
    name: str
    parser: CommandParser
    run: Run
    takes_cell: bool = False

    @property
    def summary(self) -> str:
        return (self.parser.description or "").strip().splitlines()[0]


#: Every subcommand by its name ("train", "audit log"), in the order they were declared.
COMMANDS: dict[str, Subcommand] = {}
#: Names that only group subcommands ("audit" -> "audit verify", "audit log", ...).
GROUPS: dict[str, str] = {"audit": "The hash-chained audit trail."}


def command(name: str, *arguments: Arg, cell: bool = False) -> Callable[[Run], Run]:
    """Register ``name`` as a subcommand; its docstring is the help, ``arguments`` its options.

    ``cell=True`` marks the one kind of subcommand that reads the body of ``%%nexml``.
    """

    def register(run: Run) -> Run:
        parser = CommandParser(
            prog=f"%nexml {name}" if not cell else f"%%nexml {name}",
            description=inspect.cleandoc(run.__doc__ or ""),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for declared in arguments:
            parser.add_argument(*declared.flags, **declared.options)
        parser.add_argument(
            "--debug", action="store_true", help="show the full traceback if the command fails"
        )
        COMMANDS[name] = Subcommand(name, parser, run, cell)
        return run

    return register


def overview() -> str:
    """The subcommand list that ``%nexml``, ``%nexml --help`` and ``%nexml?`` show."""
    width = max(len(name) for name in COMMANDS)
    lines = ["subcommands (%nexml SUBCOMMAND --help explains one):"]
    lines += [f"  {name.ljust(width)}  {c.summary}" for name, c in COMMANDS.items()]
    return "\n".join(lines)


def group_help(group: str) -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"%nexml {group}: {GROUPS[group]}", ""]
    lines += [
        f"  {name.ljust(width)}  {c.summary}"
        for name, c in COMMANDS.items()
        if name.startswith(group + " ")
    ]
    return "\n".join(lines)


# --- notebook variables ---------------------------------------------------------------------
# Arguments may name a variable of the notebook instead of spelling a value. A name that is not
# a variable is passed on as written, so the Workspace judges it (a malformed reference is its
# refusal, not ours) — except where only a variable makes sense, which is said once, here.


def _variable(ns: dict[str, Any], name: str) -> Any:
    return ns.get(name, _MISSING) if name.isidentifier() else _MISSING


_MISSING = object()


def model_ref(ns: dict[str, Any], value: str) -> str:
    """``NAME:VERSION`` as written, or from a variable holding a ModelVersion or a string."""
    found = _variable(ns, value)
    if found is _MISSING:
        return value
    if isinstance(found, str):
        return found
    ref = getattr(found, "ref", None)
    if isinstance(ref, str) and hasattr(found, "artifact_sha256"):
        return ref
    raise InvalidInput(f"{value} is a {type(found).__name__}, not a model version or NAME:VERSION")


def dataset_ref(ns: dict[str, Any], value: str, option: str = "DATASET") -> str:
    """A dataset version ``NAME:VERSION``, as written or from a variable holding one."""
    found = _variable(ns, value)
    if found is _MISSING:
        if value.isidentifier():
            raise InvalidInput(
                f"{option} {value}: no notebook variable named {value!r}, and it is not a "
                "dataset reference NAME:VERSION"
            )
        return value
    if isinstance(found, str):
        return found
    ref = getattr(found, "ref", None)
    if isinstance(ref, str) and hasattr(found, "content_sha256"):
        return ref
    import pandas as pd

    hint = " (register it first: %nexml ingest VAR --name NAME)"
    hint = hint if isinstance(found, pd.DataFrame) else ""
    raise InvalidInput(
        f"{option} {value}: a {type(found).__name__} is not a registered dataset version{hint}"
    )


def frame_or_dataset(ns: dict[str, Any], value: str, option: str = "--data") -> pd.DataFrame | str:
    """A notebook DataFrame by its variable name, or a dataset version reference."""
    import pandas as pd

    found = _variable(ns, value)
    if isinstance(found, pd.DataFrame):
        return found
    return dataset_ref(ns, value, option)


def ingest_source(ns: dict[str, Any], value: str) -> Any:
    """What ``%nexml ingest`` reads: a notebook variable's value, or a path or URL."""
    found = _variable(ns, value)
    if found is not _MISSING:
        return found
    if value.isidentifier() and not os.path.exists(value):
        raise InvalidInput(f"SOURCE {value}: no notebook variable or file named {value!r}")
    return value


def training_run(magics: NexmlMagics, value: str | None) -> Any:
    """The TrainingRun a variable holds, or the session's last ``%nexml train`` run."""
    if value is None:
        if magics.last_run is None:
            raise InvalidInput(
                "no training run in this session yet: run %nexml train first, or name a "
                "variable holding a run"
            )
        return magics.last_run
    found = _variable(magics.user_ns, value)
    if found is _MISSING:
        raise InvalidInput(f"RUN {value}: no notebook variable named {value!r}")
    if not (hasattr(found, "leaderboard") and hasattr(found, "champion_name")):
        raise InvalidInput(f"RUN {value}: a {type(found).__name__} is not a training run")
    return found


def secret(ns: dict[str, Any], value: str | None) -> str | None:
    """A token as written, or from a variable holding it (keeps the secret out of the cell)."""
    if value is None:
        return None
    found = _variable(ns, value)
    return found if isinstance(found, str) else value


# --- rendering ------------------------------------------------------------------------------


def view(widget: str, *args: Any, fallback: Any, **kwargs: Any) -> Any:
    """``nexml_ext.jupyter.widgets.<widget>(*args)``, or ``fallback`` while there are no widgets.

    Only the widgets module's own absence falls back; an error inside it is raised as usual.
    """
    try:
        from . import widgets
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.widgets":
            raise
        return fallback
    make = getattr(widgets, widget, None)
    return fallback if make is None else make(*args, **kwargs)


def table(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """A listing as a DataFrame with fixed columns (also when there are no rows)."""
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)
