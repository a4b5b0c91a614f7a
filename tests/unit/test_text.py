"""Note validation, folding, tokenising and sentence splitting with exact character spans."""

import pytest

from models.errors import InputError
from models.text import MAX_NOTE_CHARS, Segment, check_note, fold, split_sentences, tokenize

NOTE = (
    "Admitted with fever of 40.2 C. Seen by Dr. Smith on arrival.\n"
    "\n"
    "Plan:  start antibiotics; follow up in 2 weeks!  Is she better? yes.\r\n"
    "Discharged home.  "
)


def test_split_sentences_spans_point_into_the_note() -> None:
    segments = split_sentences(NOTE)
    for seg in segments:
        assert NOTE[seg.start : seg.end] == seg.text
        assert seg.text == seg.text.strip() and seg.text
    starts = [seg.start for seg in segments]
    assert starts == sorted(starts)


def test_split_sentences_worked_example() -> None:
    # "40.2" stays whole (no space after its full stop). "Dr. Smith" is split: the rule only keeps
    # an abbreviation whole when a digit or a lower-case letter follows, and "Smith" is capitalised.
    # "antibiotics; follow" and "better? yes." stay whole for the same reason (lower case after ";"/"?").
    assert split_sentences(NOTE) == [
        Segment(0, 30, "Admitted with fever of 40.2 C."),
        Segment(31, 42, "Seen by Dr."),
        Segment(43, 60, "Smith on arrival."),
        Segment(62, 109, "Plan:  start antibiotics; follow up in 2 weeks!"),
        Segment(111, 130, "Is she better? yes."),
        Segment(132, 148, "Discharged home."),
    ]


def test_split_sentences_keeps_lower_case_continuations_and_decimals() -> None:
    text = "Temp 40.2 C. pt stable, dose 2.5 mg."
    assert split_sentences(text) == [Segment(0, len(text), text)]


def test_split_sentences_semicolon_before_capital_ends_a_sentence() -> None:
    assert split_sentences("Fever; Cough") == [Segment(0, 6, "Fever;"), Segment(7, 12, "Cough")]


def test_split_sentences_line_breaks_end_sentences() -> None:
    text = "  Diabetes mellitus type 2\nhypertension\n\n\nno allergies  "
    assert split_sentences(text) == [
        Segment(2, 26, "Diabetes mellitus type 2"),
        Segment(27, 39, "hypertension"),
        Segment(42, 54, "no allergies"),
    ]


def test_split_sentences_empty_pieces_dropped() -> None:
    assert split_sentences("") == []
    assert split_sentences("  \n \n\t ") == []
    assert split_sentences("One.") == [Segment(0, 4, "One.")]


def test_check_note_accepts_and_returns_text() -> None:
    assert check_note("Fever.") == "Fever."
    long_ok = "a" * MAX_NOTE_CHARS
    assert check_note(long_ok) is long_ok


@pytest.mark.parametrize("bad", ["", " ", "\n\t  \r\n"])
def test_check_note_rejects_empty(bad: str) -> None:
    with pytest.raises(InputError, match="empty"):
        check_note(bad)


@pytest.mark.parametrize("bad", [None, 42, b"fever", ["fever"]])
def test_check_note_rejects_non_strings(bad: object) -> None:
    with pytest.raises(InputError, match="string"):
        check_note(bad)


def test_check_note_rejects_too_long_without_echoing_the_note() -> None:
    too_long = "secretname " * (MAX_NOTE_CHARS // 11 + 1)
    assert len(too_long) > MAX_NOTE_CHARS
    with pytest.raises(InputError) as excinfo:
        check_note(too_long)
    assert "secretname" not in str(excinfo.value)  # note text is PHI


def test_fold_strips_accents_and_lowercases() -> None:
    assert fold("Diagnóstico") == "diagnostico"
    assert fold("ÉLAN Ñandú") == "elan nandu"
    assert len(fold("Diagnóstico")) == len("Diagnóstico")  # precomposed accents: length kept
    assert fold("Die\u0301gnostico") == "diegnostico"  # an already decomposed accent goes too


def test_tokenize() -> None:
    assert tokenize("Diagnóstico: T2DM, HbA1c 7.5%") == ["diagnostico", "t2dm", "hba1c", "7", "5"]
    assert tokenize("  ...  ") == []
