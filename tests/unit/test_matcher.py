"""The zero-shot catalogue matcher over the real catalogue (built once per session, see conftest)."""

import numpy as np

from models.matcher import CatalogMatcher

DM_HTN = "type 2 diabetes mellitus without complications and essential hypertension"
KIDNEY = "Renal ultrasound showed a right kidney stone."


def _top(matcher: CatalogMatcher, text: str, k: int) -> list[str]:
    scores = matcher.match(text).scores
    return [matcher.codes[i] for i in np.argsort(-scores, kind="stable")[:k]]


def test_codes_cover_both_systems(matcher: CatalogMatcher) -> None:
    assert len(matcher.codes) == len(matcher.code_systems) == len(matcher.code_to_idx)
    assert matcher.code_systems[matcher.code_to_idx["E11.9"]] == "ICD-10-CM"
    assert matcher.code_systems[matcher.code_to_idx["BT41ZZZ"]] == "ICD-10-PCS"
    assert "E11" not in matcher.code_to_idx  # only billable CM codes


def test_diabetes_and_hypertension_in_top_3(matcher: CatalogMatcher) -> None:
    # Acceptance criterion of the product.
    top3 = _top(matcher, DM_HTN, 3)
    assert "E11.9" in top3 and "I10" in top3


def test_evidence_points_into_the_note(matcher: CatalogMatcher) -> None:
    result = matcher.match(DM_HTN)
    e119 = matcher.code_to_idx["E11.9"]
    seg = result.evidence([e119])[e119]
    assert seg is not None
    assert DM_HTN[seg.start : seg.end] == seg.text
    assert "diabetes" in seg.text


def test_evidence_picks_the_right_sentence(matcher: CatalogMatcher) -> None:
    note = "Patient with type 2 diabetes mellitus without complications.\nAlso has essential hypertension."
    dm, htn = matcher.code_to_idx["E11.9"], matcher.code_to_idx["I10"]
    _, (source,) = matcher.score([note])
    evidence = source.evidence([dm, htn])
    assert evidence[dm] is not None and evidence[htn] is not None
    assert note[evidence[htn].start : evidence[htn].end] == evidence[htn].text
    assert "hypertension" in evidence[htn].text and "diabetes" not in evidence[htn].text
    assert "diabetes" in evidence[dm].text and "hypertension" not in evidence[dm].text
    assert evidence[dm].start < evidence[htn].start


def test_kidney_stone_ultrasound_in_top_3(matcher: CatalogMatcher) -> None:
    top3 = _top(matcher, KIDNEY, 3)
    assert "N20.0" in top3 and "BT41ZZZ" in top3  # calculus of kidney; ultrasonography of right kidney


def test_scores_within_unit_interval(matcher: CatalogMatcher) -> None:
    for text in [DM_HTN, KIDNEY, "Laparoscopic appendectomy was performed.", "x"]:
        scores = matcher.match(text).scores
        assert scores.shape == (len(matcher.codes),)
        assert float(scores.min()) >= 0.0 and float(scores.max()) <= 1.0


def test_unrelated_sentence_scores_low(matcher: CatalogMatcher) -> None:
    result = matcher.match("The weather was sunny.")
    assert float(result.scores.max()) <= 0.5


def test_unmatched_code_has_no_evidence(matcher: CatalogMatcher) -> None:
    result = matcher.match(DM_HTN)
    assert result.evidence([matcher.code_to_idx["BT41ZZZ"]]) == {matcher.code_to_idx["BT41ZZZ"]: None}


def test_probs_shape(matcher: CatalogMatcher) -> None:
    probs = matcher.probs([DM_HTN, KIDNEY])
    assert probs.shape == (2, len(matcher.codes))
    assert np.array_equal(probs[0], matcher.match(DM_HTN).scores)
    assert probs[1, matcher.code_to_idx["N20.0"]] > probs[0, matcher.code_to_idx["N20.0"]]
    assert matcher.probs([]).shape == (0, len(matcher.codes))


