"""Gateway throughput and latency over loopback: nexml server against a minimal FastAPI app and
``mlflow models serve``, single-row requests, same load generator, same run.

Run:  python benchmarks/bench_gateway.py [--duration 15] [--concurrency 1 16] [--skip-mlflow]

Prepares a throwaway SQLite store the way ``nexml demo`` does (the German credit data, a
75/25 split with seed 7, scikit-learn AutoML, the demo's compliance record, a platform
validation, approval, deployment ``credit`` behind route ``loans``), then serves the champion
three ways, each one real process on 127.0.0.1:

  (a) ``nexml server``: route key, schema check, routing, local explanation (``"explain": true``)
      and reason codes, and a group-committed record in the deployment's hash chain before each
      response;
  (b) ``benchmarks/gateway_peer.py``: a minimal FastAPI app on one uvicorn process answering with
      ``LoadedModel.predict_proba`` of the same verified artifact (no key, audit or explanation);
  (c) ``mlflow models serve --env-manager local`` (one worker) on the same pipeline, saved with
      ``mlflow.sklearn.save_model`` in a venv of its own (created once under
      ``~/.cache/nexml-bench/``; numpy, pandas, scikit-learn, scipy and joblib pinned to this
      environment's versions, this project installed there with ``--no-deps`` because the
      pipeline's pickle names ``nexml_ext.ml.preprocess`` functions). mlflow is never installed
      into this environment: it would upgrade pandas.

The request is one applicant of the holdout that the champion declines, so (a) computes reason
codes too. Load: ``wrk`` (one thread, keep-alive connections = concurrency, ``--latency``), a
warm-up run, then a measured run per server and concurrency, servers interleaved. Afterwards the
decision trail must hold a record for every request (a) answered, and ``audit verify`` must pass.
Prints Markdown: req/s, p50, p99 and each server's CPU time per request (user + system of its
process tree during the measured run, which the machine's other load disturbs far less than
throughput) per cell, and the ratios against the targets ((a) >= 0.7x the throughput of (b)
with p99 <= 2x (b)'s; (a) >= 4x the throughput of (c)). Ratios measured in one run are the
result; these machines are shared and noisy (use ``--rounds``). Needs ``wrk``
(``apt-get install -y wrk``); ``--help`` needs nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "nexml-bench"
TARGET = "risk"
PINNED = ("numpy", "pandas", "scikit-learn", "scipy", "joblib")
WRK_MISSING = "error: wrk is not installed; install it with `apt-get install -y wrk`"
SERVERS = {
    "a": "(a) nexml server, full path",
    "b": "(b) minimal FastAPI",
    "c": "(c) mlflow models serve",
}


# --- the store ---------------------------------------------------------------------------------


@dataclass
class Prepared:
    folder: Path
    settings: Any
    admin_token: str
    route_key: str
    ref: str
    champion: str
    artifact_uri: str
    artifact_sha256: str
    row: dict[str, Any]
    score: float
    cutoff: float


def prepare(folder: Path, time_limit: float) -> Prepared:
    """A store like the demo's, the champion deployed behind route ``loans`` (or the one a
    previous ``--keep`` run prepared in ``folder``)."""
    from nexml_ext.config import Settings

    saved = folder / "prepared.json"
    if saved.exists():
        fields = json.loads(saved.read_text())
        settings = Settings.from_env(**fields.pop("settings"), token="")
        return Prepared(folder=folder, settings=settings, **fields)
    prepared = _prepare(folder, time_limit)
    settings = {"home": str(prepared.settings.home),
                "database_url": prepared.settings.database_url,
                "artifact_root": str(prepared.settings.artifact_root)}
    fields = {k: v for k, v in vars(prepared).items() if k not in ("folder", "settings")}
    saved.write_text(json.dumps({**fields, "settings": settings}))
    return prepared


def _prepare(folder: Path, time_limit: float) -> Prepared:
    from nexml_ext.config import Settings
    from nexml_ext.demo import demo_compliance
    from nexml_ext.ml.artifact import load_verified
    from nexml_ext.ml.explain import load_reason_table
    from nexml_ext.ml.validation import cutoff_of
    from nexml_ext.sample_data import german_credit_path
    from nexml_ext.workspace import Workspace

    settings = Settings.from_env(home=folder, database_url=f"sqlite:///{folder / 'nexml.db'}",
                                 artifact_root=str(folder / "artifacts"), token="")
    ada, admin_token = Workspace.init(settings, "ada")
    dana = Workspace.open(settings, ada.add_user("dana", "data_scientist")[1])
    mark = Workspace.open(settings, ada.add_user("mark", "manager")[1])
    try:
        with german_credit_path() as csv:
            full = dana.ingest(csv, "german-credit")
        train, holdout = dana.split(full.ref, TARGET, test_size=0.25, seed=7)
        run = dana.train(train.ref, TARGET, backend="sklearn", time_limit=time_limit,
                         template="credit_scoring", seed=7)
        version = dana.register_model(run, "credit-risk", template="credit_scoring",
                                      reason_codes=load_reason_table("german_credit"))
        record = dana.compliance(version.ref)
        for section, fields in demo_compliance().items():
            record.set(section, fields)
        mark.validate(version.ref, dataset=holdout.ref)
        mark.approve(version.ref, findings="Validated on the holdout; documentation complete.")
        mark.deploy(version.ref, name="credit")
        _, route_key = mark.set_route("loans", {"rules": [], "default": "credit"})
        stored = mark.version(version.ref)
        model = load_verified(ada._store, stored.artifact_uri, stored.artifact_sha256)
        rows = mark.load_dataset(holdout.ref).drop(columns=[TARGET])
        cutoff = cutoff_of(model)
        scores = model.score(rows)
        declined = [i for i, s in enumerate(scores) if s < cutoff]
        i = declined[0] if declined else 0
        row = json.loads(rows.iloc[[i]].to_json(orient="records"))[0]
        return Prepared(folder, settings, admin_token, route_key, version.ref, run.champion_name,
                        stored.artifact_uri, stored.artifact_sha256, row, float(scores[i]),
                        cutoff)
    finally:
        for ws in (dana, mark, ada):
            ws.close()


# --- mlflow in a venv of its own ------------------------------------------------------------


def mlflow_venv(log: Any) -> Path:
    """The venv's python: mlflow with this environment's numpy/pandas/scikit-learn pinned."""
    venv = CACHE / "mlflow-venv"
    python = venv / "bin" / "python"
    pins = [f"{name}=={metadata.version(name)}" for name in PINNED]
    stamp = venv / "nexml-pins.json"
    current = json.loads(stamp.read_text()) if stamp.exists() else None
    if not python.exists() or current != pins:
        print(f"creating {venv} (mlflow with {', '.join(pins)}); once, takes minutes",
              file=sys.stderr)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "mlflow", *pins],
                       check=True, stdout=log, stderr=subprocess.STDOUT)
        stamp.write_text(json.dumps(pins))
    # The pickle refers to nexml_ext.ml.preprocess; the project itself, not its dependencies.
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
                    str(ROOT)], check=True, stdout=log, stderr=subprocess.STDOUT)
    return python


_SAVE_MLFLOW = """
import json, sys
import joblib, pandas as pd
import mlflow
import mlflow.sklearn
from mlflow.models import infer_signature

