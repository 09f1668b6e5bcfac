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
from klinecast.platform.k8s import PIPELINE_IMAGE


def compile_pipeline(pipeline, out: Path, *, image: str | None = None) -> None:
    """Compiles `pipeline` (a @dsl.pipeline function) to `out`, deterministically.

    Args:
        image: the image every task runs (default: the components' PIPELINE_IMAGE).
    """
    from kfp import compiler
    from kfp.compiler.pipeline_spec_builder import extract_comments_from_pipeline_spec

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "pipeline.yaml"
        compiler.Compiler().compile(pipeline, str(raw))
        lines = raw.read_text().splitlines(keepends=True)
    body = "".join(lines[next(i for i, line in enumerate(lines) if not line.startswith("#")) :])
    if image is not None and image != PIPELINE_IMAGE:
        body = with_image(body, image)
    spec = next(yaml.safe_load_all(body))  # keys in the body's (sorted) order
    header = extract_comments_from_pipeline_spec(spec, pipeline.description)
    atomic.atomic_write(Path(out), lambda tmp: tmp.write_text(header + body))


def with_image(body: str, image: str) -> str:
    """The compiled body with every executor's image (the components' PIPELINE_IMAGE) set to
    image; checked against the parsed spec, so a change in kfp's layout fails loudly."""
    executors = next(yaml.safe_load_all(body))["deploymentSpec"]["executors"]
    line = f"image: {PIPELINE_IMAGE}\n"
    if body.count(line) != len(executors):
        raise ValueError(f"expected {len(executors)} executor images {PIPELINE_IMAGE} in the body")
    body = body.replace(line, f"image: {image}\n")
    images = {
        e["container"]["image"]
        for e in next(yaml.safe_load_all(body))["deploymentSpec"]["executors"].values()
    }
    if images != {image}:
        raise ValueError(f"executor images are {sorted(images)}, not {image}")
    return body