def _top_system(matcher: CatalogMatcher, text: str, system: str, k: int) -> list[str]:
    scores = matcher.match(text).scores
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] > 0]
    return [matcher.codes[i] for i in order if matcher.code_systems[i] == system][:k]


def test_negated_and_family_mentions_give_no_code(matcher: CatalogMatcher) -> None:
    assert "R07.9" in _top_system(matcher, "Patient reports chest pain.", "ICD-10-CM", 5)
    assert "R07.9" not in _top_system(matcher, "Patient denies chest pain, reports cough.", "ICD-10-CM", 50)
    assert _top_system(matcher, "No fever.", "ICD-10-CM", 5) == []
    family = _top_system(matcher, "Her mother had type 2 diabetes mellitus.", "ICD-10-CM", 50)
    assert not any(code.startswith("E11") for code in family)
    # "without" reaches one word only: the hypertension after it is still coded.
    assert "I10" in _top_system(matcher, DM_HTN, "ICD-10-CM", 3)


def test_procedures_named_as_notes_name_them(matcher: CatalogMatcher) -> None:
    # Through the CMS PCS index: "Colonoscopy" is 0DJD8ZZ; an abdominal CT is the table row BW20 (CT of
    # abdomen), completed without contrast as none is stated.
    assert _top_system(matcher, "A colonoscopy was performed.", "ICD-10-PCS", 1) == ["0DJD8ZZ"]
    assert _top_system(matcher, "Abdominal CT showed a mass.", "ICD-10-PCS", 1) == ["BW20ZZZ"]
    # ECG: measurement of cardiac (electrical activity), 4A02 or one of its codes first.
    assert _top_system(matcher, "The ECG showed sinus rhythm.", "ICD-10-PCS", 1)[0].startswith("4A02")


def test_evidence_comes_with_the_scores_from_one_scoring(matcher: CatalogMatcher, monkeypatch) -> None:
    texts = ["Renal ultrasound showed a right kidney stone. Essential hypertension.", "Fever for two days."]
    calls = []
    real_match = CatalogMatcher.match
    monkeypatch.setattr(CatalogMatcher, "match", lambda self, t: calls.append(t) or real_match(self, t))
    probs, sources = matcher.score(texts)
    assert len(calls) == 2 and len(sources) == 2
    np.testing.assert_array_equal(probs, matcher.probs(texts))
    idx = int(np.argmax(probs[0]))
    calls.clear()
    segment = sources[0].evidence([idx])[idx]
    assert calls == []  # no second scoring of the note
    assert segment is not None and texts[0][segment.start : segment.end] == segment.text
    assert sources[1].evidence([idx]) == {idx: None}  # each note has its own evidence


def test_unspecified_code_before_other_specified(matcher: CatalogMatcher) -> None:
    # Guideline: the documented condition without more detail is coded to its unspecified code.
    top = _top(matcher, "Type 2 diabetes mellitus with diabetic polyneuropathy.", 5)
    assert top.index("E11.42") < top.index("E13.42") if "E13.42" in top else "E11.42" in top
    top = _top(matcher, "Chronic obstructive pulmonary disease.", 5)
    assert top[0] == "J44.9"


def test_injury_defaults_to_the_initial_encounter(matcher: CatalogMatcher) -> None:
    # Guideline: the 7th character A unless the note says the encounter is a later one or a sequela.
    assert _top(matcher, "Dx: R ankle sprain.", 1) == ["S93.401A"]
    assert _top(matcher, "Sequela of a right ankle sprain.", 1) == ["S93.401S"]


def test_personal_history_codes(matcher: CatalogMatcher) -> None:
    # Guideline: a condition of the patient's past is coded with its history code, a chronic one as itself.
    top = _top(matcher, "History of stroke, HTN.", 3)
    assert top[:2] == ["Z86.73", "I10"] and top.index("Z86.73") < top.index("I63.9")
    assert _top(matcher, "PMH: prior MI.", 1) == ["I25.2"]
    assert _top(matcher, "History of present illness: acute ischemic stroke.", 1) == ["I63.9"]
    no_history = _top_system(matcher, "No history of stroke.", "ICD-10-CM", 20)
    assert "Z86.73" not in no_history and "I63.9" not in no_history


