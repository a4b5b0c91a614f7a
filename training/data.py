"""Dataset loaders: CodiEsp, MIMIC-IV and the generic JSONL/CSV format, each to a `datasets.DatasetDict`.

Every loader returns one row per note with the columns `id`, `text`, `diagnoses` (normalised
ICD-10-CM codes), `procedures` (normalised ICD-10-PCS codes), codes in order of first appearance
without duplicates, and `encounter_class` ("inpatient", "outpatient", or "" where the data does not say:
an outpatient note has no ICD-10-PCS codes, and is evaluated so). Every loader fills a `LoadReport` and
logs its summary: nothing is dropped without being counted. Errors name the file and line (or record),
and never quote note text.

Code policies shared by all loaders:
- `on_invalid`: a malformed code is an `InputError` ("error", default) or is dropped and counted ("skip").
- `on_unknown`: a well-formed code that the catalogue does not know is kept and counted ("keep",
  default: CodiEsp gold codes such as the CIE10-2018 "S02.0XX" must reach the official MAP
  unchanged), dropped and counted ("skip"), or an `UnknownCodeError` ("error").
- `on_empty`: a note with empty text is an `InputError` ("error", default) or skipped and counted ("skip").
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from datasets import Dataset, DatasetDict, Features, Value

from models.catalog import get_catalog
from models.codes import normalize_cm, normalize_pcs
from models.errors import InputError, UnknownCodeError
from models.predictor import ENCOUNTER_CLASSES

try:  # datasets >= 4
    from datasets import List as _ListFeature
except ImportError:  # pragma: no cover - older datasets
    from datasets import Sequence as _ListFeature

logger = logging.getLogger(__name__)

FEATURES = Features(
    {
        "id": Value("string"),
        "text": Value("string"),
        "diagnoses": _ListFeature(Value("string")),
        "procedures": _ListFeature(Value("string")),
        "encounter_class": Value("string"),
    }
)

CM = "ICD-10-CM"
PCS = "ICD-10-PCS"
_EXAMPLES = 10  # how many example codes a report keeps per kind
_POLICIES = {
    "on_unknown": ("keep", "skip", "error"),
    "on_invalid": ("error", "skip"),
    "on_empty": ("error", "skip"),
}
_CODIESP_TEXT_DIRS = {"en": "text_files_en", "es": "text_files"}
_MIMIC_NOTE_COLUMNS = ("note_id", "hadm_id", "note_seq", "text")
_MIMIC_CODE_COLUMNS = ("hadm_id", "seq_num", "icd_code", "icd_version")
# Texts of several discharge notes of one admission are joined with a blank line between them.
_NOTE_JOINER = "\n\n"


@dataclass
class LoadReport:
    """What a loader read, kept, merged and dropped: counts and codes only, never note text."""

    sources: list[str] = field(default_factory=list)
    notes_loaded: dict[str, int] = field(default_factory=dict)  # split -> notes
    notes_skipped: Counter[str] = field(default_factory=Counter)  # reason -> notes
    notes_merged: int = 0  # notes joined into an earlier note of the same admission (MIMIC-IV)
    codes_loaded: int = 0  # codes in the loaded notes, after de-duplication
    duplicate_codes: int = 0  # repeated codes of one note, kept once
    codes_skipped: Counter[str] = field(default_factory=Counter)  # reason -> code rows
    unknown_kept: int = 0  # well-formed codes not in the catalogue, kept (on_unknown="keep")
    unknown_examples: list[str] = field(default_factory=list)
    malformed_examples: list[str] = field(default_factory=list)
    code_rows_without_note: int = 0  # MIMIC-IV code rows of admissions without a discharge note

    @property
    def total_notes(self) -> int:
        return sum(self.notes_loaded.values())

    @property
    def has_skips(self) -> bool:
        """True when a note or a code was dropped."""
        return bool(sum(self.notes_skipped.values()) or sum(self.codes_skipped.values()))

    def summary(self) -> str:
        """One line for a log."""
        splits = ", ".join(f"{name}: {n}" for name, n in self.notes_loaded.items())
        parts = [f"loaded {self.total_notes} notes ({splits}) with {self.codes_loaded} codes"]
        if self.unknown_kept:
            parts.append(
                f"{self.unknown_kept} codes not in the catalogue kept (e.g. {', '.join(self.unknown_examples)})"
            )
        if self.duplicate_codes:
            parts.append(f"{self.duplicate_codes} duplicate codes merged")
        if self.notes_merged:
            parts.append(f"{self.notes_merged} notes joined to another note of their admission")
        if self.notes_skipped:
            parts.append("notes skipped: " + _format_counter(self.notes_skipped))
        if self.codes_skipped:
            parts.append("codes skipped: " + _format_counter(self.codes_skipped))
        if self.malformed_examples:
            parts.append(f"malformed codes e.g. {', '.join(self.malformed_examples)}")
        if self.code_rows_without_note:
            parts.append(f"{self.code_rows_without_note} code rows of admissions without a discharge note")
        return f"{'; '.join(parts)} [from {', '.join(self.sources)}]"

    def update(self, other: LoadReport) -> None:
        """Add the counts of another report to this one."""
        self.sources.extend(s for s in other.sources if s not in self.sources)
        for name, n in other.notes_loaded.items():
            self.notes_loaded[name] = self.notes_loaded.get(name, 0) + n
        self.notes_skipped.update(other.notes_skipped)
        self.codes_skipped.update(other.codes_skipped)
        self.notes_merged += other.notes_merged
        self.codes_loaded += other.codes_loaded
        self.duplicate_codes += other.duplicate_codes
        self.unknown_kept += other.unknown_kept
        self.code_rows_without_note += other.code_rows_without_note
        for mine, theirs in ((self.unknown_examples, other.unknown_examples),
                             (self.malformed_examples, other.malformed_examples)):
            for code in theirs:
                _add_example(mine, code)


def _format_counter(counter: Counter[str]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in counter.most_common())


def _add_example(examples: list[str], code: str) -> None:
    if len(examples) < _EXAMPLES and code not in examples:
        examples.append(code)


def _shown(raw: object) -> str:
    """A malformed code as it may appear in a message: short values only, since a shifted column
    could put note text where a code was expected."""
    if isinstance(raw, str) and len(raw.strip()) <= 12 and not any(ch.isspace() for ch in raw.strip()):
        return repr(raw)
    length = len(raw) if isinstance(raw, str) else 0
    return f"(a {type(raw).__name__} value of length {length}, not shown)"


class _Checker:
    """Normalises codes and applies the on_invalid / on_unknown policies, counting into a report."""

    def __init__(self, catalog: Any, report: LoadReport, on_unknown: str, on_invalid: str) -> None:
        self.catalog = catalog
        self.report = report
        self.on_unknown = on_unknown
        self.on_invalid = on_invalid

    def code(self, raw: object, system: str, where: str) -> str | None:
        """The normalised code, or None when the policy drops it."""
        normalize, known = (
            (normalize_cm, self.catalog.cm.is_valid) if system == CM else (normalize_pcs, self.catalog.pcs.is_valid)
        )
        try:
            code = normalize(raw)  # a non-string is malformed too
        except InputError as exc:
            if self.on_invalid == "error":
                raise InputError(f"{where}: malformed {system} code {_shown(raw)}") from exc
            self.report.codes_skipped[f"malformed {system}"] += 1
            _add_example(self.report.malformed_examples, _shown(raw))
            return None
        if known(code):
            return code
        if self.on_unknown == "error":
            raise UnknownCodeError(f"{where}: unknown {system} code {code!r} (not in the catalogue)")
        _add_example(self.report.unknown_examples, code)
        if self.on_unknown == "skip":
            self.report.codes_skipped[f"unknown {system}"] += 1
            return None
        self.report.unknown_kept += 1
        return code

    def codes(self, raws: Iterable[tuple[object, str]], system: str) -> list[str]:
        """Normalised codes of one note from (raw code, location) pairs, first appearance kept."""
        kept: list[str] = []
        for raw, where in raws:
            code = self.code(raw, system, where)
            if code is None:
                continue
            if code in kept:
                self.report.duplicate_codes += 1
            else:
                kept.append(code)
        return kept


class _Rows:
    """Rows of one split, checked for unique ids."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {name: [] for name in FEATURES}
        self._where: dict[str, str] = {}

    def add(self, note_id: str, text: str, diagnoses: list[str], procedures: list[str], where: str,
            encounter_class: str = "") -> None:
        if note_id in self._where:
            raise InputError(f"{where}: note id {note_id!r} already used at {self._where[note_id]}")
        self._where[note_id] = where
        for name, value in zip(FEATURES, (note_id, text, diagnoses, procedures, encounter_class)):
            self.columns[name].append(value)

    def dataset(self) -> Dataset:
        return Dataset.from_dict(self.columns, features=FEATURES)


