"""FHIR conversion: DocumentReference note text in, a Bundle of Condition / Procedure resources out."""

import base64
import uuid
from decimal import Decimal

import pytest
from fhir.resources.R4B.bundle import Bundle

from service.fhir import (
    CM_SYSTEM,
    PCS_SYSTEM,
    FhirError,
    NoteDocument,
    document_text,
    suggestion_bundle,
)

NOTE = "Patient Jane Roe has type 2 diabetes mellitus without complications."
PATIENT = {"reference": "Patient/123"}
ENCOUNTER = {"reference": "Encounter/456"}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def doc_ref(*attachments: dict, **fields) -> dict:
    """A minimal valid DocumentReference holding the given attachments."""
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{"attachment": a} for a in attachments],
        **fields,
    }


def text_attachment(text: str = NOTE, content_type: str = "text/plain") -> dict:
    return {"contentType": content_type, "data": b64(text.encode("utf-8"))}


# --- document_text ---------------------------------------------------------------------------------------


def test_document_text_extracts_text_and_references() -> None:
    resource = doc_ref(
        {"contentType": "application/pdf", "url": "https://ehr.example/notes/1.pdf"},
        text_attachment(content_type="text/plain; charset=utf-8"),
        id="note-1",
        identifier=[{"system": "https://ehr.example/notes", "value": "N-999"}],
        subject=PATIENT,
        context={"encounter": [ENCOUNTER, {"reference": "Encounter/789"}]},
    )
    assert document_text(resource) == NoteDocument(
        text=NOTE, note_id="note-1", subject=PATIENT, encounter=ENCOUNTER
    )


def test_document_text_falls_back_to_first_identifier_and_allows_no_references() -> None:
    resource = doc_ref(
        text_attachment(),
        identifier=[{"system": "https://ehr.example/notes", "value": "N-999"}, {"value": "other"}],
    )
    note = document_text(resource)
    assert (note.note_id, note.subject, note.encounter) == ("N-999", None, None)


def test_document_text_decodes_the_declared_charset() -> None:
    attachment = {
        "contentType": 'text/plain;charset="ISO-8859-1"',
        "data": b64("Fièvre à 40 °C.".encode("latin-1")),
    }
    assert document_text(doc_ref(attachment)).text == "Fièvre à 40 °C."


def test_document_text_accepts_whitespace_in_base64_and_drops_a_utf8_bom() -> None:
    encoded = b64(b"\xef\xbb\xbf" + NOTE.encode("utf-8"))
    wrapped = "\n".join(encoded[i : i + 16] for i in range(0, len(encoded), 16))
    assert document_text(doc_ref({"contentType": "text/plain", "data": wrapped})).text == NOTE


def test_document_text_skips_text_plain_without_data() -> None:
    resource = doc_ref({"contentType": "text/plain", "url": "https://ehr.example/n.txt"}, text_attachment())
    assert document_text(resource).text == NOTE


# --- document_text errors ----------------------------------------------------------------------------------


def raises_fhir_error(resource: object, match: str) -> FhirError:
    with pytest.raises(FhirError, match=match) as info:
        document_text(resource)  # type: ignore[arg-type]
    message = str(info.value)
    for word in ("Jane", "Roe", "diabetes", b64(NOTE.encode("utf-8"))[:12]):
        assert word not in message
    return info.value


def test_wrong_resource_type() -> None:
    raises_fhir_error({**doc_ref(text_attachment()), "resourceType": "Observation"}, r"^resourceType: ")
    raises_fhir_error([doc_ref(text_attachment())], r"^resourceType: ")


@pytest.mark.parametrize(
    ("fields", "drop", "match"),
    [
        ({"bogus": NOTE}, None, r"^DocumentReference\.bogus: not a field of this resource$"),
        ({"description": NOTE}, "status", r"^DocumentReference\.status: required$"),
        ({"description": {"text": NOTE}}, None, r"^DocumentReference\.description: string_type$"),
    ],
)
def test_invalid_resource_names_fields_without_echoing_values(
    fields: dict, drop: str | None, match: str
) -> None:
    resource = doc_ref(text_attachment(), **fields)
    resource.pop(drop, None)
    error = raises_fhir_error(resource, match)
    # pydantic's own message quotes the input, so it must not ride along as the cause
    assert error.__cause__ is None and error.__suppress_context__