def test_family_history_codes(matcher: CatalogMatcher) -> None:
    assert _top(matcher, "Father had colon cancer.", 1) == ["Z80.0"]
    family = _top_system(matcher, "FHx: DM2 in mother.", "ICD-10-CM", 20)
    assert family[0] == "Z83.3" and not any(code.startswith("E11") for code in family)


def test_conditions_named_as_notes_name_them(matcher: CatalogMatcher) -> None:
    # I10's inclusion term without its nonessential modifiers; cancer as the catalogue writes it.
    assert _top(matcher, "The patient has hypertension.", 1) == ["I10"]
    assert _top(matcher, "Prostate cancer.", 1) == ["C61"]


def test_hypertension_combinations(matcher: CatalogMatcher) -> None:
    # Guideline I.C.9.a: hypertension with CKD or heart failure is their combination code, not I10.
    top = _top(matcher, "66F w/ T2DM, HTN, CKD 3b (eGFR 38).", 4)
    assert "I12.9" in top and "N18.32" in top and "I10" not in top
    top = _top(matcher, "70M w/ HTN and chronic HFrEF (EF 30%).", 2)
    assert sorted(top) == ["I11.0", "I50.22"]
    assert "I13.2" in _top(matcher, "HTN, ESRD on HD, chronic diastolic heart failure.", 3)
    assert _top(matcher, "Essential hypertension.", 1) == ["I10"]


def test_status_codes(matcher: CatalogMatcher) -> None:
    assert {"Z79.4", "Z79.84"} <= set(_top(matcher, "On insulin glargine 20 u qhs + metformin 500 mg bid.", 2))
    assert "Z3A.10" in _top(matcher, "23F G1P0 at 10w2d by LMP w/ persistent N/V x5 d.", 3)


def test_a_word_said_twice_in_a_history_sentence_counts_once(matcher: CatalogMatcher) -> None:
    # "history of" makes every word of the sentence a history word as well as a plain one: a sentence
    # that also names the condition plainly must not count its words twice (scores above 1).
    text = "History of prostate cancer; the prostate cancer was treated."
    assert matcher.probs([text])[0].max() <= 1.0
    assert _top(matcher, text, 1) == ["Z85.46"]


def test_words_notes_use_for_the_catalogue_s_words(matcher: CatalogMatcher) -> None:
    # Lexicon 3: "hypoxic" is the catalogue's "with hypoxia", "septic shock" keeps its code.
    assert _top(matcher, "Acute hypoxic respiratory failure.", 1) == ["J96.01"]
    assert "R65.21" in _top(matcher, "Severe sepsis with septic shock.", 2)
    # An extremity is the catalogue's limb.
    assert _top(matcher, "Cellulitis of the right lower extremity.", 1) == ["L03.115"]
    # A part of the colon is the large intestine the catalogue names.
    assert _top(matcher, "Sigmoid diverticulitis.", 1) == ["K57.32"]


def test_symptoms_integral_to_a_diagnosis(matcher: CatalogMatcher) -> None:
    # Guideline I.B.5: cough and fever with pneumonia are the pneumonia's, not codes of their own; a
    # symptom the note states as its diagnosis is still coded.
    top = _top_system(matcher, "Cough and fever for 3 days. CXR: community acquired pneumonia.", "ICD-10-CM", 10)
    assert top[0] == "J18.9" and {"R05.9", "R50.9"} <= set(top[1:])
    assert _top(matcher, "HTN on lisinopril. Impression: chest pain, unspecified.", 1) == ["R07.9"]


def test_a_closing_without_clause_is_what_a_note_that_says_no_more_means(matcher: CatalogMatcher) -> None:
    # K57.32 is "diverticulitis of large intestine without perforation or abscess without bleeding".
    assert _top(matcher, "Diverticulitis of the large intestine.", 1) == ["K57.32"]
    assert _top(matcher, "Diverticulitis of the large intestine with perforation and abscess.", 1) == ["K57.20"]
    # A "without ..." clause before the site goes, the site stays: the scalp's laceration, not every site's.
    top = _top_system(matcher, "Dx: scalp laceration.", "ICD-10-CM", 2)
    assert top[0] == "S01.01XA" and matcher.match("Dx: scalp laceration.").scores[matcher.code_to_idx["S11.011A"]] == 0


