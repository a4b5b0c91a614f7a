"""`python -m training`: train a recipe from configs/ on any supported dataset and write an artifact."""

from __future__ import annotations

import argparse
import logging
import sys

from models.errors import CoderError
from training.config import load_config
from training.train import train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("--config", required=True, help="a recipe, e.g. configs/linear.yaml")
    parser.add_argument("--output", required=True, help="artifact directory to write")
    parser.add_argument("--data", help="CodiEsp folder, MIMIC-IV folder, or .jsonl/.csv file (overrides the recipe)")
    parser.add_argument("--add-train", action="append", default=[], metavar="PATH",
                        help="more training notes (.jsonl/.csv, e.g. `python -m service export` output); repeatable")
    parser.add_argument("--train-split", help="split or union to train on, e.g. train or train+dev")
    parser.add_argument("--eval-split", help="split to evaluate on after training ('none' to skip)")
    parser.add_argument("--language", choices=["en", "es"], help="CodiEsp text language")
    parser.add_argument("--checkpoints", help="folder for resumable transformer checkpoints (resumes if present)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings and errors only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.quiet:
        # The Hugging Face libraries draw bars of their own (loading weights, preparing datasets).
        import datasets
        import transformers

        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()
    try:
        config = load_config(args.config)
        overrides = {
            "source": args.data,
            "train_split": args.train_split,
            "language": args.language,
        }
        data = config.data.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        if args.add_train:
            data = data.model_copy(update={"extra_train": [*data.extra_train, *args.add_train]})
        if args.eval_split is not None:
            data = data.model_copy(update={"eval_split": None if args.eval_split == "none" else args.eval_split})
        config = config.model_copy(update={"data": data})
        path = train(config, args.output, progress=not args.quiet, checkpoint_dir=args.checkpoints)
    except CoderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if path is not None:
        print(f"artifact written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
