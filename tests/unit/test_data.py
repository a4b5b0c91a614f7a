"""Dataset loaders against small made-up fixtures, bad inputs, and the real CodiEsp train split."""

import gzip
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from models.errors import InputError, UnknownCodeError
from training.data import LoadReport, load_codiesp, load_csv, load_data, load_jsonl, load_mimic_iv

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CODIESP_MINI = FIXTURES / "codiesp_mini"
MIMIC = FIXTURES / "mimic_iv"
GENERIC = FIXTURES / "generic"
REAL_CODIESP = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "codiesp"

COLUMNS = ["id", "text", "diagnoses", "procedures", "encounter_class"]
DOC = "S9999-0000000000000000{}-1"
# Words of the fixture notes that an error message must never contain.
NOTE_WORDS = ("Made-up", "testicle", "forehead", "bicycle", "cholesterol", "Chief Complaint", "pneumonia")


class _Codes:
    def __init__(self, codes):
        self.codes = set(codes)

    def is_valid(self, code):
        return code in self.codes


class FakeCatalog:
    """The two `is_valid` lookups the loaders use, over a fixed set of codes."""

    def __init__(self, cm, pcs):
        self.cm, self.pcs = _Codes(cm), _Codes(pcs)


# Everything the fixtures use, except S02.0XX (unknown, as in the real FY2026 catalogue).
FAKE = FakeCatalog(
    cm={"N44.8", "R52", "E11.9", "I10", "R10.9", "J18.9", "E78.5", "K35.80", "N17.9", "I11.0", "I50.23"},
    pcs={"BT41ZZZ", "CT13", "0DTJ4ZZ", "BW03ZZZ", "5A1955Z"},
)


def rows(dataset):
    return [tuple(r[c] for c in COLUMNS[:4]) for r in dataset]


def assert_error(exc_info, *fragments):
    message = str(exc_info.value)
    for fragment in fragments:
        assert fragment in message, message
    for word in NOTE_WORDS:
        assert word not in message, message


def copy_tree(src, tmp_path):
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


# -- CodiEsp ---------------------------------------------------------------------------------------


def test_codiesp_train_english():
    report = LoadReport()
    data = load_codiesp(CODIESP_MINI, catalog=FAKE, report=report)
    assert list(data) == ["train"]
    assert list(data["train"].column_names) == COLUMNS
    got = rows(data["train"])
    assert [(r[0], r[2], r[3]) for r in got] == [
        (DOC.format(1), ["N44.8", "R52", "E11.9"], ["BT41ZZZ"]),
        (DOC.format(2), ["S02.0XX", "R10.9"], ["CT13", "0DTJ4ZZ"]),
        (DOC.format(3), ["I10"], []),
    ]
    assert got[0][1].startswith("A 45-year-old man consulted")
    assert report.notes_loaded == {"train": 3}
    assert report.codes_loaded == 9
    assert report.unknown_kept == 1 and report.unknown_examples == ["S02.0XX"]
    assert not report.has_skips


def test_codiesp_spanish_text_same_codes():
    en = load_codiesp(CODIESP_MINI, "dev", catalog=FAKE)["dev"]
    es = load_codiesp(CODIESP_MINI, "dev", language="es", catalog=FAKE)["dev"]
    assert es["id"] == en["id"] == [DOC.format(i) for i in (4, 5, 6)]
    assert es["diagnoses"] == en["diagnoses"] == [["J18.9", "E78.5"], ["K35.80"], ["N17.9"]]
    assert es["procedures"] == en["procedures"] == [["BW03ZZZ"], ["0DTJ4ZZ"], []]
    assert es["text"][0].startswith("Varón de 60 años")
    assert en["text"][0].startswith("A 60-year-old man")
    # The text is kept byte for byte: CodiEsp-X offsets point into the Spanish files.
    assert es["text"][1] == (CODIESP_MINI / "dev/text_files" / f"{DOC.format(5)}.txt").read_text("utf-8")


def test_codiesp_union_and_several_splits():
    data = load_codiesp(CODIESP_MINI, ["train+dev", "dev"], catalog=FAKE)
    assert list(data) == ["train+dev", "dev"]
    assert data["train+dev"]["id"] == [DOC.format(i) for i in range(1, 7)]
    assert data["dev"]["id"] == [DOC.format(i) for i in (4, 5, 6)]