def test_a_cue_that_closes_its_clause_negates_what_comes_before(matcher: CatalogMatcher) -> None:
    # "MI r/o", "stress test neg": what is ruled out or tested negative is not coded (outpatient, IV.H).
    text = "Impression: chest pain, unspecified; MI r/o. Exercise stress test neg."
    scores = matcher.match(text).scores
    assert _top(matcher, text, 1) == ["R07.9"]
    assert scores[matcher.code_to_idx["I21.9"]] == 0 and scores[matcher.code_to_idx["Z73.3"]] == 0
    assert matcher.match("Acute MI.").scores[matcher.code_to_idx["I21.9"]] > 0.5
    assert not any(code.startswith("F17") for code in _top_system(matcher, "Never smoker.", "ICD-10-CM", 10))


def test_diabetes_with_its_complications(matcher: CatalogMatcher) -> None:
    # Guideline I.A.15: the conditions under "with" in the index's diabetes entry are presumed linked.
    text = "59M T2DM on metformin. Numbness both feet: polyneuropathy."
    scores = matcher.match(text).scores
    assert "E11.42" in _top_system(matcher, text, "ICD-10-CM", 2)
    assert scores[matcher.code_to_idx["E11.42"]] > max(scores[matcher.code_to_idx[c]] for c in ("G62.9", "E11.9"))
    # CKD keeps its own code for the stage ("use additional code").
    assert set(_top_system(matcher, "T2DM, CKD stage 4.", "ICD-10-CM", 2)) == {"E11.22", "N18.4"}
    # A complication alone is not diabetes.
    assert "E11.42" not in _top_system(matcher, "Polyneuropathy.", "ICD-10-CM", 10)


def test_coronary_atherosclerosis_with_angina(matcher: CatalogMatcher) -> None:
    # Guideline I.C.9.b: CAD with angina is one code, I25.11-; not I25.10 beside I20.0.
    text = "Indication: unstable angina. Findings: severe 3-vessel CAD."
    top = _top_system(matcher, text, "ICD-10-CM", 3)
    scores = matcher.match(text).scores
    assert top[0] == "I25.110"
    assert scores[matcher.code_to_idx["I25.110"]] > max(scores[matcher.code_to_idx[c]] for c in ("I25.10", "I20.0"))


def test_a_symptom_a_diagnosis_statement_names_is_coded_in_full(matcher: CatalogMatcher) -> None:
    # The statement names it, even where another sentence matches it as well and comes first.
    text = "RLQ pain x1 d. Mesenteric adenitis on CT. Dx: RLQ abdominal pain."
    assert "R10.31" in _top_system(matcher, text, "ICD-10-CM", 2)


def test_a_number_belongs_to_its_type_and_stage(matcher: CatalogMatcher) -> None:
    # Lexicon 4: the "1" of "1 ppd" is not type 1 diabetes; "type II" is type 2.
    text = "61M w/ T2DM on metformin, current smoker (1 ppd cigarettes)."
    scores = matcher.match(text).scores
    assert scores[matcher.code_to_idx["E10.9"]] < 0.5 * scores[matcher.code_to_idx["E11.9"]]
    assert _top_system(matcher, "Type II diabetes mellitus.", "ICD-10-CM", 1) == ["E11.9"]
    # The index's words for an adjective: calculous cholecystitis is cholecystitis with calculus.
    assert "K80.00" in _top_system(matcher, "Acute calculous cholecystitis.", "ICD-10-CM", 2)


