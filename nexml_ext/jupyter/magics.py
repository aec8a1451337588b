"""``%nexml`` and ``%%nexml``: the Workspace from a notebook cell.

The magic splits the line with shlex (quotes work; ``$`` and ``{}`` are taken literally, so
findings are recorded exactly as typed — name notebook variables instead), finds the subcommand
and hands it the parsed arguments. Subcommands live in ``magic_data``, ``magic_models`` and
``magic_review``; options that persist are traitlets, so ``%config NexmlMagics.<option> = ...``
works. A refusal prints one line ``error: ...`` to stderr and the magic returns None;
``%nexml --debug ...`` (or ``%config NexmlMagics.debug = True``) raises instead.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    line_cell_magic,
    magics_class,
    no_var_expand,
    output_can_be_silenced,
)
from IPython.core.magic_arguments import MagicHelpFormatter, argument, kwds, magic_arguments
from traitlets import Bool, CaselessStrEnum, Float, Unicode
from traitlets.config import Configurable

from ..errors import NexmlError
from . import magic_data, magic_models, magic_review  # noqa: F401 - they register subcommands
from .magic_commands import COMMANDS, GROUPS, HelpShown, group_help, overview

if TYPE_CHECKING:
    from ..ml.automl import TrainingRun
    from ..workspace import Workspace


class _TopHelp(MagicHelpFormatter):
    """IPython's magic help, with a plain ``usage:`` line (it is also printed by --help)."""

    def add_usage(self, usage, actions, groups, prefix="usage: %"):  # type: ignore[no-untyped-def]
        argparse.RawDescriptionHelpFormatter.add_usage(self, usage, actions, groups, prefix)


@magics_class
class NexmlMagics(Magics, Configurable):
    """The ``%nexml`` magics. One instance per shell holds the open Workspace and the last run.

    The token is deliberately not an option here: secrets do not belong in configuration.
    It comes from NEXML_TOKEN, the credentials file, or ``%nexml connect --token``.
    """

    home = Unicode(
        None, allow_none=True, help="Store folder to connect to (default: NEXML_HOME, ~/.nexml)."
    ).tag(config=True)
    database_url = Unicode(
        None, allow_none=True,
        help="SQLAlchemy URL of the store (default: NEXML_DATABASE_URL, SQLite under home).",
    ).tag(config=True)
    default_backend = CaselessStrEnum(
        ("sklearn", "autogluon"), default_value="sklearn",
        help="AutoML engine %nexml train uses when --backend is not given.",
    ).tag(config=True)
    default_time_limit = Float(
        60.0, help="Seconds %nexml train searches when --time-limit is not given."
    ).tag(config=True)
    progress = Bool(True, help="Show progress bars while training.").tag(config=True)
    debug = Bool(
        False, help="Raise failures with their traceback instead of printing one line."
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._workspace: Workspace | None = None
        #: The TrainingRun of the last ``%nexml train``: what leaderboard and register default to.
        self.last_run: TrainingRun | None = None

    # --- the Workspace ------------------------------------------------------------------------

    @property
    def user_ns(self) -> dict[str, Any]:
        return self.shell.user_ns

    @property
    def workspace(self) -> Workspace:
        """The open Workspace; the first use connects from the environment or credentials.

        Raises NotInitialised, SchemaOutOfDate or AuthenticationFailed.
        """
        if self._workspace is None:
            self.connect()
        return self._workspace

    def connect(
        self, token: str | None = None, *, home: str | None = None, database_url: str | None = None
    ) -> Workspace:
        """Open the Workspace as ``token``'s user and use it from now on; returns it.

        ``home`` and ``database_url`` default to the traitlets, then to the environment. Raises
        NotInitialised, SchemaOutOfDate or AuthenticationFailed (the previous one stays open).
        """
        from .. import connect

        opened = connect(
            token, home=home or self.home, database_url=database_url or self.database_url
        )
        self.close()
        self._workspace = opened
        return opened

    def close(self) -> None:
        """Release the Workspace's database connections (the next use connects again)."""
        if self._workspace is not None:
            self._workspace.close()
            self._workspace = None

    # --- the magic ----------------------------------------------------------------------------

    @magic_arguments()
    @argument("-h", "--help", action="store_true", help="list the subcommands")
    @argument(
        "--debug", action="store_true", help="show the full traceback if the command fails"
    )
    @argument("subcommand", nargs="?", metavar="SUBCOMMAND", help="what to do (see below)")
    @argument("args", nargs="*", metavar="ARGS", help="the subcommand's arguments and options")
    # IPython's help formatter dedents all but the first line: start with a newline.
    @kwds(epilog="\n" + overview(), formatter_class=_TopHelp)
    @output_can_be_silenced
    @no_var_expand
    @line_cell_magic
    def nexml(self, line: str, cell: str | None = None) -> Any:
        """Govern regulated models from the notebook, as the user of the connected token.

        Each subcommand calls the Workspace and returns what it returns (assign it:
        `mv = %nexml register --model credit-risk`); listings return DataFrames, views return
        widgets. A refusal prints one line `error: ...`; --debug shows the traceback instead.
        Arguments may name notebook variables: `%nexml ingest df --name credit`.
        """
        words = line.split()
        debug = self.debug or "--debug" in words
        try:
            return self._run(line, cell)
        except HelpShown:
            return None
        except (NexmlError, UsageError) as exc:
            if debug:
                raise
            _say(f"error: {exc}")
        except Exception as exc:  # noqa: BLE001 - the promise is one line, never a traceback
            if debug:
                raise
            name = next((w for w in words if not w.startswith("-")), "")
            _say(
                f"internal error: {type(exc).__name__}: {exc} "
                f"(rerun with %nexml --debug {name} … to see the traceback)"
            )
        return None

    def _run(self, line: str, cell: str | None) -> Any:
        # A trailing ";" silences the result (IPython drops it) but still reaches the line.
        line = line.rstrip().removesuffix(";")
        try:
            tokens = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"cannot read the line: {exc}") from None
        at = next((i for i, w in enumerate(tokens) if not w.startswith("-")), len(tokens))
        top = self.nexml.parser.parse_args(tokens[:at])
        rest = tokens[at + 1 :]
        name = tokens[at] if at < len(tokens) else None
        if name is None:
            print(self.nexml.parser.format_help())
            return None
        if name in GROUPS and rest and not rest[0].startswith("-"):
            name, rest = f"{name} {rest[0]}", rest[1:]
        elif name in GROUPS:
            if rest and rest[0] not in ("-h", "--help"):
                raise UsageError(
                    f"unknown subcommand '{name} {rest[0]}' (see %nexml {name} --help)"
                )
            print(group_help(name))
            return None
        command = COMMANDS.get(name)
        if command is None:
            group = name.split()[0]
            where = f"%nexml {group} --help" if group in GROUPS else "%nexml --help"
            raise UsageError(f"unknown subcommand {name!r} (see {where})")
        if cell is not None and cell.strip() and not command.takes_cell:
            raise UsageError(f"%%nexml {name} takes no cell body; use %nexml {name} ...")
        args = command.parser.parse_args(["--help"] if top.help else rest)
        args.cell = cell
        return command.run(self, args)


def _say(message: str) -> None:
    """One line to stderr, whatever the message holds."""
    print(" ".join(part.strip() for part in message.splitlines()), file=sys.stderr)
