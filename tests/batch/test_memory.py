"""A Parquet input several times larger than the memory the job may use completes.

The job runs in a child process under a hard limit: ``RLIMIT_DATA`` (the kernel refuses any
private writable mapping beyond it, heap and ``mmap`` alike). The child first imports the stack,
loads the model and does one tiny warm-up run (the one-off cost of lazy imports and caches),
measures its own data segment, and only then sets the limit to that plus ``HEADROOM``: the
headroom is what the data may use. The input is several times the headroom in memory terms
(the same rows as a pandas DataFrame), and the control — reading the whole input at once under
the same limit — is refused. Arrow uses the system allocator and BLAS one thread, so the data
segment is the memory actually in use (jemalloc and per-thread BLAS buffers reserve far more
address space than they touch, which would make any address-space limit meaningless).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq

HEADROOM = 16 * 2**20  # what the data may use above the warmed-up stack
JOB_MEMORY = "8MB"  # the budget the job is given (chunk sizes derive from it)
COPIES = 160  # German credit copies: 160,000 rows in 4 files, ~57 MB as a DataFrame

CHILD = r"""
import json, resource, sys, tempfile
from pathlib import Path

def data_segment():
    fields = dict(l.split(":", 1) for l in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmData"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024

mode, artifact, warm, data, out, memory, headroom, profile = sys.argv[1:9]
import pyarrow as pa
import pyarrow.parquet as pq
from nexml_ext.ml import batch

pa.set_cpu_count(1)  # fixed thread pools: a thread's stack is a mapping the limit counts
pa.set_io_thread_count(1)
from nexml_ext.ml.artifact import load

model = load(artifact)
baseline = json.loads(Path(profile).read_text())
columns = list(model.input_columns)
batch.score_files(model, warm, tempfile.mkdtemp() + "/out", memory_limit=memory)
batch.drift_files(baseline, warm, columns=columns, memory_limit=memory)
before, _ = data_segment()
limit = before + int(headroom)
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
result = {"before": before, "limit": limit}
if mode == "whole":
    try:
        frame = pq.read_table(data).to_pandas()
        result["rows"] = len(frame)
    except MemoryError as exc:  # pyarrow's ArrowMemoryError is one
        result["refused"] = type(exc).__name__
else:
    scored = batch.score_files(model, data, out, memory_limit=memory)
    drift = batch.drift_files(baseline, data, columns=columns, memory_limit=memory)
    result.update(scored=scored.rows, chunk_rows=scored.chunk_rows, drift=drift.rows,
                  alerts=drift.report.alerts)
result["after"], result["peak_rss"] = data_segment()
print(json.dumps(result))
"""


def test_input_several_times_the_memory_limit_completes(tmp_path, german, model_dir):
    from nexml_ext.ml.profile import profile

    warm, data = tmp_path / "warm", tmp_path / "data"
    warm.mkdir()
    data.mkdir()
    table = pa.Table.from_pandas(german, preserve_index=False)
    for i in range(4):  # the input's layout, so thread pools grow as far in the warm-up
        pq.write_table(table, warm / f"part-{i}.parquet", row_group_size=250)
    copies = pa.concat_tables([table] * (COPIES // 4))
    for i in range(4):
        pq.write_table(copies, data / f"part-{i}.parquet", row_group_size=10_000)
    in_memory = int(german.memory_usage(deep=True).sum()) * COPIES
    assert in_memory >= 3 * HEADROOM  # the data does not fit in what the job may use
    (tmp_path / "profile.json").write_text(json.dumps(profile(german)))

    env = dict(
        os.environ,
        ARROW_DEFAULT_MEMORY_POOL="system",
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        MALLOC_ARENA_MAX="2",
    )

    def start(mode: str) -> subprocess.Popen:
        args = [
            mode,
            model_dir,
            warm,
            data,
            tmp_path / "out",
            JOB_MEMORY,
            HEADROOM,
            tmp_path / "profile.json",
        ]
        return subprocess.Popen(
            [sys.executable, "-c", CHILD, *map(str, args)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    runs = [start("chunked"), start("whole")]
    (out, err), (whole_out, whole_err) = (p.communicate(timeout=600) for p in runs)
    assert runs[0].returncode == 0, err[-2000:]
    result = json.loads(out)
    rows = len(german) * COPIES
    assert result["scored"] == result["drift"] == rows
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in (tmp_path / "out").iterdir()) == rows
    assert result["alerts"] == []  # copies of the training data: no drift
    assert result["after"] <= result["limit"]
    # the control: the same input read whole, under the same limit, does not fit
    assert runs[1].returncode == 0, whole_err[-2000:]
    whole = json.loads(whole_out)
    assert "refused" in whole and "rows" not in whole
    print(json.dumps({"in_memory": in_memory, "chunked": result, "whole": whole}))
