"""Build hook: compiles the native chain scanner (``nexml_ext/store/_chainscan.c``).

The scanner makes ``nexml audit verify`` on SQLite several times faster; it is an accelerator,
never a judge (store/chain_scan.py), so it is optional: where no C compiler or no SQLite and
OpenSSL headers are found (Debian: gcc, libsqlite3-dev, libssl-dev), the install warns and
carries on pure-Python, and verification takes its Python paths with the same verdicts.
``NEXML_REQUIRE_NATIVE=1`` turns that warning into a failed install (the test set-up sets it,
so CI never runs without the scanner unnoticed).

An editable install compiles into the source tree, beside the C file (git ignores it); a wheel
gets the compiled module in its package directory and a platform tag.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = "nexml_ext/store/_chainscan.c"


class NativeScanHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    _scratch: str | None = None

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        source = Path(self.root) / SOURCE
        name = "_chainscan" + str(sysconfig.get_config_var("EXT_SUFFIX") or ".so")
        if version == "editable":
            target = source.with_name(name)
        else:
            self._scratch = tempfile.mkdtemp(prefix="nexml-native-")
            target = Path(self._scratch) / name
        command = [
            *shlex.split(os.environ.get("CC") or str(sysconfig.get_config_var("CC") or "cc")),
            "-O2", "-shared", "-fPIC", "-Wall",
            f"-I{sysconfig.get_paths()['include']}",
            str(source), "-lsqlite3", "-lcrypto", "-o", str(target),
        ]  # fmt: skip
        try:
            subprocess.run(command, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = (getattr(exc, "stderr", "") or str(exc)).strip()
            message = (
                f"nexml-ext: the native chain scanner was not compiled ({shlex.join(command)}): "
                f"{detail.splitlines()[-1].rstrip('.') if detail else exc}. Audit "
                "verification will use its Python scans (same verdicts, slower). Debian: "
                "apt-get install gcc libsqlite3-dev libssl-dev."
            )
            if os.environ.get("NEXML_REQUIRE_NATIVE") == "1":
                raise RuntimeError(message) from exc
            self.app.display_warning(message)
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][str(target)] = f"nexml_ext/store/{name}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self._scratch is not None:  # the wheel holds its copy now
            shutil.rmtree(self._scratch, ignore_errors=True)