def test_names_as_a_note_that_leaves_out_the_default_says_them(matcher: CatalogMatcher) -> None:
    # Diabetes of no stated type is type 2 (I.C.4.a.2), not "other specified" diabetes.
    assert _top_system(matcher, "Diabetes mellitus with diabetic chronic kidney disease.", "ICD-10-CM", 1) == ["E11.22"]
    # "Unspecified as acute or chronic" is what a note that says no more means.
    assert _top_system(matcher, "Impression: gastric ulcer.", "ICD-10-CM", 1) == ["K25.9"]
    # A "without ..." clause before the laterality.
    assert _top_system(matcher, "Dx: acute suppurative otitis media, R ear.", "ICD-10-CM", 1) == ["H66.001"]
    # Version 2: an ulcer neither acute nor chronic is "chronic or unspecified", osteoarthritis is primary
    # and of one side unilateral.
    assert _top_system(matcher, "Dx: bleeding duodenal ulcer.", "ICD-10-CM", 1) == ["K26.4"]
    assert _top_system(matcher, "Preop dx: osteoarthritis, R knee.", "ICD-10-CM", 1) == ["M17.11"]


def test_an_unspecified_site_is_a_site_and_an_unstated_part_is_left_out(matcher: CatalogMatcher) -> None:
    # "Puncture wound without foreign body, unspecified hip" is no name for a puncture wound of the hand.
    text = "Dx: puncture wound R hand."
    scores = matcher.match(text).scores
    assert _top_system(matcher, text, "ICD-10-CM", 1) == ["S61.431A"]
    assert scores[matcher.code_to_idx["S71.039A"]] == 0
    # "Sprain of unspecified ligament of right ankle" is what "R ankle sprain" means.
    assert _top_system(matcher, "Dx: R ankle sprain.", "ICD-10-CM", 1) == ["S93.401A"]


def test_a_name_inside_a_fuller_one_of_its_category_or_an_excludes1_partner_gives_way(
        matcher: CatalogMatcher) -> None:
    def ratio(text: str, inside: str, fuller: str) -> float:
        scores = matcher.match(text).scores
        return float(scores[matcher.code_to_idx[inside]] / scores[matcher.code_to_idx[fuller]])

    # K81.0 (acute cholecystitis) excludes cholecystitis with cholelithiasis (K80.-); E61.1 (iron
    # deficiency) excludes iron deficiency anemia (D50.-); J21.9 and J21.0 are siblings.
    assert ratio("Dx: acute calculous cholecystitis.", "K81.0", "K80.00") < 0.5
    assert ratio("Iron deficiency anemia.", "E61.1", "D50.9") < 0.5
    assert ratio("Dx: acute bronchiolitis due to RSV.", "J21.9", "J21.0") < 0.5
    # Only beside a fuller name the sentence matched in full: "bilateral" is not said, so K40.00 takes nothing.
    assert _top_system(matcher, "Dx: incarcerated R inguinal hernia, no gangrene.", "ICD-10-CM", 1) == ["K40.30"]


def test_status_after_a_procedure_and_on_dialysis(matcher: CatalogMatcher) -> None:
    text = "CAD s/p CABG x3 (2019). ESRD on HD MWF. Hx breast cancer s/p L mastectomy."
    top = _top_system(matcher, text, "ICD-10-CM", 10)
    assert {"Z95.1", "Z99.2", "Z90.12"} <= set(top)
    # A procedure done now is no status.
    assert "Z96.651" not in _top_system(matcher, "Procedure: R total knee arthroplasty.", "ICD-10-CM", 10)


def test_external_causes_only_beside_an_injury(matcher: CatalogMatcher) -> None:
    # The "activity" of an ECG's expansion is no external cause without an injury.
    scores = matcher.match("ECG NSR. Dx: orthostatic hypotension.").scores
    assert scores[matcher.code_to_idx["Y93.9"]] < 0.5 * scores[matcher.code_to_idx["I95.1"]]


def test_hemiplegia_of_the_dominant_side_by_handedness(matcher: CatalogMatcher) -> None:
    # I.C.6.a: the right side is dominant unless the note says the patient is left-handed.
    assert _top_system(matcher, "Deficits: R hemiparesis.", "ICD-10-CM", 1) == ["G81.91"]
    assert _top_system(matcher, "72F, left-handed. Deficits: R hemiparesis.", "ICD-10-CM", 1) == ["G81.93"]
    assert _top_system(matcher, "Deficits: L hemiparesis.", "ICD-10-CM", 1) == ["G81.94"]


