"""Status codes stated in passing: long-term drug therapy (Z79), weeks of gestation (Z3A), delivery outcome (Z37)."""

import pytest

from models.status import (
    MENTIONED,
    NEW,
    ONGOING,
    body_mass_index,
    delivery_outcome,
    drug_therapy,
    gestation,
    patient_age,
)


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("On insulin glargine 20 u qhs + metformin 500 mg bid.", {"Z79.4": ONGOING, "Z79.84": ONGOING}),
        ("Meds: metformin 1000 mg bid, semaglutide SC weekly.", {"Z79.84": ONGOING, "Z79.85": ONGOING}),
        ("Takes oral semaglutide.", {"Z79.84": ONGOING}),
        ("Persistent AFib on apixaban.", {"Z79.01": ONGOING}),
        ("Prednisone, nebs, azithromycin.", {"Z79.52": MENTIONED}),
        ("Heparin gtt and apixaban started.", {"Z79.01": NEW}),
        ("No aspirin, allergic to naproxen.", {}),
        ("Continue carvedilol and spironolactone.", {}),  # no Z79 class of their own
    ],
)
def test_drug_therapy(sentence: str, expected: dict[str, float]) -> None:
    assert drug_therapy(sentence) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("23F G1P0 at 10w2d by LMP w/ persistent N/V.", "Z3A.10"),
        ("G1P0 at 34w1d. Plan delivery at 37 wk.", "Z3A.34"),  # the stated age, not a plan
        ("Prenatal visit, 30 weeks gestation.", "Z3A.30"),
        ("IUP at 6 wks.", "Z3A.01"),
        ("Pregnant, at 43 weeks.", "Z3A.49"),
        ("Pregnant, follow-up in 2 days.", None),
        ("Cough for 2 weeks.", None),  # not about a pregnancy
    ],
)
def test_gestation(text: str, expected: str | None) -> None:
    found = gestation(text)
    assert (found[0] if found else None) == expected
    if found:
        assert text[found[1]].isdigit() or text[found[1]:found[1] + 2].lower() in {"at", "ga"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("G1P0 at 39w2d, spontaneous vaginal delivery of single live female infant.", "Z37.0"),
        ("G2P1 at 39w0d. Repeat cesarean section. Findings: viable male infant, Apgars 9/9.", "Z37.0"),
        ("G3P2 at 36w. Cesarean delivery of di-di twins, both viable.", "Z37.2"),
        ("G1P0 at 30w, IUFD. Induction and vaginal delivery of a stillborn male.", "Z37.1"),
        ("G1P0 at 28w3d, routine prenatal visit. Plan delivery at 39 wk.", None),  # no delivery yet
        ("Discharge summary. Delivered home w/ live-in caregiver.", None),  # not about a pregnancy
    ],
)
def test_delivery_outcome(text: str, expected: str | None) -> None:
    found = delivery_outcome(text)
    assert (found[0] if found else None) == expected


def test_the_body_mass_index_by_range_or_percentile_beside_a_weight_diagnosis() -> None:
    assert body_mass_index("59M w/ morbid obesity (BMI 42.3)") == ("Z68.41", 23)
    assert body_mass_index("Obesity, BMI 34: nutrition referral.")[0] == "Z68.34"
    assert body_mass_index("45F obese, BMI of 72.")[0] == "Z68.45"
    assert body_mass_index("Malnutrition, BMI 17.8.")[0] == "Z68.1"
    assert body_mass_index("9yo M w/ obesity, BMI 97th percentile for age.")[0] == "Z68.54"
    assert body_mass_index("BMI 31.2. Lungs clear.") is None  # no weight diagnosis, no Z68
    assert body_mass_index("16yo F obese, BMI 31.") is None  # a child's bare value gives no percentile
    assert patient_age("72 yo M w/ CHF") == 72 and patient_age("Pt seen today.") is None