def test_codiesp_union_rejects_a_document_in_two_splits(tmp_path):
    root = copy_tree(CODIESP_MINI, tmp_path)
    shutil.copytree(root / "train", root / "again")
    for kind in "DP":
        (root / "again" / f"train{kind}.tsv").rename(root / "again" / f"again{kind}.tsv")
    with pytest.raises(InputError) as exc_info:
        load_codiesp(root, "train+again", catalog=FAKE)
    assert_error(exc_info, DOC.format(1), "already used")


def test_codiesp_unknown_code_policies(tmp_path):
    report = LoadReport()
    data = load_codiesp(CODIESP_MINI, on_unknown="skip", catalog=FAKE, report=report)
    assert data["train"]["diagnoses"][1] == ["R10.9"]
    assert report.codes_skipped == {"unknown ICD-10-CM": 1}
    assert report.unknown_examples == ["S02.0XX"] and report.unknown_kept == 0

    with pytest.raises(UnknownCodeError) as exc_info:
        load_codiesp(CODIESP_MINI, on_unknown="error", catalog=FAKE)
    assert_error(exc_info, "trainD.tsv:2", "'S02.0XX'")


def test_codiesp_real_catalogue_keeps_cie10_2018_codes():
    report = LoadReport()
    data = load_codiesp(CODIESP_MINI, "train+dev", report=report)  # the real get_catalog()
    assert data["train+dev"]["diagnoses"][1] == ["S02.0XX", "R10.9"]
    assert report.unknown_kept == 1 and report.unknown_examples == ["S02.0XX"]


def test_codiesp_malformed_code(tmp_path):
    root = copy_tree(CODIESP_MINI, tmp_path)
    tsv = root / "dev" / "devP.tsv"
    tsv.write_text(tsv.read_text() + f"{DOC.format(6)}\t0dtj4z!\n")
    with pytest.raises(InputError) as exc_info:
        load_codiesp(root, "dev", catalog=FAKE)
    assert_error(exc_info, "devP.tsv:3", "malformed ICD-10-PCS code '0dtj4z!'")

    report = LoadReport()
    data = load_codiesp(root, "dev", on_invalid="skip", catalog=FAKE, report=report)
    assert data["dev"]["procedures"][2] == []
    assert report.codes_skipped == {"malformed ICD-10-PCS": 1}
    assert report.malformed_examples == ["'0dtj4z!'"]


def test_codiesp_malformed_long_value_is_not_quoted(tmp_path):
    root = copy_tree(CODIESP_MINI, tmp_path)
    tsv = root / "dev" / "devD.tsv"
    tsv.write_text(tsv.read_text() + f"{DOC.format(6)}\tMade-up note text in the code column\n")
    with pytest.raises(InputError) as exc_info:
        load_codiesp(root, "dev", catalog=FAKE)
    assert_error(exc_info, "devD.tsv:5", "not shown")


def test_codiesp_duplicate_codes_are_merged(tmp_path):
    root = copy_tree(CODIESP_MINI, tmp_path)
    tsv = root / "dev" / "devD.tsv"
    tsv.write_text(tsv.read_text() + f"{DOC.format(4)}\tj189\n")
    report = LoadReport()
    data = load_codiesp(root, "dev", catalog=FAKE, report=report)
    assert data["dev"]["diagnoses"][0] == ["J18.9", "E78.5"]
    assert report.duplicate_codes == 1


def test_codiesp_code_row_without_text(tmp_path):
    root = copy_tree(CODIESP_MINI, tmp_path)
    tsv = root / "train" / "trainD.tsv"
    tsv.write_text(tsv.read_text() + "S9999-nope-1\tr52\n")
    with pytest.raises(InputError) as exc_info:
        load_codiesp(root, catalog=FAKE)
    assert_error(exc_info, "trainD.tsv:7", "'S9999-nope-1' has no text file")


def test_codiesp_row_with_wrong_field_count(tmp_path):
    root = copy_tree(CODIESP_MINI, tmp_path)
    tsv = root / "train" / "trainP.tsv"
    tsv.write_text(tsv.read_text() + f"{DOC.format(1)} bt41zzz\n")
    with pytest.raises(InputError) as exc_info:
        load_codiesp(root, catalog=FAKE)
    assert_error(exc_info, "trainP.tsv:4", "expected 2 tab-separated fields")