def _check_policies(**policies: str) -> None:
    for name, value in policies.items():
        if value not in _POLICIES[name]:
            raise ValueError(f"{name} must be one of {_POLICIES[name]}, got {value!r}")


def _finish(local: LoadReport, report: LoadReport | None) -> None:
    """Log the summary of one load and add it to the caller's report."""
    logger.log(logging.WARNING if local.has_skips else logging.INFO, "%s", local.summary())
    if report is not None:
        report.update(local)


def _is_empty(text: str) -> bool:
    return not text.strip()


def _read_text(path: Path, encoding: str = "utf-8") -> str:
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 (byte {exc.start})") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from exc


def _lines(text: str) -> list[str]:
    # Not str.splitlines(): it also splits at U+2028 and friends, which JSON strings may hold raw.
    return [line.removesuffix("\r") for line in text.split("\n")]


def _require(path: Path, what: str = "file") -> Path:
    exists = path.is_dir() if what == "folder" else path.is_file()
    if not exists:
        raise InputError(f"missing {what}: {path}")
    return path


# -- CodiEsp -------------------------------------------------------------------------------------


def load_codiesp(
    root: str | Path,
    splits: str | Sequence[str] = "train",
    language: str = "en",
    *,
    on_unknown: str = "keep",
    on_invalid: str = "error",
    on_empty: str = "error",
    catalog: Any = None,
    report: LoadReport | None = None,
) -> DatasetDict:
    """Load CodiEsp splits (`root/<split>/text_files_en/*.txt`, `<split>D.tsv`, `<split>P.tsv`).

    Args:
        root: the CodiEsp folder.
        splits: a split folder name ("train"), a union of them ("train+dev"), or a list of those;
            each becomes a key of the result.
        language: "en" (the English translations) or "es" (the Spanish originals).
        on_unknown, on_invalid, on_empty: see the module docstring.
        catalog: the code catalogue (default: `get_catalog()`).
        report: a `LoadReport` that receives the counts.

    Returns:
        One split per requested name; documents in file-name order within each split folder.
        A document without code rows is kept with empty lists (CodiEsp-P has such documents).

    Raises:
        InputError: a missing folder or file, an empty text, a code row of a document without a
            text, a TSV row without two fields, a malformed (or, with on_unknown="error", unknown) code.
    """
    _check_policies(on_unknown=on_unknown, on_invalid=on_invalid, on_empty=on_empty)
    if language not in _CODIESP_TEXT_DIRS:
        raise ValueError(f"language must be one of {sorted(_CODIESP_TEXT_DIRS)}, got {language!r}")
    root = _require(Path(root), "folder")
    names = [splits] if isinstance(splits, str) else list(splits)
    if not names:
        raise ValueError("splits is empty")
    local = LoadReport(sources=[str(root)])
    checker = _Checker(catalog if catalog is not None else get_catalog(), local, on_unknown, on_invalid)
    result = {}
    for name in dict.fromkeys(names):
        parts = name.split("+")
        if any(not p or p in (".", "..") or Path(p).name != p for p in parts):
            raise InputError(f"bad CodiEsp split name {name!r}: expected folder names joined by '+'")
        rows = _Rows()
        for part in parts:
            _load_codiesp_split(root / part, _CODIESP_TEXT_DIRS[language], on_empty, checker, rows)
        result[name] = rows.dataset()
        local.notes_loaded[name] = len(result[name])
    _finish(local, report)
    return DatasetDict(result)


