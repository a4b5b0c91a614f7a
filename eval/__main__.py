"""`python -m eval`: evaluate an artifact on a dataset (`report`), or write ranked predictions for a folder of
notes in CodiEsp's TSV format (`predict`). `--artifact default` is the embedded catalogue matcher."""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

from models.artifact import default_predictor, load_artifact
from models.errors import CoderError
from models.predictor import Predictor


def _predictor(name: str, code_form: str = "as-is") -> Predictor:
    return default_predictor(code_form=code_form) if name == "default" else load_artifact(name)


def _report(args: argparse.Namespace) -> None:
    from eval.report import evaluate, write_report

    # The CLI is a composition root: it reads data with the project's loaders (see pyproject's
    # import contract, which allows this one import).
    from training.data import is_codiesp, load_data

    source = Path(args.data)
    codiesp = is_codiesp(source)
    split = args.split or ("dev" if codiesp else "train")
    dataset = load_data(source, splits=split, language=args.language)[split]
    code_form = args.code_form if args.code_form != "auto" else ("codiesp" if codiesp else "as-is")
    train_split = None if args.train_split == "none" else args.train_split
    if train_split == "auto":
        train_split = "train" if codiesp and split != "train" else None
    train_counts = None
    if train_split:
        train = load_data(source, splits=train_split, language=args.language)[train_split]
        train_counts = Counter(
            (system, code)
            for column, system in (("diagnoses", "ICD-10-CM"), ("procedures", "ICD-10-PCS"))
            for doc in train[column]
            for code in set(doc)
        )
    report = evaluate(
        _predictor(args.artifact, code_form),
        dataset["id"],
        dataset["text"],
        {"ICD-10-CM": dataset["diagnoses"], "ICD-10-PCS": dataset["procedures"]},
        code_form=code_form,
        top_k=args.top_k,
        train_counts=train_counts,
        encounter_classes=dataset["encounter_class"],
    )
    report["data"] = {"source": str(source), "split": split, "train_split_for_frequencies": train_split}
    json_path, md_path = write_report(report, args.output)
    print(md_path.read_text(encoding="utf-8"))
    print(f"wrote {json_path} and {md_path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="evaluate an artifact on a dataset; writes report.json and report.md")
    rep.add_argument("--artifact", required=True, help="artifact directory, or 'default'")
    rep.add_argument("--data", required=True, help="CodiEsp folder, MIMIC-IV folder, or .jsonl/.csv file")
    rep.add_argument("--split", default=None, help="split to evaluate (CodiEsp: e.g. dev); others: train")
    rep.add_argument("--language", choices=["en", "es"], default="en")
    rep.add_argument("--code-form", choices=["auto", "codiesp", "as-is"], default="auto",
                     help="codiesp drops the 7th character of ICD-10-CM codes as CodiEsp does (auto: for CodiEsp)")
    rep.add_argument("--top-k", type=int, default=15, help="codes the decision rule returns per note")
    rep.add_argument("--train-split", default="auto",
                     help="training split for results by code frequency (auto: 'train' for CodiEsp; 'none')")
    rep.add_argument("--output", required=True, help="report folder")
    pred = sub.add_parser("predict", help="ranked predictions for every .txt file of a folder (CodiEsp TSV)")
    pred.add_argument("--artifact", required=True, help="artifact directory, or 'default'")
    pred.add_argument("--input", required=True, help="folder of <doc_id>.txt notes")
    pred.add_argument("--output", required=True, help="folder for diagnoses.tsv and procedures.tsv")
    pred.add_argument("--depth", type=int, default=100, help="codes per note and system")
    pred.add_argument("--code-form", choices=["codiesp", "as-is"], default="codiesp")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "report":
            _report(args)
        else:
            from eval.predict import predict_folder

            paths = predict_folder(_predictor(args.artifact, args.code_form), args.input, args.output, depth=args.depth,
                                   code_form=args.code_form)
            for path in paths.values():
                print(f"wrote {path}")
    except CoderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