def test_codiesp_empty_text(tmp_path, caplog):
    root = copy_tree(CODIESP_MINI, tmp_path)
    (root / "train" / "text_files_en" / f"{DOC.format(3)}.txt").write_text(" \n")
    with pytest.raises(InputError) as exc_info:
        load_codiesp(root, catalog=FAKE)
    assert_error(exc_info, f"{DOC.format(3)}.txt", "empty text")

    report = LoadReport()
    with caplog.at_level(logging.INFO, logger="training.data"):
        data = load_codiesp(root, on_empty="skip", catalog=FAKE, report=report)
    assert data["train"]["id"] == [DOC.format(1), DOC.format(2)]
    assert report.notes_skipped == {"empty text": 1}
    assert report.codes_skipped == {"of a skipped note": 1}
    [record] = [r for r in caplog.records if r.name == "training.data"]
    assert record.levelno == logging.WARNING and "1 empty text" in record.getMessage()


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        ("dev", "dev"),
        ("dev/text_files_en", "text_files_en"),
        ("dev/devD.tsv", "devD.tsv"),
        ("dev/devP.tsv", "devP.tsv"),
    ],
)
def test_codiesp_missing_folder_or_file(tmp_path, remove, named):
    root = copy_tree(CODIESP_MINI, tmp_path)
    target = root / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(InputError) as exc_info:
        load_codiesp(root, "train+dev", catalog=FAKE)
    assert_error(exc_info, "missing", str(target))
    assert named in str(exc_info.value)


def test_codiesp_bad_arguments():
    with pytest.raises(ValueError, match="language"):
        load_codiesp(CODIESP_MINI, language="fr", catalog=FAKE)
    with pytest.raises(ValueError, match="on_unknown"):
        load_codiesp(CODIESP_MINI, on_unknown="drop", catalog=FAKE)
    with pytest.raises(InputError, match="split name"):
        load_codiesp(CODIESP_MINI, "train+../x", catalog=FAKE)


def test_codiesp_logs_summary_without_text(caplog):
    with caplog.at_level(logging.INFO, logger="training.data"):
        load_codiesp(CODIESP_MINI, "train+dev", catalog=FAKE)
    [record] = [r for r in caplog.records if r.name == "training.data"]
    message = record.getMessage()
    assert record.levelno == logging.INFO
    assert "loaded 6 notes (train+dev: 6) with 15 codes" in message and "S02.0XX" in message
    assert not any(word in message for word in NOTE_WORDS)


@pytest.mark.slow
def test_real_codiesp_train_matches_readme_counts():
    if not REAL_CODIESP.is_dir():
        pytest.skip(f"CodiEsp not found at {REAL_CODIESP}")
    report = LoadReport()
    train = load_codiesp(REAL_CODIESP, report=report)["train"]  # the real catalogue
    assert len(train) == 500 and len(set(train["id"])) == 500
    assert sum(map(len, train["diagnoses"])) == 5639
    assert sum(map(len, train["procedures"])) == 1550
    assert len({c for codes in train["diagnoses"] for c in codes}) == 1767
    assert len({c for codes in train["procedures"] for c in codes}) == 563
    assert sum(1 for codes in train["procedures"] if codes) == 435
    assert all(codes for codes in train["diagnoses"])
    assert "S02.0XX" in {c for codes in train["diagnoses"] for c in codes}
    assert report.unknown_kept > 0 and not report.has_skips
    first = train[0]
    assert first["id"] == "S0004-06142005000700014-1"
    assert first["diagnoses"][:3] == ["N44.8", "Z20.818", "R60.9"]


# -- MIMIC-IV --------------------------------------------------------------------------------------


def test_mimic_iv_fixture():
    report = LoadReport()
    data = load_mimic_iv(MIMIC, catalog=FAKE, report=report)
    assert list(data) == ["train"]
    got = rows(data["train"])
    assert [(r[0], r[2], r[3]) for r in got] == [
        ("10000001-DS-1", ["I50.23", "I11.0", "E11.9"], ["5A1955Z"]),
        ("10000002-DS-1", ["K35.80"], ["0DTJ4ZZ"]),
        ("10000004-DS-1", ["J18.9", "E78.5"], []),
    ]
    merged = got[1][1]
    assert merged.startswith("Chief Complaint:\nabdominal pain")
    assert merged.endswith('Addendum:\nMade-up addendum, "wound clean", sutures in place.\n')
    assert "\n\nAddendum:" in merged
    assert report.notes_merged == 1
    assert report.notes_skipped == {"admission without ICD-10 codes": 1}
    assert report.codes_skipped == {"ICD-9 (ICD-10-CM file)": 3, "ICD-9 (ICD-10-PCS file)": 1}
    assert report.code_rows_without_note == 1
    assert report.codes_loaded == 8



