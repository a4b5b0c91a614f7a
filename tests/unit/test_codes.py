"""Normalisation of ICD-10-CM and ICD-10-PCS code strings (form only, not existence)."""

import pytest

from models.codes import is_cm_shaped, normalize_cm, normalize_pcs
from models.errors import InputError


@pytest.mark.parametrize("raw", ["e119", "E119", "e11.9", " E11.9 ", "E11.9", "\tE119\n"])
def test_normalize_cm_variants_of_e11_9(raw: str) -> None:
    assert normalize_cm(raw) == "E11.9"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("I10", "I10"),  # a three-character category gets no dot
        ("i10", "I10"),
        ("S72001A", "S72.001A"),  # seventh character kept
        ("s72.001a", "S72.001A"),
        ("E11", "E11"),
        ("Z3A00", "Z3A.00"),  # letter in third position
        ("QA00101", "QA0.0101"),  # FY2026 code with a letter in second position
        ("qa0.0101", "QA0.0101"),
        ("U071", "U07.1"),
    ],
)
def test_normalize_cm_canonical_form(raw: str, expected: str) -> None:
    assert normalize_cm(raw) == expected


def test_normalize_cm_is_idempotent() -> None:
    for code in ["E11.9", "I10", "S72.001A", "QA0.0101"]:
        assert normalize_cm(normalize_cm(code)) == code


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "11.9",  # starts with a digit
        "E",
        "E1",  # too short
        "E11.99999",  # eight characters without the dot
        "E11..9",  # a second dot is not removed
        "E11-9",
        "E11.9 I10",
    ],
)
def test_normalize_cm_rejects_malformed_strings_and_quotes_them(bad: str) -> None:
    with pytest.raises(InputError) as excinfo:
        normalize_cm(bad)
    assert repr(bad) in str(excinfo.value)


@pytest.mark.parametrize("bad", [None, 119, 11.9, b"E119", ["E11.9"]])
def test_normalize_cm_rejects_non_strings(bad: object) -> None:
    with pytest.raises(InputError) as excinfo:
        normalize_cm(bad)  # type: ignore[arg-type]
    assert repr(bad) in str(excinfo.value)


def test_is_cm_shaped() -> None:
    assert is_cm_shaped("e119")
    assert is_cm_shaped("S72.001A")
    assert not is_cm_shaped("11.9")
    assert not is_cm_shaped("")
    assert not is_cm_shaped(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("bt41zzz", "BT41ZZZ"),
        (" 0DTJ4ZZ ", "0DTJ4ZZ"),
        ("0dtj.4zz", "0DTJ4ZZ"),  # every dot is removed, wherever it is
        ("0.D.T.J.4.Z.Z", "0DTJ4ZZ"),
        ("0dtj", "0DTJ"),  # 4-character prefixes (CodiEsp) are accepted
        ("0DT", "0DT"),
    ],
)
def test_normalize_pcs(raw: str, expected: str) -> None:
    assert normalize_pcs(raw) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "0D",  # shorter than a 3-character prefix
        "0DTJ4ZZZ",  # eight characters
        "0DTI4ZZ",  # PCS has no letter I
        "0DTO4ZZ",  # ... and no letter O
        "0dti4zz",
        "0DT-4ZZ",
    ],
)
def test_normalize_pcs_rejects_malformed_strings_and_quotes_them(bad: str) -> None:
    with pytest.raises(InputError) as excinfo:
        normalize_pcs(bad)
    assert repr(bad) in str(excinfo.value)


@pytest.mark.parametrize("bad", [None, 1234567])
def test_normalize_pcs_rejects_non_strings(bad: object) -> None:
    with pytest.raises(InputError):
        normalize_pcs(bad)  # type: ignore[arg-type]