source, target, example = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
pipeline = joblib.load(source)
frame = pd.DataFrame([example])
signature = infer_signature(frame, pipeline.predict_proba(frame))
options = {}
try:  # mlflow >= 3 serialises with skops and asks which types of the model to trust
    from skops.io import dumps, get_untrusted_types
    options["skops_trusted_types"] = get_untrusted_types(data=dumps(pipeline))
except ImportError:
    pass
mlflow.sklearn.save_model(pipeline, target, signature=signature,
                          pyfunc_predict_fn="predict_proba", **options)
print(mlflow.__version__)
"""


def save_for_mlflow(python: Path, prepared: Prepared, target: Path, log: Any) -> str:
    """Save the verified copy of the champion's pipeline as an MLflow model; mlflow's version."""
    from nexml_ext.ml.artifact import SKLEARN_PAYLOAD, load_verified
    from nexml_ext.store.artifacts import ArtifactStore

    store = ArtifactStore(prepared.settings.artifact_root)
    model = load_verified(store, prepared.artifact_uri, prepared.artifact_sha256)  # hash-checked
    shutil.rmtree(target, ignore_errors=True)
    out = subprocess.run(
        [str(python), "-c", _SAVE_MLFLOW, str(model.directory / SKLEARN_PAYLOAD), str(target),
         json.dumps(prepared.row)],
        capture_output=True, text=True,
    )
    log.write(out.stderr.encode())
    if out.returncode != 0:
        raise SystemExit(f"error: saving the model for mlflow failed:\n{out.stderr[-3000:]}")
    return out.stdout.strip().splitlines()[-1]


# --- servers -------------------------------------------------------------------------------------


@dataclass
class Server:
    key: str
    url: str  # the scoring URL
    body: dict[str, Any]
    headers: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    answered: int = 0  # 2xx responses counted by the load generator (and our checks)
    cells: dict[int, list[Cell]] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(key: str, command: list[str], env: dict[str, str], log: Path, ready: str,
          url: str, body: dict[str, Any], headers: dict[str, str]) -> Server:
    import httpx

    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = Server(key, url, body, headers, process, log)
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None:
            stop(server)
            raise SystemExit(f"error: {SERVERS[key]} exited while starting; see {log}:\n"
                             + log.read_text()[-2000:])
        try:
            if httpx.get(ready, timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop(server)
            raise SystemExit(f"error: {SERVERS[key]} not ready after 180 s; see {log}")
        time.sleep(0.3)


def stop(server: Server) -> None:
    """Stop the server's process group (mlflow serves from a child process)."""
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()