def test_mimic_iv_uncompressed_csv_and_dispatch(tmp_path):
    root = copy_tree(MIMIC, tmp_path)
    for gz in root.rglob("*.csv.gz"):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    data = load_data(root, catalog=FAKE)
    assert data["train"]["id"] == ["10000001-DS-1", "10000002-DS-1", "10000004-DS-1"]


def _rewrite(path, change):
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    change(frame).to_csv(path, index=False)
    return frame


@pytest.mark.parametrize(
    ("file", "column"),
    [
        ("note/discharge.csv.gz", "note_seq"),
        ("hosp/diagnoses_icd.csv.gz", "icd_version"),
        ("hosp/procedures_icd.csv.gz", "icd_code"),
    ],
)
def test_mimic_iv_missing_column(tmp_path, file, column):
    root = copy_tree(MIMIC, tmp_path)
    _rewrite(root / file, lambda f: f.drop(columns=[column]))
    with pytest.raises(InputError) as exc_info:
        load_mimic_iv(root, catalog=FAKE)
    assert_error(exc_info, Path(file).name, f"missing column '{column}'")


def test_mimic_iv_missing_file(tmp_path):
    root = copy_tree(MIMIC, tmp_path)
    (root / "hosp" / "procedures_icd.csv.gz").unlink()
    with pytest.raises(InputError) as exc_info:
        load_mimic_iv(root, catalog=FAKE)
    assert_error(exc_info, "missing file", "procedures_icd.csv")


def test_mimic_iv_malformed_code(tmp_path):
    root = copy_tree(MIMIC, tmp_path)
    path = root / "hosp" / "diagnoses_icd.csv.gz"

    def corrupt(frame):
        frame.loc[2, "icd_code"] = "E1!9"  # line 4: the header is line 1
        return frame

    _rewrite(path, corrupt)
    with pytest.raises(InputError) as exc_info:
        load_mimic_iv(root, catalog=FAKE)
    assert_error(exc_info, "diagnoses_icd.csv.gz:4", "malformed ICD-10-CM code 'E1!9'")

    report = LoadReport()
    data = load_mimic_iv(root, on_invalid="skip", catalog=FAKE, report=report)
    assert data["train"]["diagnoses"][0] == ["I50.23", "I11.0"]
    assert report.codes_skipped["malformed ICD-10-CM"] == 1


def test_mimic_iv_unknown_code_policies(tmp_path):
    catalog = FakeCatalog(cm=FAKE.cm.codes - {"E78.5", "J18.9"}, pcs=FAKE.pcs.codes)
    report = LoadReport()
    data = load_mimic_iv(MIMIC, catalog=catalog, report=report)
    assert data["train"]["diagnoses"][2] == ["J18.9", "E78.5"]
    assert report.unknown_kept == 2 and report.unknown_examples == ["J18.9", "E78.5"]

    report = LoadReport()
    data = load_mimic_iv(MIMIC, on_unknown="skip", catalog=catalog, report=report)
    # Its only codes dropped, the note of admission 20000004 has no label left: skipped, counted.
    assert data["train"]["id"] == ["10000001-DS-1", "10000002-DS-1"]
    assert report.notes_skipped["all codes of the admission skipped"] == 1
    assert report.codes_skipped["unknown ICD-10-CM"] == 2

    with pytest.raises(UnknownCodeError) as exc_info:
        load_mimic_iv(MIMIC, on_unknown="error", catalog=catalog)
    assert_error(exc_info, "diagnoses_icd.csv.gz:9", "'J18.9'")


def test_mimic_iv_empty_text(tmp_path):
    root = copy_tree(MIMIC, tmp_path)

    def blank(frame):
        frame.loc[1, "text"] = "   "  # 10000002-DS-2, the addendum
        return frame

    _rewrite(root / "note" / "discharge.csv.gz", blank)
    with pytest.raises(InputError) as exc_info:
        load_mimic_iv(root, catalog=FAKE)
    assert_error(exc_info, "discharge.csv.gz", "'10000002-DS-2' (record 2)", "empty text")

    report = LoadReport()
    data = load_mimic_iv(root, on_empty="skip", catalog=FAKE, report=report)
    assert data["train"]["text"][1].endswith("laparoscopic appendectomy\n")
    assert report.notes_skipped == {"empty text": 1, "admission without ICD-10 codes": 1}
    assert report.notes_merged == 0


