"""Normalisation of ICD-10-CM and ICD-10-PCS code strings.

`e119`, `E119`, ` e11.9 ` all become `E11.9`; PCS codes become upper case without dots.
Only the form is checked here; whether a code exists is the catalogue's business.
"""

import re

from models.errors import InputError

_CM_RE = re.compile(r"^[A-Z][0-9A-Z][0-9A-Z][0-9A-Z]{0,4}$")  # FY2026 added QA0.0101-style codes
# PCS uses digits and letters except I and O; CodiEsp also uses 4-character prefixes.
_PCS_RE = re.compile(r"^[0-9A-HJ-NP-Z]{3,7}$")


def normalize_cm(code: str) -> str:
    """Return the canonical dotted upper-case form of an ICD-10-CM code.

    Raises:
        InputError: if the string is not shaped like an ICD-10-CM code.
    """
    raw = code.strip().upper() if isinstance(code, str) else ""
    if "." in raw and raw.index(".") == 3:
        raw = raw[:3] + raw[4:]
    if not _CM_RE.match(raw):
        raise InputError(f"malformed ICD-10-CM code {code!r}")
    return raw if len(raw) == 3 else f"{raw[:3]}.{raw[3:]}"


def normalize_pcs(code: str) -> str:
    """Return the canonical upper-case, dot-free form of an ICD-10-PCS code or code prefix.

    Raises:
        InputError: if the string is not shaped like an ICD-10-PCS code (3 to 7 characters of the
            PCS alphabet, which has no I and no O).
    """
    raw = code.strip().upper().replace(".", "") if isinstance(code, str) else ""
    if not _PCS_RE.match(raw):
        raise InputError(f"malformed ICD-10-PCS code {code!r}")
    return raw


def is_cm_shaped(code: str) -> bool:
    """True when `code` normalises as an ICD-10-CM code."""
    try:
        normalize_cm(code)
    except InputError:
        return False
    return True


def category_of(code: str, system: str) -> str:
    """The group a code belongs to: its ICD-10-CM category (3 characters) or ICD-10-PCS table (section, body
    system, root operation and body part: 4 characters)."""
    return code[:3] if system == "ICD-10-CM" else code[:4]
