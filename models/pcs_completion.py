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


def stated_approaches(text: str) -> list[str]:
    """The approach characters a text states, in `_APPROACH_CUES` order."""
    return [char for char, pattern in _APPROACH_RES if pattern.search(text)]


def complete(prefix: str, codes: list[str], sentence: str, in_note: list[str]) -> str:
    """The code of `codes` (the valid 7-character codes under a 4-character `prefix`) that the note
    supports best: the approach its sentence states, else the note (`in_note`: `stated_approaches` of
    the whole note); no device; the diagnostic qualifier for a biopsy, else none. Ties go to the table's
    first row."""
    approach = prefix[0] in _APPROACH_SECTIONS
    in_sentence = stated_approaches(sentence) if approach else []
    in_note = in_note if approach else []
    diagnostic = bool(_DIAGNOSTIC_RE.search(sentence))

    def fit(code: str) -> tuple[int, ...]:
        fifth, device, qualifier = code[4], code[5], code[6]
        return (
            fifth in in_sentence[:1] or (not in_sentence and fifth in in_note[:1]),
            qualifier == ("X" if diagnostic else "Z"),
            device == "Z",
            approach or fifth == "Z",  # imaging and the like: no contrast unless stated
        )

    return max(codes, key=fit)