def test_mimic_iv_non_numeric_note_seq(tmp_path):
    root = copy_tree(MIMIC, tmp_path)

    def bad(frame):
        frame.loc[3, "note_seq"] = "first"
        return frame

    _rewrite(root / "note" / "discharge.csv.gz", bad)
    with pytest.raises(InputError) as exc_info:
        load_mimic_iv(root, catalog=FAKE)
    assert_error(exc_info, "discharge.csv.gz: record 4", "note_seq is not a number")


def test_mimic_iv_bad_icd_version(tmp_path):
    root = copy_tree(MIMIC, tmp_path)

    def bad(frame):
        frame.loc[0, "icd_version"] = "11"
        return frame

    _rewrite(root / "hosp" / "procedures_icd.csv.gz", bad)
    with pytest.raises(InputError) as exc_info:
        load_mimic_iv(root, catalog=FAKE)
    assert_error(exc_info, "procedures_icd.csv.gz:2", "icd_version")


# -- generic JSONL / CSV ---------------------------------------------------------------------------

def test_load_jsonl():
    report = LoadReport()
    data = load_jsonl(GENERIC / "notes.jsonl", catalog=FAKE, report=report)
    assert [(r[0], r[2], r[3]) for r in rows(data["train"])] == [
        ("note-a", ["E11.9", "I10"], ["0DTJ4ZZ"]),
        ("notes-3", ["J18.9"], []),
        ("42", ["K35.80", "E78.5"], []),
    ]
    assert data["train"]["text"][1] == "Made-up note: pneumonia of the right lower lobe."
    assert report.duplicate_codes == 1 and report.notes_loaded == {"train": 3}


def test_load_csv():
    data = load_csv(GENERIC / "notes.csv", catalog=FAKE)
    assert [(r[0], r[2], r[3]) for r in rows(data["train"])] == [
        ("note-a", ["E11.9", "I10"], ["0DTJ4ZZ"]),
        ("notes-4", ["J18.9"], []),  # the first record spans lines 2-3
        ("note-c", ["K35.80", "E78.5"], ["BW03ZZZ"]),
    ]
    assert data["train"]["text"][0] == "Made-up note: type 2 diabetes\nand hypertension; appendectomy."


def test_generic_round_trip_through_csv_and_jsonl(tmp_path):
    data = load_jsonl(GENERIC / "notes.jsonl", catalog=FAKE)["train"]
    data.to_json(tmp_path / "export.jsonl", lines=True, force_ascii=False)
    assert rows(load_jsonl(tmp_path / "export.jsonl", catalog=FAKE)["train"]) == rows(data)
    frame = data.to_pandas()
    for column in ("diagnoses", "procedures"):
        frame[column] = frame[column].map(";".join)
    frame.to_csv(tmp_path / "export.csv", index=False)
    assert rows(load_csv(tmp_path / "export.csv", catalog=FAKE)["train"]) == rows(data)


def test_generic_encounter_class(tmp_path):
    # Stated per note where the data says it, "" where it does not.
    path = tmp_path / "notes.jsonl"
    path.write_text('{"text": "Made-up ED note.", "encounter_class": "outpatient"}\n{"text": "Made-up note."}\n')
    assert load_jsonl(path, catalog=FAKE)["train"]["encounter_class"] == ["outpatient", ""]
    assert set(load_csv(GENERIC / "notes.csv", catalog=FAKE)["train"]["encounter_class"]) == {""}


