"""Peer (b) of ``bench_gateway.py``: a minimal FastAPI scoring app, one uvicorn process.

Run:  python benchmarks/gateway_peer.py --artifact-root DIR --uri URI --sha256 HASH [--port 8001]

It loads the artifact through the platform's verified loader (``artifact.load_verified``: every
file hash-checked before anything is unpickled) and answers ``POST /predict`` with
``LoadedModel.predict_proba`` of the posted rows — the same call the platform scores with, schema
check included — and nothing else: no key, no routing, no explanation, no audit record. The body
is the gateway's (``{"inputs": [{...}], ...}``; other fields are ignored). Served like
``nexml server``: one uvicorn process, ``workers=1``, the same log level.
"""

from __future__ import annotations

import argparse
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel


class Rows(BaseModel):
    inputs: list[dict[str, Any]]


def create_app(artifact_root: str, uri: str, sha256: str) -> FastAPI:
    import pandas as pd

    from nexml_ext.ml.artifact import load_verified
    from nexml_ext.store.artifacts import ArtifactStore

    model = load_verified(ArtifactStore(artifact_root), uri, sha256)
    app = FastAPI(title="minimal scoring peer")

    @app.post("/predict")
    def predict(body: Rows) -> dict[str, Any]:
        proba = model.predict_proba(pd.DataFrame(body.inputs))
        return {"classes": model.classes, "probabilities": proba.tolist()}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact-root", required=True, help="the store's artifact root")
    parser.add_argument("--uri", required=True, help="the artifact's URI in that store")
    parser.add_argument("--sha256", required=True, help="the artifact's registered SHA-256")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()

    import uvicorn

    app = create_app(args.artifact_root, args.uri, args.sha256)
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="info")


if __name__ == "__main__":
    main()