def test_invalid_nested_field_is_located() -> None:
    resource = doc_ref({"contentType": "text/plain", "data": "SmFuZSBSb2U"})  # missing padding
    raises_fhir_error(resource, r"^DocumentReference\.content\[0\]\.attachment\.data: not valid base64$")


def test_no_text_plain_attachment_with_data_mentions_url() -> None:
    resource = doc_ref(
        {"contentType": "text/plain", "url": "https://ehr.example/n.txt"},
        {"contentType": "text/html", "data": b64(NOTE.encode())},
    )
    raises_fhir_error(resource, r"^DocumentReference\.content: no text/plain attachment .*url")
    raises_fhir_error(doc_ref(), r"^DocumentReference\.content: ")


def test_base64_is_decoded_strictly() -> None:
    # the library's own decoding skips the stray "!"; ours must not
    data = b64(NOTE.encode("utf-8"))
    resource = doc_ref({"contentType": "text/plain", "data": data[:8] + "!" + data[8:]})
    raises_fhir_error(resource, r"^DocumentReference\.content\[0\]\.attachment\.data: not valid base64$")


def test_bad_encoding() -> None:
    resource = doc_ref({"contentType": "text/plain", "data": b64(NOTE.encode("utf-8") + b"\xff\xfe")})
    error = raises_fhir_error(
        resource, r"^DocumentReference\.content\[0\]\.attachment\.data: not valid utf-8$"
    )
    assert error.__cause__ is None


@pytest.mark.parametrize("charset", ["hex", "rot13", "zlib", "base64", "uu", "bz2"])
def test_a_codec_that_is_not_a_text_charset_is_refused(charset: str) -> None:
    resource = doc_ref(text_attachment(content_type=f"text/plain; charset={charset}"))
    raises_fhir_error(resource, rf"contentType: '{charset}' is not a text charset")


def test_unknown_charset() -> None:
    resource = doc_ref(text_attachment(content_type="text/plain; charset=klingon"))
    raises_fhir_error(resource, r"contentType: unknown charset 'klingon'")


@pytest.mark.parametrize("text", ["", " \n\t "])
def test_empty_text(text: str) -> None:
    resource = doc_ref({"contentType": "text/plain", "data": b64(text.encode())})
    raises_fhir_error(
        resource, r"^DocumentReference\.content\[0\]\.attachment\.data: the note text is empty$"
    )


# --- suggestion_bundle -------------------------------------------------------------------------------------


def response(**fields) -> dict:
    return {
        "note_id": "note-1",
        "codes": [
            {
                "code": "E11.9",
                "system": "ICD-10-CM",
                "description": "Type 2 diabetes mellitus without complications",
                "confidence": 0.912345,
                "accepted": True,
                "evidence": [{"start": 25, "end": 52}, {"start": 0, "end": 7}],
            },
            {
                "code": "0DTJ4ZZ",
                "system": "ICD-10-PCS",
                "description": "Resection of Appendix, Percutaneous Endoscopic Approach",
                "confidence": 0.4,
                "accepted": False,
                "evidence": [],
            },
        ],
        "needs_review": True,
        "review_id": "rev-42",
        "model_version": "hybrid-2026.01",
        **fields,
    }


def extension_values(resource, url: str) -> list:
    return [ext for ext in resource.extension or [] if ext.url == url]