def probability(server: Server) -> float:
    """Post the benchmark's request once; the probability of the positive class it answers."""
    import httpx

    response = httpx.post(server.url, json=server.body, headers=server.headers, timeout=30)
    if response.status_code != 200:
        raise SystemExit(f"error: {SERVERS[server.key]} answered {response.status_code}: "
                         f"{response.text[:500]}")
    server.answered += 1
    data = response.json()
    if server.key == "a":
        return float(data["predictions"][0]["probability"])
    if server.key == "b":
        return float(data["probabilities"][0][1])
    answer = data["predictions"][0]  # mlflow: {"predictions": [[p0, p1]]} or a list of dicts
    return float(answer[1] if isinstance(answer, list) else list(answer.values())[1])


# --- the load generator --------------------------------------------------------------------------


@dataclass
class Cell:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    cpu_ms_per_request: float = float("nan")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def lua_script(server: Server, folder: Path) -> Path:
    lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in server.headers.items()]
    lines.append(f"wrk.body = [==[{json.dumps(server.body)}]==]")
    path = folder / f"post-{server.key}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def cpu_seconds(server: Server) -> float:
    """User + system CPU time of the server's process and its children so far."""
    import psutil

    process = psutil.Process(server.process.pid)
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def wrk(server: Server, script: Path, concurrency: int, seconds: int) -> Cell:
    cpu_before = cpu_seconds(server)
    run = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "--latency",
         "-s", str(script), server.url],
        capture_output=True, text=True,
    )
    if run.returncode != 0:
        raise SystemExit(f"error: wrk failed on {SERVERS[server.key]}: {run.stderr or run.stdout}")
    out = run.stdout
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+([\d.]+[a-z]+)\s*$", out, re.M))
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    non_2xx = int(bad.group(1)) if bad else 0
    server.answered += total - non_2xx
    cpu = cpu_seconds(server) - cpu_before
    return Cell(
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(percentiles["50"]),
        p99_ms=_ms(percentiles["99"]),
        requests=total,
        non_2xx=non_2xx,
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
        cpu_ms_per_request=cpu * 1000 / total if total else float("nan"),
    )


# --- the run -------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _summary(cells: list[Cell]) -> tuple[float, float, float, int, float]:
    return (_median([c.requests_per_s for c in cells]), _median([c.p50_ms for c in cells]),
            _median([c.p99_ms for c in cells]), sum(c.non_2xx + c.socket_errors for c in cells),
            _median([c.cpu_ms_per_request for c in cells]))


