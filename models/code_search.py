"""Find ICD-10-CM and ICD-10-PCS codes by code prefix or by words of their description.

Built once over the whole catalogue (every ICD-10-CM category and code, every ICD-10-PCS code): a sorted
list of compact codes answers prefixes by bisection, and a sorted vocabulary of description words with
one posting array per word answers word prefixes ("diab mell typ 2"). A query is a few milliseconds.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

import numpy as np

from models.catalog import Catalog

SYSTEMS = ("ICD-10-CM", "ICD-10-PCS")
_WORD_RE = re.compile(r"[a-z0-9]+")
_CODE_LIKE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.]{0,7}$")


@dataclass(frozen=True)
class CodeHit:
    """One code that matches a search."""

    code: str
    system: str
    description: str
    billable: bool


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


class CodeSearch:
    """Code-prefix and description-word search over the catalogue."""

    def __init__(self, catalog: Catalog) -> None:
        cm_codes = catalog.cm.all_codes
        pcs_codes = sorted(catalog.pcs.descriptions)
        self.codes: list[str] = cm_codes + pcs_codes
        self.systems = np.array([0] * len(cm_codes) + [1] * len(pcs_codes), dtype=np.int8)
        self.descriptions: list[str] = [catalog.cm.description(c) for c in cm_codes] + [
            catalog.pcs.descriptions[c] for c in pcs_codes
        ]
        self.billable = np.array([catalog.cm.is_billable(c) for c in cm_codes] + [True] * len(pcs_codes))
        # Shorter descriptions rank first among equal matches: "Essential hypertension" before the
        # long specific codes that merely mention it.
        self._length = np.array([len(d) for d in self.descriptions], dtype=np.int32)
        compact = [c.replace(".", "") for c in self.codes]
        self._by_code = np.asarray(sorted(range(len(compact)), key=lambda i: (compact[i], i)), dtype=np.int32)
        self._sorted_codes = [compact[i] for i in self._by_code]
        self._code_length = np.array([len(c) for c in compact], dtype=np.int8)
        postings: dict[str, list[int]] = {}
        for idx, description in enumerate(self.descriptions):
            for word in set(_words(description)):
                postings.setdefault(word, []).append(idx)
        # The ICD-10-PCS index names procedures the tables do not ("Appendectomy" -> 0DBJ, 0DTJ): its words
        # find every code under the prefix they point to.
        for term, prefix in catalog.pcs.index_entries:
            if len(prefix) < 4:
                continue  # a section-wide pointer would flood the results
            under = self._by_code[self._prefix_range(prefix)]
            for word in set(_words(term)):
                postings.setdefault(word, []).extend(int(i) for i in under)
        self._vocabulary = sorted(postings)
        self._postings = [np.unique(np.asarray(postings[w], dtype=np.int32)) for w in self._vocabulary]

    def _prefix_range(self, prefix: str) -> slice:
        lo = bisect.bisect_left(self._sorted_codes, prefix)
        return slice(lo, bisect.bisect_left(self._sorted_codes, prefix + "\uffff", lo))

    def _code_prefix(self, query: str) -> np.ndarray:
        return self._by_code[self._prefix_range(query.upper().replace(".", ""))]

    def _word_prefix(self, word: str) -> np.ndarray:
        lo = bisect.bisect_left(self._vocabulary, word)
        hi = bisect.bisect_left(self._vocabulary, word + "\uffff")
        if hi - lo == 1:
            return self._postings[lo]
        if hi == lo:
            return np.empty(0, dtype=np.int32)
        return np.unique(np.concatenate(self._postings[lo:hi]))

    def search(self, query: str, system: str | None = None, limit: int = 20) -> list[CodeHit]:
        """Codes whose code starts with `query`, or whose description has words starting with each word
        of `query`; code matches first, then billable codes, then shorter descriptions.

        Args:
            query: "E11", "e11.9", "0DT", or words such as "diab mell type 2".
            system: "ICD-10-CM" or "ICD-10-PCS" to search one system only.
            limit: most hits to return.
        """
        query = query.strip()
        if not query or limit < 1:
            return []
        empty = np.empty(0, dtype=np.int32)
        by_code = self._code_prefix(query) if _CODE_LIKE_RE.match(query) else empty
        words = _words(query)
        by_words = self._word_prefix(words[0]) if words else empty
        for word in words[1:]:
            if by_words.size == 0:
                break
            by_words = np.intersect1d(by_words, self._word_prefix(word), assume_unique=True)
        if system is not None:
            wanted = SYSTEMS.index(system)
            by_code = by_code[self.systems[by_code] == wanted]
            by_words = by_words[self.systems[by_words] == wanted]
        by_words = np.setdiff1d(by_words, by_code, assume_unique=True)
        # Code matches in code order (parents before children); word matches billable first, then the
        # broader code (I10 before I15.0), then the shorter description.
        order = np.lexsort((self._length[by_words], self._code_length[by_words], ~self.billable[by_words]))
        ranked = list(by_code[:limit]) + list(by_words[order][: max(0, limit - len(by_code))])
        return [
            CodeHit(self.codes[i], SYSTEMS[self.systems[i]], self.descriptions[i], bool(self.billable[i]))
            for i in ranked
        ]