def test_obstetric_names_with_the_trimester_of_the_gestational_age(matcher: CatalogMatcher) -> None:
    text = "OB visit. G1P0 at 34w1d. Dx: preeclampsia without severe features."
    assert _top_system(matcher, text, "ICD-10-CM", 1) == ["O14.03"]
    # "Maternal care for breech presentation, not applicable or unspecified" (a single fetus).
    assert "O32.1XX0" in _top_system(matcher, "G1P0 at 38w6d. Dx: breech presentation.", "ICD-10-CM", 3)


def test_a_breast_is_of_the_patients_sex(matcher: CatalogMatcher) -> None:
    # "58F" makes a breast cancer the right female breast's; "a 62-year-old man" the male breast's.
    assert _top_system(matcher, "58F w/ R breast cancer.", "ICD-10-CM", 1) == ["C50.911"]
    assert _top_system(matcher, "A 62-year-old man with R breast cancer.", "ICD-10-CM", 1) == ["C50.921"]
    # A temperature or a catheter size is no sex.
    scores = matcher.match("T 101.2 F. Placed 14F Foley. R breast cancer.").scores
    assert scores[matcher.code_to_idx["C50.911"]] > scores[matcher.code_to_idx["C50.921"]] > 0


def test_the_seventh_character_from_the_notes_encounter_words(matcher: CatalogMatcher) -> None:
    # I.C.19.a: the note's words anywhere make the encounter; with none, an injury's is the initial one.
    text = "Ortho fracture clinic. 4 wk after closed reduction of R Colles' fx.\nXR: healing in good alignment."
    assert _top_system(matcher, text, "ICD-10-CM", 1) == ["S52.531D"]
    assert _top_system(matcher, "ED. R Colles' fx after a fall today.", "ICD-10-CM", 1) == ["S52.531A"]
    text = "Traumatic arthritis of R ankle, late effect of displaced bimalleolar fx of right lower leg."
    assert "S82.841S" in _top_system(matcher, text, "ICD-10-CM", 3)


def test_other_pairs_the_index_lists_under_with(matcher: CatalogMatcher) -> None:
    # Hydronephrosis with a ureteral stone is N13.2, which N20 excludes.
    text = "CT: 6 mm stone L proximal ureter w/ moderate L hydronephrosis."
    scores = matcher.match(text).scores
    assert _top_system(matcher, text, "ICD-10-CM", 1) == ["N13.2"]
    assert scores[matcher.code_to_idx["N20.1"]] < scores[matcher.code_to_idx["N13.2"]]
    # Alcohol dependence (a moderate use disorder) with intoxication, stated in different sentences.
    text = "Hx alcohol use disorder, moderate. Dx: acute alcohol intoxication."
    assert _top_system(matcher, text, "ICD-10-CM", 1) == ["F10.220"]
    # COPD with pneumonia: J44.0 before J44.9, and the pneumonia's own code too.
    text = "68M w/ COPD. CXR: RLL pneumonia."
    scores = matcher.match(text).scores
    assert set(_top_system(matcher, text, "ICD-10-CM", 2)) == {"J44.0", "J18.9"}
    assert scores[matcher.code_to_idx["J44.9"]] < scores[matcher.code_to_idx["J44.0"]]


def test_a_stroke_is_a_cerebral_infarction_of_the_artery_named(matcher: CatalogMatcher) -> None:
    # The index: "Stroke - see Infarct, brain"; "due to unspecified occlusion or stenosis" is its default.
    assert _top_system(matcher, "Acute ischemic stroke, L MCA territory.", "ICD-10-CM", 1) == ["I63.512"]
    assert _top_system(matcher, "MRI: acute L MCA infarct, cardioembolic.", "ICD-10-CM", 1) == ["I63.412"]
    assert "Z86.73" in _top_system(matcher, "History of stroke, no residual deficits.", "ICD-10-CM", 2)


