"""FHIR R4 in and out: a DocumentReference's note text in, a Bundle of Condition / Procedure resources out.

Pure conversion, no HTTP. Built on the R4B models of `fhir.resources`, which match R4 on the wire for
DocumentReference, Condition, Procedure and Bundle (`DocumentReference.context` is one object whose
`encounter` is a list; R5 made `context` itself a list).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import uuid
from dataclasses import dataclass

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.reference import Reference
from pydantic import ValidationError

CM_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
PCS_SYSTEM = "http://www.cms.gov/Medicare/Coding/ICD10"
VER_STATUS_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-category"
CONFIDENCE_URL = "https://icd10-coder.example/fhir/StructureDefinition/suggestion-confidence"
EVIDENCE_URL = "https://icd10-coder.example/fhir/StructureDefinition/evidence"
MODEL_VERSION_SYSTEM = "https://icd10-coder.example/fhir/model-version"
REVIEW_SYSTEM = "https://icd10-coder.example/fhir/review"
NOTE_ID_SYSTEM = "https://icd10-coder.example/fhir/note-id"

_MAX_REPORTED_ERRORS = 5
# Deeper than any real DocumentReference (nested extensions included); a much deeper one would exhaust the
# stack inside fhir.resources' recursive validation.
_MAX_DEPTH = 64
# Readable words for the commonest pydantic error types; any other type is reported as itself.
_ERROR_WORDS = {
    "missing": "required",
    "model_field_validation.missing": "required",
    "extra_forbidden": "not a field of this resource",
    "base64_decode": "not valid base64",
}


class FhirError(ValueError):
    """A FHIR input that cannot be used; the message names what and where, never note text."""


@dataclass(frozen=True)
class NoteDocument:
    """The note text of a DocumentReference and the references a coded result should point back to."""

    text: str
    note_id: str | None
    subject: dict | None
    encounter: dict | None


def document_text(resource: dict) -> NoteDocument:
    """Extract the plain-text note from a FHIR R4 DocumentReference.

    Args:
        resource: the DocumentReference as parsed JSON.

    Returns:
        The decoded text of the first text/plain attachment with inline `data`, the note id (resource `id`,
        else the first identifier's value), and the subject and first encounter references as JSON dicts.

    Raises:
        FhirError: not a valid DocumentReference (or one nested too deeply to validate), no usable attachment,
            bad base64 or charset, empty text.
    """
    if not isinstance(resource, dict) or resource.get("resourceType") != "DocumentReference":
        raise FhirError("resourceType: expected a DocumentReference")
    if _nested_deeper_than(resource, _MAX_DEPTH):
        raise FhirError(f"DocumentReference: objects and arrays nested more than {_MAX_DEPTH} levels deep")
    try:
        document = DocumentReference.model_validate(resource)
    except ValidationError as exc:
        # `from None`: the str() of a pydantic error quotes the input, which may be note content.
        raise FhirError(_describe(exc, "DocumentReference")) from None

    index, charset = _text_attachment(document)
    where = f"DocumentReference.content[{index}].attachment"
    # The model has already decoded `data`, but leniently (it skips stray characters), so decode the raw
    # string again strictly; FHIR allows whitespace inside base64Binary.
    raw = resource["content"][index]["attachment"]["data"]
    if not isinstance(raw, str):
        raise FhirError(f"{where}.data: expected a base64 string")
    try:
        data = base64.b64decode(re.sub(r"\s+", "", raw), validate=True)
    except binascii.Error as exc:
        raise FhirError(f"{where}.data: not valid base64") from exc
    try:
        # A byte-order mark would otherwise become the first character of the note and shift every span.
        text = data.decode(charset).removeprefix("\ufeff")
    except UnicodeDecodeError:
        # `from None`: the decode error carries the offending bytes of the note.
        raise FhirError(f"{where}.data: not valid {charset}") from None
    if not text.strip():
        raise FhirError(f"{where}.data: the note text is empty")

    note_id = document.id
    if note_id is None and document.identifier:
        note_id = document.identifier[0].value
    encounters = document.context.encounter if document.context else None
    return NoteDocument(
        text=text,
        note_id=note_id,
        subject=_reference_json(document.subject),
        encounter=_reference_json(encounters[0]) if encounters else None,
    )


def suggestion_bundle(response: dict, subject: dict | None, encounter: dict | None) -> dict:
    """Convert a suggestion response into a FHIR R4 collection Bundle of Condition and Procedure resources.

    Args:
        response: a SuggestResponse as a plain dict (`note_id`, `codes`, `needs_review`, `review_id`,
            `model_version`).
        subject: the Reference every resource is about, e.g. {"reference": "Patient/123"}.
        encounter: the Reference of the encounter, if any.

    Returns:
        The Bundle as a JSON-able dict: ICD-10-CM codes as Conditions, ICD-10-PCS codes as Procedures.

    Raises:
        FhirError: no subject, or the result does not validate as a FHIR Bundle.
        ValueError: a code of a system other than ICD-10-CM or ICD-10-PCS.
    """
    if subject is None:
        raise FhirError("DocumentReference.subject: required to build Condition and Procedure resources")
    model_tag = {"system": MODEL_VERSION_SYSTEM, "code": response["model_version"]}
    entries = [
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": _code_resource(suggestion, subject, encounter, model_tag),
        }
        for suggestion in response["codes"]
    ]
    tags = [model_tag]
    if response.get("needs_review"):
        tags.append({"system": REVIEW_SYSTEM, "code": "needs-review", "display": response.get("review_id")})
    bundle = {"resourceType": "Bundle", "type": "collection", "meta": {"tag": tags}, "entry": entries}
    if response.get("note_id"):
        bundle["identifier"] = {"system": NOTE_ID_SYSTEM, "value": response["note_id"]}
    try:
        validated = Bundle.model_validate(bundle)
    except ValidationError as exc:
        raise FhirError(_describe(exc, "Bundle")) from None
    return validated.model_dump(mode="json", exclude_none=True)


def _text_attachment(document: DocumentReference) -> tuple[int, str]:
    """The index of the first text/plain content with inline data, and the Python codec for its charset."""
    for index, content in enumerate(document.content or []):
        attachment = content.attachment
        if attachment is None or attachment.data is None or not attachment.contentType:
            continue
        media_type, *params = (part.strip() for part in attachment.contentType.split(";"))
        if media_type.lower() != "text/plain":
            continue
        charset = "utf-8"
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset":
                charset = value.strip().strip('"')
        where = f"DocumentReference.content[{index}].attachment.contentType"
        try:
            info = codecs.lookup(charset)
        except LookupError as exc:
            raise FhirError(f"{where}: unknown charset {charset!r}") from exc
        # Python's codec registry also holds bytes-to-bytes and str-to-str transforms (hex, zlib, base64,
        # rot13) that `bytes.decode` refuses; none of them is a charset.
        if not getattr(info, "_is_text_encoding", True):
            raise FhirError(f"{where}: {charset!r} is not a text charset")
        return index, info.name
    raise FhirError(
        "DocumentReference.content: no text/plain attachment with inline base64 data "
        "(attachments given by url are not fetched)"
    )


def _code_resource(suggestion: dict, subject: dict, encounter: dict | None, model_tag: dict) -> dict:
    """One suggested code as a Condition (ICD-10-CM) or a Procedure (ICD-10-PCS) resource dict."""
    system = suggestion["system"]
    if system not in ("ICD-10-CM", "ICD-10-PCS"):
        raise ValueError(f"unknown code system {system!r}")
    coding = {"system": CM_SYSTEM if system == "ICD-10-CM" else PCS_SYSTEM, "code": suggestion["code"]}
    if suggestion.get("description"):
        coding["display"] = suggestion["description"]
    resource: dict = {
        "meta": {"tag": [model_tag]},
        "extension": [
            {"url": CONFIDENCE_URL, "valueDecimal": round(suggestion["confidence"], 4)},
            *(
                {
                    "url": EVIDENCE_URL,
                    "extension": [
                        {"url": "start", "valueInteger": span["start"]},
                        {"url": "end", "valueInteger": span["end"]},
                    ],
                }
                for span in suggestion.get("evidence", [])
            ),
        ],
        "code": {"coding": [coding]},
        "subject": subject,
    }
    if encounter is not None:
        resource["encounter"] = encounter
    if system == "ICD-10-PCS":
        return {"resourceType": "Procedure", "status": "completed", **resource}
    status = "confirmed" if suggestion["accepted"] else "provisional"
    return {
        "resourceType": "Condition",
        "verificationStatus": {"coding": [{"system": VER_STATUS_SYSTEM, "code": status}]},
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": "encounter-diagnosis"}]}],
        **resource,
    }


def _nested_deeper_than(value: object, limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` levels deep in a parsed JSON value (walked without
    recursion, since the point is to refuse values too deep to recurse into)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _reference_json(reference: Reference | None) -> dict | None:
    return reference.model_dump(mode="json", exclude_none=True) if reference is not None else None


def _describe(exc: ValidationError, root: str) -> str:
    """Where and what went wrong, from each error's location and type only.

    Never the error's `msg` or `input`: both can quote the submitted values (a union tag, a resourceType).
    """
    problems = []
    for error in exc.errors()[:_MAX_REPORTED_ERRORS]:
        path = root
        for part in error["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif part != "root":  # fhir.resources adds "root" for whole-object validators
                path += f".{part}"
        problems.append(f"{path}: {_ERROR_WORDS.get(error['type'], error['type'])}")
    if exc.error_count() > _MAX_REPORTED_ERRORS:
        problems.append(f"and {exc.error_count() - _MAX_REPORTED_ERRORS} more")
    return "; ".join(problems)
