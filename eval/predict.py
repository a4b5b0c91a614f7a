"""Ranked predictions for every `.txt` file of a folder, written in CodiEsp's TSV format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from eval.report import codiesp_form, ranked_codes
from models.errors import InputError
from models.predictor import Predictor

OUTPUT_FILES = {"ICD-10-CM": "diagnoses.tsv", "ICD-10-PCS": "procedures.tsv"}


def predict_folder(
    predictor: Predictor, folder: str | Path, output: str | Path, *, depth: int = 100, code_form: str = "codiesp"
) -> dict[str, Path]:
    """Write `diagnoses.tsv` and `procedures.tsv` (`doc_id<TAB>code`, best first, lower-case codes as
    CodiEsp expects) for every `.txt` file of `folder`.

    Raises:
        InputError: when the folder is missing or holds no .txt file, or a file is empty.
    """
    folder, output = Path(folder), Path(output)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise InputError(f"{folder}: no .txt files")
    output.mkdir(parents=True, exist_ok=True)
    scorer = predictor.scorer
    systems_arr = np.asarray(scorer.code_systems)
    handles = {s: (output / name).open("w", encoding="utf-8") for s, name in OUTPUT_FILES.items()}
    try:
        for path in tqdm(files, desc="predicting", unit="note"):
            text = path.read_text(encoding="utf-8")
            if not text.strip():
                raise InputError(f"{path}: empty note")
            probs = scorer.probs([text])  # (1, codes)
            for system, handle in handles.items():
                columns = np.flatnonzero(systems_arr == system)
                if columns.size == 0:
                    continue

                def convert(code: str, _s: str = system) -> str:
                    return codiesp_form(code, _s, predictor.catalog) if code_form == "codiesp" else code

                for code, _ in ranked_codes(probs, scorer.codes, columns, convert, depth=depth)[0]:
                    handle.write(f"{path.stem}\t{code.lower() if code_form == 'codiesp' else code}\n")
    finally:
        for handle in handles.values():
            handle.close()
    return {s: output / name for s, name in OUTPUT_FILES.items()}