def test_index_readings_of_bites_vaccine_lists_and_thrombosis(matcher: CatalogMatcher) -> None:
    # An animal's bite is an open bite (the index: "Bite - see Wound, open"): a full match of S61.451A.
    scores = matcher.match("1.5 cm puncture wound dorsal R hand. Dx: dog bite R hand.").scores
    assert scores[matcher.code_to_idx["S61.451A"]] > 0.8
    # The vaccines a list names are no diagnoses.
    text = "4yo well-child check. Vaccines given today: DTaP, IPV, MMR, varicella."
    assert "B01.9" not in _top_system(matcher, text, "ICD-10-CM", 3) and "Z23" in _top_system(matcher, text, "ICD-10-CM", 3)
    # Bronchiolitis is acute (the index's "Bronchiolitis (acute)"): RSV bronchiolitis is J21.0.
    assert _top_system(matcher, "Admitted for RSV bronchiolitis.", "ICD-10-CM", 1) == ["J21.0"]
    # "Embolism and thrombosis" is either: a DVT of the popliteal vein is I82.43-.
    assert _top_system(matcher, "LE duplex: acute DVT L popliteal vein.", "ICD-10-CM", 1) == ["I82.432"]


def test_body_mass_index_beside_a_weight_diagnosis_and_morbid_obesity(matcher: CatalogMatcher) -> None:
    # I.C.21.c.3: Z68 with the weight diagnosis it belongs to; the index: "Obesity, morbid E66.01".
    assert {"E66.01", "Z68.41"} <= set(_top(matcher, "59M w/ HTN, morbid obesity (BMI 42.3), OSA on CPAP.", 3))
    scores = matcher.match("BMI 24.1, no acute distress.").scores
    assert all(scores[matcher.code_to_idx[c]] == 0 for c in ("Z68.24", "Z68.1"))  # no weight diagnosis


def test_no_without_complications_code_beside_a_complication(matcher: CatalogMatcher) -> None:
    scores = matcher.match("58F w/ DM2 on metformin. Hypoglycemia to 52 this AM.").scores
    index = matcher.code_to_idx
    assert scores[index["E11.649"]] > 0.6 and scores[index["E11.9"]] < 0.5 * scores[index["E11.649"]]
    assert _top(matcher, "Type 2 diabetes mellitus, diet controlled.", 1) == ["E11.9"]


def test_a_pregnant_patients_conditions_complicate_the_pregnancy(matcher: CatalogMatcher) -> None:
    # I.C.15.a.1 and a.3: chapter 15 first, with the trimester of the gestational age.
    top = _top(matcher, "29F G2P1 at 22w2d w/ acute cystitis.", 3)
    assert top.index("O23.12") < top.index("N30.00")  # O23 includes the infection
    assert {"O99.282", "E03.9"} <= set(_top(matcher, "33F G1P0 at 24w on levothyroxine for hypothyroidism.", 3))
    # A delivery's conditions complicate childbirth, not the pregnancy.
    delivered = _top(matcher, "29F G2P1 at 39w1d, NSVD of a liveborn male infant. Acute cystitis treated.", 6)
    assert not any(c.startswith("O23") for c in delivered)


def test_packs_a_day_are_cigarettes_and_anaphylaxis_is_an_anaphylactic_reaction(matcher: CatalogMatcher) -> None:
    assert _top(matcher, "Smoker, 1 ppd.", 1) == ["F17.210"]
    assert _top(matcher, "Anaphylaxis after eating peanuts.", 1) == ["T78.01XA"]


def test_common_inpatient_procedures_as_notes_write_them(matcher: CatalogMatcher) -> None:
    def best_procedure(text: str) -> str:
        scores = matcher.match(text).scores
        return matcher.codes[max((i for i in scores.nonzero()[0] if matcher.code_systems[i] == "ICD-10-PCS"),
                                 key=lambda i: scores[i])]

    assert best_procedure("Therapeutic paracentesis at bedside, 3.8 L removed.") == "0W9G3ZZ"
    assert best_procedure("Intubated in the ICU for hypercapnic failure.") == "0BH17EZ"
    assert best_procedure("NSVD of a viable female infant.") == "10E0XZZ"
    assert best_procedure("R IJ triple-lumen CVC placed, tip in SVC.") == "02HV33Z"
