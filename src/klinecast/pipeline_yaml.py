"""Compiling a KFP pipeline to YAML that is the same, byte for byte, every time.

kfp writes the pipeline's body with sorted keys, but its header comment lists dict defaults in
the order protobuf's Struct hands them out, which changes from run to run. The header is
written again here from the sorted body, with kfp's own function.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from klinecast import atomic


def compile_pipeline(pipeline, out: Path) -> None:
    """Compiles `pipeline` (a @dsl.pipeline function) to `out`, deterministically."""
    from kfp import compiler
    from kfp.compiler.pipeline_spec_builder import extract_comments_from_pipeline_spec

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "pipeline.yaml"
        compiler.Compiler().compile(pipeline, str(raw))
        lines = raw.read_text().splitlines(keepends=True)
    body = "".join(lines[next(i for i, line in enumerate(lines) if not line.startswith("#")) :])
    spec = next(yaml.safe_load_all(body))  # keys in the body's (sorted) order
    header = extract_comments_from_pipeline_spec(spec, pipeline.description)
    atomic.atomic_write(Path(out), lambda tmp: tmp.write_text(header + body))