def test_jsonl_line_separator_inside_text(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text('{"text": "Made-up\u2028note.", "diagnoses": ["I10"]}\r\n', encoding="utf-8")
    assert load_jsonl(path, catalog=FAKE)["train"]["text"] == ["Made-up\u2028note."]


def test_jsonl_bad_json_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "Made-up note one.", "diagnoses": ["I10"]}\n{"text": "Made-up note, "diag\n')
    with pytest.raises(InputError) as exc_info:
        load_jsonl(path, catalog=FAKE)
    assert_error(exc_info, "bad.jsonl:2", "invalid JSON")


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('{"diagnoses": ["I10"]}', "'text' is missing"),
        ('["Made-up note"]', "expected a JSON object"),
        ('{"text": "Made-up note.", "diagnoses": {"I10": 1}}', "'diagnoses' must be a list"),
        ('{"text": "Made-up note.", "procedures": "[0DTJ4ZZ"}', "'procedures' is not a valid JSON list"),
        ('{"text": "Made-up note.", "id": ["x"]}', "'id' must be"),
        ('{"text": "Made-up note.", "diagnoses": ["I1-0"]}', "malformed ICD-10-CM code 'I1-0'"),
        ('{"text": "Made-up note.", "id": "note-a"}', "'note-a' already used at"),
        ('{"text": "Made-up note.", "encounter_class": "ambulatory"}', "'encounter_class' must be one of"),
    ],
)
def test_jsonl_bad_records(tmp_path, line, fragment):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "note-a", "text": "Made-up note one."}\n\n' + line + "\n")
    with pytest.raises(InputError) as exc_info:
        load_jsonl(path, catalog=FAKE)
    assert_error(exc_info, "bad.jsonl:3", fragment)


def test_jsonl_unknown_code_policies(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text('{"text": "Made-up note.", "diagnoses": ["S02.0XX", "I10"]}\n')
    assert load_jsonl(path, catalog=FAKE)["train"]["diagnoses"] == [["S02.0XX", "I10"]]
    assert load_jsonl(path, on_unknown="skip", catalog=FAKE)["train"]["diagnoses"] == [["I10"]]
    with pytest.raises(UnknownCodeError) as exc_info:
        load_jsonl(path, on_unknown="error", catalog=FAKE)
    assert_error(exc_info, "notes.jsonl:1", "'S02.0XX'")


def test_generic_empty_text(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text('id,text,diagnoses\na,"Made-up note.",I10\nb,"  ",E11.9;E78.5\n')
    with pytest.raises(InputError) as exc_info:
        load_csv(path, catalog=FAKE)
    assert_error(exc_info, "notes.csv:3", "empty text")
    report = LoadReport()
    assert load_csv(path, on_empty="skip", catalog=FAKE, report=report)["train"]["id"] == ["a"]
    assert report.notes_skipped == {"empty text": 1} and report.codes_skipped == {"of a skipped note": 2}


def test_csv_missing_text_column_and_bad_rows(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text("id,body,diagnoses\na,Made-up note.,I10\n")
    with pytest.raises(InputError) as exc_info:
        load_csv(path, catalog=FAKE)
    assert_error(exc_info, "notes.csv", "missing column 'text'")

    path.write_text('id,text,diagnoses\na,"Made-up note.",I10\nb,"Made-up note two.",I10,extra\n')
    with pytest.raises(InputError) as exc_info:
        load_csv(path, catalog=FAKE)
    assert_error(exc_info, "notes.csv:3", "expected 3 fields")

    path.write_text('text,diagnoses\n"Made-up note.","[""I10"", "\n')
    with pytest.raises(InputError) as exc_info:
        load_csv(path, catalog=FAKE)
    assert_error(exc_info, "notes.csv:2", "'diagnoses' is not a valid JSON list")


# -- dispatch --------------------------------------------------------------------------------------


def test_load_data_dispatch(tmp_path):
    assert load_data(CODIESP_MINI, "dev", catalog=FAKE)["dev"]["id"][0] == DOC.format(4)
    assert load_data(str(CODIESP_MINI), catalog=FAKE, language="es")["train"]["text"][0].startswith("Varón")
    assert len(load_data(MIMIC, catalog=FAKE)["train"]) == 3
    assert len(load_data(GENERIC / "notes.jsonl", catalog=FAKE)["train"]) == 3
    assert len(load_data(GENERIC / "notes.csv", "train", catalog=FAKE)["train"]) == 3

    with pytest.raises(InputError, match="single split"):
        load_data(MIMIC, "dev", catalog=FAKE)
    with pytest.raises(InputError, match="no such file or folder"):
        load_data(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("Made-up note.")
    for source in (tmp_path, tmp_path / "notes.txt"):
        with pytest.raises(InputError) as exc_info:
            load_data(source)
        assert_error(exc_info, str(source), "expected a MIMIC-IV folder", ".jsonl or .csv file")
