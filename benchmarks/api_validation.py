"""How fast the admission rules are: validate_object per kind, and CRD generation.

    .venv/bin/python -P benchmarks/api_validation.py [--iterations N]

(-P: benchmarks/autoscaler.py would otherwise shadow the autoscaler package.)

Prints one JSON object: microseconds per validation (median of N runs) for each example
manifest's kind, and seconds to generate every CRD from the models.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import click
import yaml

from caldera import crdgen
from webhooks.validation import validate_object

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@click.command()
@click.option("--iterations", type=int, default=300, show_default=True)
def main(iterations: int) -> None:
    results: dict[str, float] = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        assert validate_object(document) == [], path
        samples = []
        for _ in range(iterations):
            start = time.perf_counter()
            validate_object(document)
            samples.append(time.perf_counter() - start)
        results[path.stem] = round(statistics.median(samples) * 1e6, 1)
    start = time.perf_counter()
    generated = {crdgen.file_name(r): crdgen.render(r) for r in crdgen.RESOURCES}
    crd_seconds = time.perf_counter() - start
    click.echo(
        json.dumps(
            {
                "validate_object_median_us": results,
                "iterations": iterations,
                "crd_generation_seconds": round(crd_seconds, 3),
                "crd_bytes": {name: len(text) for name, text in generated.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