def _recorded(prepared: Prepared) -> int:
    from sqlalchemy import func, select

    from nexml_ext.store import tables as t
    from nexml_ext.workspace import Workspace

    ws = Workspace.open(prepared.settings, prepared.admin_token)
    try:
        with ws._read() as s:
            return int(s.scalar(select(func.count()).select_from(t.PredictionRecord)))
    finally:
        ws.close()


def _check_trail(prepared: Prepared, before: int, answered: int) -> str:
    from nexml_ext.workspace import Workspace

    recorded = _recorded(prepared) - before
    ws = Workspace.open(prepared.settings, prepared.admin_token)
    try:
        started = time.perf_counter()
        verified = ws.audit.verify()
        took = time.perf_counter() - started
    finally:
        ws.close()
    if recorded < answered or not verified.ok:
        raise SystemExit(f"error: the trail holds {recorded} new records for {answered} answered "
                         f"requests; verify ok={verified.ok}")
    return (f"Decision trail: {recorded:,} new records for the {answered:,} requests (a) "
            f"answered (a request cut off by the end of a load run is recorded but not counted "
            f"as answered); `audit verify` passed in {took:.1f} s.")


def _cpu() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        return re.search(r"model name\s*:\s*(.+)", text).group(1).strip()  # type: ignore[union-attr]
    except (OSError, AttributeError):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] + " " + __doc__.splitlines()[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[3:]),
    )
    parser.add_argument("--duration", type=int, default=15, help="seconds per measured cell")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16],
                        help="keep-alive connections per cell (default: 1 16)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every cell this many times (interleaved); medians shown")
    parser.add_argument("--skip-mlflow", action="store_true",
                        help="leave out (c): no venv, no mlflow")
    parser.add_argument("--time-limit", type=float, default=30,
                        help="seconds of AutoML for the champion (the demo's 30)")
    parser.add_argument("--keep", metavar="DIR",
                        help="prepare the store in DIR and keep it, or reuse the one a previous "
                             "run kept there (default: a temporary folder)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit(WRK_MISSING)

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="nexml-bench-gw-"))
    folder.mkdir(parents=True, exist_ok=True)
    servers: list[Server] = []
    try:
        print(f"preparing the store in {folder} ...", file=sys.stderr)
        prepared = prepare(folder / "store", args.time_limit)
        body = {"inputs": [prepared.row], "subject_ids": ["bench-47392"], "explain": True}
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEXML_")}
        nexml_env = {**env, "NEXML_HOME": str(prepared.settings.home),
                     "NEXML_TOKEN": prepared.admin_token,
                     "NEXML_DATABASE_URL": prepared.settings.database_url,
                     "NEXML_ARTIFACT_ROOT": str(prepared.settings.artifact_root)}
        mlflow_version = None
        with open(folder / "setup.log", "ab") as setup_log:
            if not args.skip_mlflow:
                python = mlflow_venv(setup_log)
                mlflow_version = save_for_mlflow(python, prepared, folder / "mlflow-model",
                                                 setup_log)

        before = _recorded(prepared)
        port = _free_port()
        servers.append(start(
            "a", [sys.executable, "-m", "nexml_ext.cli", "server", "--port", str(port)],
            nexml_env, folder / "server-a.log", f"http://127.0.0.1:{port}/readyz",
            f"http://127.0.0.1:{port}/v1/routes/loans/predict", body,
            {"Authorization": f"Bearer {prepared.route_key}"},
        ))
        port = _free_port()
        servers.append(start(
            "b", [sys.executable, str(ROOT / "benchmarks" / "gateway_peer.py"),
                  "--artifact-root", str(prepared.settings.artifact_root),
                  "--uri", prepared.artifact_uri, "--sha256", prepared.artifact_sha256,
                  "--port", str(port)],
            env, folder / "server-b.log", f"http://127.0.0.1:{port}/healthz",
            f"http://127.0.0.1:{port}/predict", body, {},
        ))
        if mlflow_version is not None:
            port = _free_port()
            venv_bin = CACHE / "mlflow-venv" / "bin"
            servers.append(start(
                "c", [str(venv_bin / "mlflow"), "models", "serve", "-m",
                      str(folder / "mlflow-model"), "-h", "127.0.0.1", "-p", str(port),
                      "--env-manager", "local", "-w", "1"],
                {**env, "PATH": f"{venv_bin}:{env.get('PATH', '')}"},
                folder / "server-c.log", f"http://127.0.0.1:{port}/ping",
                f"http://127.0.0.1:{port}/invocations", {"dataframe_records": [prepared.row]}, {},
            ))
        answers = {s.key: probability(s) for s in servers}
        spread = max(answers.values()) - min(answers.values())
        if spread > 1e-9:
            raise SystemExit(f"error: the servers disagree on the probability: {answers}")

        scripts = {s.key: lua_script(s, folder) for s in servers}
        load_start = os.getloadavg()
        for _ in range(args.rounds):
            for concurrency in args.concurrency:
                for server in servers:
                    print(f"  {SERVERS[server.key]}, concurrency {concurrency} ...",
                          file=sys.stderr)
                    wrk(server, scripts[server.key], concurrency, args.warmup)
                    cell = wrk(server, scripts[server.key], concurrency, args.duration)
                    server.cells.setdefault(concurrency, []).append(cell)
        load_end = os.getloadavg()
        for server in servers:
            stop(server)
        trail = _check_trail(prepared, before, servers[0].answered)
    finally:
        for server in servers:
            stop(server)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    _report(args, prepared, servers, mlflow_version, answers, trail, load_start, load_end)


