"""`python -m training.export --artifact DIR`: add the fast path to an artifact.

Exports the encoder of the artifact's transformer (alone or inside a hybrid), and the sentence encoder of its
dense retriever, to ONNX next to its weights, checked against PyTorch, and an int8 copy. The service serves it with `CODER_RUNTIME=onnx` (the default);
`CODER_RUNTIME=torch` keeps the PyTorch reference path. Training writes these files itself.
"""

from __future__ import annotations

import argparse
import sys

from models.artifact import export_fast_path
from models.errors import CoderError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__)
    parser.add_argument("--artifact", required=True, help="artifact directory")
    parser.add_argument("--no-quantize", action="store_true", help="write the fp32 encoder only")
    args = parser.parse_args(argv)
    try:
        written = export_fast_path(args.artifact, quantize=not args.no_quantize)
    except CoderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not written:
        print(f"{args.artifact} has no transformer and no dense retriever: nothing to export")
    for path in written:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
