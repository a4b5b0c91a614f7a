"""A complete ICD-10-PCS code for a 4-character table row, from what the note says.

The matcher finds a procedure's root operation and body part ("snare polypectomy of the sigmoid colon":
0DBN, excision of sigmoid colon); only a 7-character code is billable. The remaining characters are the
approach (5th), the device (6th) and the qualifier (7th), and only the table's valid rows may be used:
the approach is what the note says ("colonoscopy": via natural or artificial opening endoscopic, 8;
"laparoscopic": percutaneous endoscopic, 4), no device and no qualifier unless the note says so ("biopsy":
diagnostic, X), and the table's first valid row where the note says nothing.
"""

from __future__ import annotations

import re

# Sections whose 5th character is the approach: medical and surgical, obstetrics, placement,
# administration, measurement and monitoring, osteopathic, other procedures, chiropractic.
_APPROACH_SECTIONS = frozenset("01234789")
# 5th-character approach -> the words that state it; checked in this order ("laparoscopic" before the
# "endoscopic" it contains).
_APPROACH_CUES = (
    ("4", r"laparoscop|thoracoscop|arthroscop|mediastinoscop|robotic|\bVATS\b|percutaneous endoscopic"),
    ("8", (r"colonoscop|endoscop|\bEGD\b|gastroscop|bronchoscop|cystoscop|ureteroscop|hysteroscop|sigmoidoscop|"
           r"\bERCP\b|transurethral|\bTURB?T?\b|\bTURP\b")),
    ("3", (r"percutaneous|needle|[\w-]+-guided|\bPCI\b|catheter|\bFNA\b|centesis|lumbar puncture|"
           r"angioplast|stent")),
    ("7", r"via natural or artificial opening|transvaginal|per rectum|nasogastric"),
    ("0", r"\bopen\b|laparotomy|thoracotomy|sternotomy|craniotomy|incision|cesarean|c-section"),
    ("X", r"\bexternal\b|closed reduction|cutaneous"),
)
_APPROACH_RES = tuple((char, re.compile(pattern, re.IGNORECASE)) for char, pattern in _APPROACH_CUES)
_DIAGNOSTIC_RE = re.compile(r"biops|diagnostic|\bFNA\b|brushings?", re.IGNORECASE)


# Assistance and performance of a body function (5A09, 5A19: ventilation) carry the duration as 5th
# character: less than 24 consecutive hours (3), 24 to 96 (4), more than 96 (5). A sentence of the note on
# the ventilation that gives the hours or days ("~70 h on vent", "extubated after 5 days") says which.
_DURATION_TABLES = frozenset({"5A09", "5A19"})
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:-\s*)?(h|hrs?|hours?|d|days?)\b", re.IGNORECASE)
_VENTILATION_RE = re.compile(r"\b(?:vent\w*|intubat\w*|extubat\w*|(?-i:MV|BiPAP|CPAP))\b", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"(?<=[.;\n])\s+")


def stated_duration(text: str) -> str | None:
    """The duration character (3, 4 or 5) of the longest time the note's sentences on ventilation state,
    or None."""
    on_ventilation = [s for s in _SENTENCE_END_RE.split(text) if _VENTILATION_RE.search(s)]
    hours = [float(n) * (24 if unit.lower().startswith("d") else 1)
             for sentence in on_ventilation for n, unit in _DURATION_RE.findall(sentence)]
    if not hours:
        return None
    longest = max(hours)
    return "3" if longest < 24 else "4" if longest <= 96 else "5"


def stated_approaches(text: str) -> list[str]:
    """The approach characters a text states, in `_APPROACH_CUES` order."""
    return [char for char, pattern in _APPROACH_RES if pattern.search(text)]


def complete(prefix: str, codes: list[str], sentence: str, in_note: list[str], duration: str | None = None) -> str:
    """The code of `codes` (the valid 7-character codes under a 4-character `prefix`) that the note
    supports best: the approach its sentence states, else the note (`in_note`: `stated_approaches` of
    the whole note); for ventilation the note's `duration` (`stated_duration`); no device; the diagnostic
    qualifier for a biopsy, else none. Ties go to the table's first row."""
    approach = prefix[0] in _APPROACH_SECTIONS
    duration = duration if prefix in _DURATION_TABLES else None
    in_sentence = stated_approaches(sentence) if approach else []
    in_note = in_note if approach else []
    diagnostic = bool(_DIAGNOSTIC_RE.search(sentence))

    def fit(code: str) -> tuple[int, ...]:
        fifth, device, qualifier = code[4], code[5], code[6]
        return (
            fifth == duration,
            fifth in in_sentence[:1] or (not in_sentence and fifth in in_note[:1]),
            qualifier == ("X" if diagnostic else "Z"),
            device == "Z",
            approach or fifth == "Z",  # imaging and the like: no contrast unless stated
        )

    return max(codes, key=fit)