def _report(args, prepared, servers, mlflow_version, answers, trail, load_start, load_end):  # type: ignore[no-untyped-def]
    by_key = {s.key: s for s in servers}
    print(f"# Gateway benchmark: {args.duration:g} s per cell after {args.warmup:g} s warm-up, "
          f"{args.rounds} round(s), wrk -t1 --latency")
    print(f"Machine: {platform.machine()} {_cpu()}, {os.cpu_count()} cores; "
          f"{platform.python_implementation()} {platform.python_version()}; "
          f"fastapi {metadata.version('fastapi')}, uvicorn {metadata.version('uvicorn')}, "
          f"scikit-learn {metadata.version('scikit-learn')}"
          + (f", mlflow {mlflow_version}" if mlflow_version else "")
          + f". Load average (1 min) {load_start[0]:.2f} before, {load_end[0]:.2f} after.")
    print(f"Champion {prepared.champion} ({prepared.ref}); the request is one declined holdout "
          f"applicant (score {prepared.score:.4f} < cutoff {prepared.cutoff}); every server "
          f"answered the same probability ({answers['a']:.6f}).")
    print(trail)
    print()
    print("| server | concurrency | req/s | p50 ms | p99 ms | server CPU ms per request "
          "| errors |")
    print("|---|---|---|---|---|---|---|")
    for concurrency in args.concurrency:
        for server in servers:
            rps, p50, p99, errors, cpu = _summary(server.cells[concurrency])
            print(f"| {SERVERS[server.key]} | {concurrency} | {rps:,.0f} | {p50:.2f} | "
                  f"{p99:.2f} | {cpu:.2f} | {errors} |")
    print()
    header = ("| concurrency | (a)/(b) req/s (target >= 0.70) | (a)/(b) p99 (target <= 2.0) "
              "| (b)/(a) CPU per request |")
    rule = "|---|---|---|---|"
    if "c" in by_key:
        header += " (a)/(c) req/s (target >= 4.0) | (c)/(a) CPU per request |"
        rule += "---|---|"
    print(header)
    print(rule)
    for concurrency in args.concurrency:
        a = _summary(by_key["a"].cells[concurrency])
        b = _summary(by_key["b"].cells[concurrency])
        line = f"| {concurrency} | {a[0] / b[0]:.2f}x | {a[2] / b[2]:.2f}x | {b[4] / a[4]:.2f}x |"
        if "c" in by_key:
            c = _summary(by_key["c"].cells[concurrency])
            line += f" {a[0] / c[0]:.2f}x | {c[4] / a[4]:.2f}x |"
        print(line)


if __name__ == "__main__":
    main()