def _load_codiesp_split(folder: Path, text_dir_name: str, on_empty: str, checker: _Checker, rows: _Rows) -> None:
    text_dir = _require(folder / text_dir_name, "folder")
    d_tsv = _require(folder / f"{folder.name}D.tsv")
    p_tsv = _require(folder / f"{folder.name}P.tsv")
    texts: dict[str, str] = {}
    skipped: set[str] = set()
    for path in sorted(text_dir.glob("*.txt")):
        text = _read_text(path)
        if _is_empty(text):
            if on_empty == "error":
                raise InputError(f"{path}: empty text")
            checker.report.notes_skipped["empty text"] += 1
            skipped.add(path.stem)
        else:
            texts[path.stem] = text
    diagnoses = _read_codiesp_tsv(d_tsv, texts, skipped, checker.report)
    procedures = _read_codiesp_tsv(p_tsv, texts, skipped, checker.report)
    for doc_id, text in texts.items():
        dx = checker.codes(diagnoses.get(doc_id, []), CM)
        px = checker.codes(procedures.get(doc_id, []), PCS)
        checker.report.codes_loaded += len(dx) + len(px)
        rows.add(doc_id, text, dx, px, str(text_dir / f"{doc_id}.txt"))


def _read_codiesp_tsv(
    path: Path, texts: dict[str, str], skipped: set[str], report: LoadReport
) -> dict[str, list[tuple[str, str]]]:
    """doc_id -> [(raw code, "file:line")] of a headerless `doc_id<TAB>code` file."""
    codes: dict[str, list[tuple[str, str]]] = {}
    for number, line in enumerate(_lines(_read_text(path)), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = line.split("\t")
        if len(fields) != 2:
            raise InputError(f"{where}: expected 2 tab-separated fields (doc_id, code), found {len(fields)}")
        doc_id, raw = fields[0].strip(), fields[1]
        if doc_id in skipped:
            report.codes_skipped["of a skipped note"] += 1
        elif doc_id not in texts:
            raise InputError(f"{where}: document {doc_id!r} has no text file")
        else:
            codes.setdefault(doc_id, []).append((raw, where))
    return codes


# -- MIMIC-IV ------------------------------------------------------------------------------------


def load_mimic_iv(
    root: str | Path,
    *,
    on_unknown: str = "keep",
    on_invalid: str = "error",
    on_empty: str = "error",
    catalog: Any = None,
    report: LoadReport | None = None,
) -> DatasetDict:
    """Load MIMIC-IV discharge notes with the ICD-10 codes of their admission (split "train").

    Reads `root/note/discharge.csv(.gz)`, `root/hosp/diagnoses_icd.csv(.gz)` and
    `root/hosp/procedures_icd.csv(.gz)` (`.csv.gz` is preferred when both exist). Notes join the
    codes on `hadm_id`; only `icd_version == 10` rows are used, ordered by `seq_num`. Several
    discharge notes of one admission become one row: texts joined in `note_seq` order, id of the
    first. Notes of an admission without ICD-10 codes (ICD-9 only, or not coded), or whose codes
    were all dropped by a policy, are skipped and counted. Rows keep the order of the first note
    of each admission in discharge.csv.

    Raises:
        InputError: a missing file or column, a non-numeric `note_seq`/`seq_num`, an `icd_version`
            other than 9 or 10, a repeated `note_id`, an empty text, a malformed (or, with
            on_unknown="error", unknown) code. Code rows are named by line (header is line 1);
            notes by note_id and record number, since note texts span several lines.
    """
    _check_policies(on_unknown=on_unknown, on_invalid=on_invalid, on_empty=on_empty)
    root = _require(Path(root), "folder")
    note_path = _find_csv(root / "note", "discharge")
    dx_path = _find_csv(root / "hosp", "diagnoses_icd")
    px_path = _find_csv(root / "hosp", "procedures_icd")
    local = LoadReport(sources=[str(note_path), str(dx_path), str(px_path)])
    checker = _Checker(catalog if catalog is not None else get_catalog(), local, on_unknown, on_invalid)

    notes = _read_csv_columns(note_path, _MIMIC_NOTE_COLUMNS)
    records = range(1, len(notes) + 1)
    seqs = _numeric(notes["note_seq"], "note_seq", lambda i: f"{note_path}: record {records[i]}")
    admissions: dict[str, list[tuple[float, int, str, str]]] = {}  # hadm_id -> [(note_seq, record, id, text)]
    seen: dict[str, int] = {}
    for record, (note_id, hadm_id, text), seq in zip(
        records, notes[["note_id", "hadm_id", "text"]].itertuples(index=False), seqs
    ):
        where = f"{note_path}: note_id {note_id!r} (record {record})"
        if note_id in seen:
            raise InputError(f"{where}: note_id already used by record {seen[note_id]}")
        seen[note_id] = record
        if _is_empty(text):
            if on_empty == "error":
                raise InputError(f"{where}: empty text")
            local.notes_skipped["empty text"] += 1
            continue
        if not hadm_id.strip():
            local.notes_skipped["no hadm_id"] += 1
            continue
        admissions.setdefault(hadm_id.strip(), []).append((seq, record, note_id, text))
    skipped_hadms = {h for h in notes["hadm_id"].str.strip() if h} - admissions.keys()

    codes = {
        system: _read_mimic_codes(path, system, admissions, skipped_hadms, local)
        for system, path in ((CM, dx_path), (PCS, px_path))
    }
    rows = _Rows()
    for hadm_id, group in admissions.items():
        group.sort(key=lambda item: item[:2])
        raw_dx, raw_px = codes[CM].get(hadm_id, []), codes[PCS].get(hadm_id, [])
        if not raw_dx and not raw_px:
            local.notes_skipped["admission without ICD-10 codes"] += len(group)
            continue
        dx, px = checker.codes(raw_dx, CM), checker.codes(raw_px, PCS)
        if not dx and not px:
            local.notes_skipped["all codes of the admission skipped"] += len(group)
            continue
        local.notes_merged += len(group) - 1
        local.codes_loaded += len(dx) + len(px)
        _, record, note_id, _ = group[0]
        text = _NOTE_JOINER.join(item[3] for item in group)
        rows.add(note_id, text, dx, px, f"{note_path}: record {record}", "inpatient")  # hospital admissions
    local.notes_loaded["train"] = len(rows.columns["id"])
    _finish(local, report)
    return DatasetDict({"train": rows.dataset()})


def _find_csv(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.csv.gz", f"{stem}.csv"):
        if (folder / name).is_file():
            return folder / name
    raise InputError(f"missing file: {folder / stem}.csv.gz (or .csv)")


def _read_csv_columns(path: Path, columns: Sequence[str]) -> Any:
    """The named columns of a CSV file as strings ("" for empty cells)."""
    try:
        header = pd.read_csv(path, nrows=0).columns
        missing = [c for c in columns if c not in header]
        if missing:
            raise InputError(f"{path}: missing column {missing[0]!r} (has {', '.join(map(str, header))})")
        return pd.read_csv(path, usecols=list(columns), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot be read as CSV ({type(exc).__name__})") from exc


def _numeric(column: Any, name: str, where: Callable[[int], str]) -> Any:
    """A column as numbers; `where(i)` names the i-th row (by position) in the error."""
    values = pd.to_numeric(column.str.strip(), errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        raise InputError(f"{where(int(bad.argmax()))}: {name} is not a number")
    return values


def _count(counter: Counter[str], reason: str, n: int) -> None:
    if n:
        counter[reason] += n


def _read_mimic_codes(
    path: Path,
    system: str,
    admissions: dict[str, list],
    skipped_hadms: set[str],
    report: LoadReport,
) -> dict[str, list[tuple[str, str]]]:
    """hadm_id -> [(raw ICD-10 code, "file:line")] in seq_num order, for admissions with notes."""
    frame = _read_csv_columns(path, _MIMIC_CODE_COLUMNS)
    frame["line"] = frame.index + 2
    frame["hadm_id"] = frame["hadm_id"].str.strip()
    version = frame["icd_version"].str.strip()
    bad = ~version.isin(["9", "10"])
    if bad.any():
        line = int(frame.loc[bad, "line"].iloc[0])
        raise InputError(f"{path}:{line}: icd_version must be 9 or 10")
    with_note = frame["hadm_id"].isin(admissions.keys())
    of_skipped = frame["hadm_id"].isin(skipped_hadms)
    report.code_rows_without_note += int((~with_note & ~of_skipped).sum())
    _count(report.codes_skipped, "of a skipped note", int(of_skipped.sum()))
    _count(report.codes_skipped, f"ICD-9 ({system} file)", int((with_note & (version == "9")).sum()))
    frame = frame[with_note & (version == "10")].copy()
    frame["seq"] = _numeric(frame["seq_num"], "seq_num", lambda i: f"{path}:{frame['line'].iloc[i]}")
    frame = frame.sort_values(["hadm_id", "seq", "line"], kind="stable")
    codes: dict[str, list[tuple[str, str]]] = {}
    for hadm_id, raw, line in frame[["hadm_id", "icd_code", "line"]].itertuples(index=False):
        codes.setdefault(hadm_id, []).append((raw, f"{path}:{line}"))
    return codes


# -- generic JSONL / CSV -------------------------------------------------------------------------


def load_jsonl(
    path: str | Path,
    *,
    on_unknown: str = "keep",
    on_invalid: str = "error",
    on_empty: str = "error",
    catalog: Any = None,
    report: LoadReport | None = None,
) -> DatasetDict:
    """Load the generic format from JSON Lines (split "train").

    One JSON object per line: `text` (required), `diagnoses` and `procedures` (lists of codes, or one
    string of codes separated by ';' or '|'; absent or null means none), `id` (optional, default
    "<file stem>-<line number>"), `encounter_class` (optional: "inpatient" or "outpatient"). Other fields
    are ignored; blank lines are allowed.

    Raises:
        InputError: a missing file, a line that is not a JSON object, a missing or empty `text`,
            a bad code field, a repeated id, a malformed (or, with on_unknown="error", unknown) code.
    """
    _check_policies(on_unknown=on_unknown, on_invalid=on_invalid, on_empty=on_empty)
    path = _require(Path(path))
    local = LoadReport(sources=[str(path)])
    checker = _Checker(catalog if catalog is not None else get_catalog(), local, on_unknown, on_invalid)
    rows = _Rows()
    for number, line in enumerate(_lines(_read_text(path, "utf-8-sig")), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected a JSON object, found {type(record).__name__}")
        _add_generic(record, path, number, where, on_empty, checker, rows)
    local.notes_loaded["train"] = len(rows.columns["id"])
    _finish(local, report)
    return DatasetDict({"train": rows.dataset()})


def load_csv(
    path: str | Path,
    *,
    on_unknown: str = "keep",
    on_invalid: str = "error",
    on_empty: str = "error",
    catalog: Any = None,
    report: LoadReport | None = None,
) -> DatasetDict:
    """Load the generic format from a CSV file with a header row (split "train").

    Columns: `text` (required), `diagnoses` and `procedures` (optional; a JSON list such as
    `["E11.9"]`, or codes separated by ';' or '|'), `id` (optional, default "<file stem>-<line>",
    the line where the record starts; the header is line 1), `encounter_class` (optional, as in
    `load_jsonl`; empty means not stated). Other columns are ignored.

    Raises:
        InputError: as `load_jsonl`, plus a missing `text` column or a row with too many or too few fields.
    """
    _check_policies(on_unknown=on_unknown, on_invalid=on_invalid, on_empty=on_empty)
    path = _require(Path(path))
    local = LoadReport(sources=[str(path)])
    checker = _Checker(catalog if catalog is not None else get_catalog(), local, on_unknown, on_invalid)
    rows = _Rows()
    # The default limit (128 KiB a field) is below the longest clinical notes; this is process-wide.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 24))
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            if "text" not in header:
                raise InputError(f"{path}: missing column 'text' (has {', '.join(header) or 'no header'})")
            start = reader.line_num + 1
            for record in reader:
                where = f"{path}:{start}"
                if None in record or None in record.values():
                    raise InputError(f"{where}: expected {len(header)} fields")
                _add_generic(record, path, start, where, on_empty, checker, rows)
                start = reader.line_num + 1
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 (byte {exc.start})") from exc
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: bad CSV ({exc})") from exc
    local.notes_loaded["train"] = len(rows.columns["id"])
    _finish(local, report)
    return DatasetDict({"train": rows.dataset()})


def _add_generic(
    record: dict[str, Any], path: Path, number: int, where: str, on_empty: str, checker: _Checker, rows: _Rows
) -> None:
    text = record.get("text")
    if not isinstance(text, str):
        raise InputError(f"{where}: 'text' is missing or not a string")
    note_id = record.get("id")
    if note_id is None or note_id == "":
        note_id = f"{path.stem}-{number}"
    elif isinstance(note_id, (str, int)) and not isinstance(note_id, bool):
        note_id = str(note_id)
    else:
        raise InputError(f"{where}: 'id' must be a string or an integer")
    fields = {name: _code_field(record.get(name), name, where) for name in ("diagnoses", "procedures")}
    encounter_class = record.get("encounter_class") or ""
    if encounter_class and encounter_class not in ENCOUNTER_CLASSES:
        raise InputError(f"{where}: 'encounter_class' must be one of {list(ENCOUNTER_CLASSES)}, "
                         f"got {encounter_class!r}")
    if _is_empty(text):
        if on_empty == "error":
            raise InputError(f"{where}: empty text")
        checker.report.notes_skipped["empty text"] += 1
        _count(checker.report.codes_skipped, "of a skipped note", sum(map(len, fields.values())))
        return
    dx = checker.codes(((c, where) for c in fields["diagnoses"]), CM)
    px = checker.codes(((c, where) for c in fields["procedures"]), PCS)
    checker.report.codes_loaded += len(dx) + len(px)
    rows.add(note_id, text, dx, px, where, encounter_class)


_SEPARATORS = re.compile(r"[;|]")


def _code_field(value: Any, name: str, where: str) -> list[Any]:
    """Raw codes of a `diagnoses`/`procedures` field: a list, a JSON list string or 'A;B' / 'A|B'."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: '{name}' is not a valid JSON list ({exc.msg})") from exc
        else:
            return [piece.strip() for piece in _SEPARATORS.split(value) if piece.strip()]
    if not isinstance(value, list):
        raise InputError(f"{where}: '{name}' must be a list of codes")
    return value


# -- dispatch ------------------------------------------------------------------------------------


def is_codiesp(source: str | Path) -> bool:
    """Whether `source` is a CodiEsp folder (a folder that is not MIMIC-IV's): its gold codes are in
    CodiEsp's own form, which evaluation and calibration must use too."""
    path = Path(source)
    return path.is_dir() and not (path / "note").is_dir()


def load_data(
    source: str | Path,
    splits: str | Sequence[str] | None = None,
    language: str = "en",
    **kwargs: Any,
) -> DatasetDict:
    """Load any supported source, chosen by what `source` is.

    - a folder with `note/` and `hosp/`: MIMIC-IV (`load_mimic_iv`);
    - a folder with `<split>/<split>D.tsv` inside: CodiEsp (`load_codiesp`, `splits` default "train");
    - a `.jsonl` or `.csv` file: the generic format (`load_jsonl`, `load_csv`).

    `language` applies to CodiEsp only. MIMIC-IV and the generic files have one split, "train";
    asking them for another is an error. Other keyword arguments go to the loader.

    Raises:
        InputError: a source that does not exist or is none of the above, or a split it lacks.
    """
    path = Path(source)
    if path.is_dir():
        if (path / "note").is_dir() and (path / "hosp").is_dir():
            _only_train(path, splits)
            return load_mimic_iv(path, **kwargs)
        if any(child.is_dir() and (child / f"{child.name}D.tsv").is_file() for child in path.iterdir()):
            return load_codiesp(path, splits if splits is not None else "train", language, **kwargs)
    elif path.is_file():
        loader = {".jsonl": load_jsonl, ".csv": load_csv}.get(path.suffix.lower())
        if loader is not None:
            _only_train(path, splits)
            return loader(path, **kwargs)
    elif not path.exists():
        raise InputError(f"no such file or folder: {path}")
    raise InputError(
        f"{path}: expected a MIMIC-IV folder (with note/ and hosp/), a CodiEsp folder "
        "(with <split>/<split>D.tsv), or a .jsonl or .csv file"
    )


def _only_train(path: Path, splits: str | Sequence[str] | None) -> None:
    names = [] if splits is None else [splits] if isinstance(splits, str) else list(splits)
    if any(name != "train" for name in names):
        raise InputError(f"{path} has a single split, 'train'; cannot load {names!r}")