def test_bundle_round_trips_through_the_r4b_models() -> None:
    out = suggestion_bundle(response(), PATIENT, ENCOUNTER)
    bundle = Bundle.model_validate(out)

    assert bundle.type == "collection"
    assert (bundle.identifier.system, bundle.identifier.value) == (
        "https://icd10-coder.example/fhir/note-id",
        "note-1",
    )
    assert [(t.system, t.code, t.display) for t in bundle.meta.tag] == [
        ("https://icd10-coder.example/fhir/model-version", "hybrid-2026.01", None),
        ("https://icd10-coder.example/fhir/review", "needs-review", "rev-42"),
    ]
    assert len(bundle.entry) == 2
    for entry in bundle.entry:
        assert entry.fullUrl.startswith("urn:uuid:")
        uuid.UUID(entry.fullUrl.removeprefix("urn:uuid:"))
    assert bundle.entry[0].fullUrl != bundle.entry[1].fullUrl

    condition, procedure = (entry.resource for entry in bundle.entry)
    assert condition.get_resource_type() == "Condition"
    coding = condition.code.coding[0]
    assert (coding.system, coding.code, coding.display) == (
        CM_SYSTEM,
        "E11.9",
        "Type 2 diabetes mellitus without complications",
    )
    assert CM_SYSTEM == "http://hl7.org/fhir/sid/icd-10-cm"
    status = condition.verificationStatus.coding[0]
    assert (status.system, status.code) == (
        "http://terminology.hl7.org/CodeSystem/condition-ver-status",
        "confirmed",
    )
    category = condition.category[0].coding[0]
    assert (category.system, category.code) == (
        "http://terminology.hl7.org/CodeSystem/condition-category",
        "encounter-diagnosis",
    )
    assert condition.subject.reference == "Patient/123"
    assert condition.encounter.reference == "Encounter/456"
    [confidence] = extension_values(
        condition, "https://icd10-coder.example/fhir/StructureDefinition/suggestion-confidence"
    )
    assert confidence.valueDecimal == Decimal("0.9123")
    spans = extension_values(condition, "https://icd10-coder.example/fhir/StructureDefinition/evidence")
    assert [[(sub.url, sub.valueInteger) for sub in span.extension] for span in spans] == [
        [("start", 25), ("end", 52)],
        [("start", 0), ("end", 7)],
    ]
    assert [(t.system, t.code) for t in condition.meta.tag] == [
        ("https://icd10-coder.example/fhir/model-version", "hybrid-2026.01")
    ]

    assert procedure.get_resource_type() == "Procedure"
    assert (procedure.code.coding[0].system, procedure.code.coding[0].code) == (PCS_SYSTEM, "0DTJ4ZZ")
    assert PCS_SYSTEM == "http://www.cms.gov/Medicare/Coding/ICD10"
    assert procedure.status == "completed"
    assert procedure.subject.reference == "Patient/123"
    assert procedure.encounter.reference == "Encounter/456"
    [confidence] = extension_values(
        procedure, "https://icd10-coder.example/fhir/StructureDefinition/suggestion-confidence"
    )
    assert confidence.valueDecimal == Decimal("0.4")
    assert not extension_values(procedure, "https://icd10-coder.example/fhir/StructureDefinition/evidence")


def test_bundle_is_plain_json() -> None:
    out = suggestion_bundle(response(), PATIENT, None)
    assert out["resourceType"] == "Bundle"
    condition = out["entry"][0]["resource"]
    assert condition["resourceType"] == "Condition"
    assert condition["extension"][0]["valueDecimal"] == 0.9123
    assert "encounter" not in condition


def test_unaccepted_code_is_provisional_and_optional_parts_are_left_out() -> None:
    codes = [{**response()["codes"][0], "accepted": False}]
    out = suggestion_bundle(
        response(codes=codes, note_id=None, needs_review=False, review_id=None), PATIENT, None
    )
    bundle = Bundle.model_validate(out)
    assert bundle.identifier is None
    assert [t.system for t in bundle.meta.tag] == ["https://icd10-coder.example/fhir/model-version"]
    condition = bundle.entry[0].resource
    assert condition.verificationStatus.coding[0].code == "provisional"
    assert condition.encounter is None


def test_needs_review_without_review_id_has_no_display() -> None:
    bundle = Bundle.model_validate(suggestion_bundle(response(review_id=None), PATIENT, None))
    review = [t for t in bundle.meta.tag if t.system == "https://icd10-coder.example/fhir/review"]
    assert [(t.code, t.display) for t in review] == [("needs-review", None)]


def test_no_codes_gives_an_empty_collection() -> None:
    bundle = Bundle.model_validate(suggestion_bundle(response(codes=[]), PATIENT, None))
    assert not bundle.entry


def test_missing_subject_raises() -> None:
    with pytest.raises(FhirError, match=r"^DocumentReference\.subject: required"):
        suggestion_bundle(response(), None, ENCOUNTER)


def test_invalid_reference_is_reported_as_fhir_error() -> None:
    with pytest.raises(FhirError, match=r"^Bundle\.entry\[0\]\.resource\.subject\."):
        suggestion_bundle(response(), {"reference": "Patient/1", "nonsense": True}, None)


def test_unknown_code_system_raises() -> None:
    codes = [{**response()["codes"][0], "system": "SNOMED-CT"}]
    with pytest.raises(ValueError, match="SNOMED-CT") as info:
        suggestion_bundle(response(codes=codes), PATIENT, None)
    assert not isinstance(info.value, FhirError)
