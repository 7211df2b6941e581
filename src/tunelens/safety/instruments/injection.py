"""Prompt injection in user turns, system/developer/assistant turns and retrieved documents.

A text is read through several *views*, and its score is the highest of them:

- the text itself, normalised (NFKC, zero-width characters removed, Latin letters restored in words that mix
  them with Cyrillic or Greek look-alikes, leetspeak letters restored);
- hidden parts: HTML comments, hidden elements, markdown comments and link titles;
- base64 runs decoded to text (an encoded instruction is decoded and rescanned);
- for longer texts, windows of two consecutive sentences (an instruction inside a document).

Each view is scored by a TF-IDF (char_wb 2-5 + word 1-2) logistic regression trained by
``tunelens safety train-injection`` (:mod:`tunelens.safety.train_injection`). Phrase rules
("ignore all previous instructions", their German, French, Spanish and Chinese forms) raise a view to
``RULE_SCORE``; they match instructions, never a bare word such as a name ("Dan") or "jailbreak".
A view of fewer than ``SHORT_WORDS`` words has its classifier score scaled down in proportion (a
greeting such as "Say hi" is too short for its few n-grams to be evidence; rules still apply).
Validation figures: ``cards/injection.json``.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from pathlib import Path
from typing import Any

from tunelens.errors import TunelensError
from tunelens.safety.instruments._base import Example, Instrument, Verdict, register

ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "injection.joblib"
DEFAULT_THRESHOLD = 0.5
RULE_SCORE = 0.95

# (name, pattern): instructions to drop earlier instructions, in a few languages. Case-insensitive.
RULES: list[tuple[str, str]] = [
    ("ignore_instructions_en", r"\b(ignore|disregard|forget|override|set aside)\b[^.!?\n]{0,40}\b"
     r"(previous|prior|above|preceding|earlier|original|all)\b[^.!?\n]{0,30}\b"
     r"(instructions?|prompts?|rules|directives|guidelines|orders|context)\b"),
    ("forget_everything_en", r"\bforget (about )?everything (you were told|above|before)\b"),
    ("reveal_prompt_en", r"\b(reveal|print|output|repeat|show)\b[^.!?\n]{0,20}\b(your|the) (system|initial|hidden) "
     r"(prompt|instructions)\b"),
    ("persona_override_en", r"\b(you are now|from now on,? you are)\b[^.!?\n]{0,40}\b(no|without) "
     r"(rules|restrictions|filters|limits|guidelines)\b|\bdo anything now\b[^.!?\n]{0,40}\b(rules|restrictions)\b"),
    ("ignore_instructions_de", r"\b(ignorier\w*|vergiss|vergessen sie|missachte\w*)\b[^.!?\n]{0,40}\b"
     r"(alle[sn]?|vorherige\w*|bisherige\w*|obige\w*|vorangehende\w*)\b[^.!?\n]{0,30}"
     r"(anweisungen|aufgaben|aufträge|befehle|regeln|vorgaben|gesagt)"),
    ("forget_everything_de", r"\bvergiss (jetzt |nun )?alles(,| was| davor| bisher| vorher)"),
    ("ignore_instructions_es", r"\b(olvid[ae]|ignora)\w*\b[^.!?\n]{0,30}\b(instrucciones|reglas)\b"),
    ("ignore_instructions_fr", r"\b(ignore[rz]?|oublie[rz]?)\b[^.!?\n]{0,30}(toutes les instructions|instructions "
     r"précédentes|les règles|tes règles|les consignes|tes consignes|tout ce qu'on t'a dit)"),
    ("ignore_instructions_zh", r"(忽略|忽视|无视|忘记|忘掉|不要再遵守)[^。！？\n]{0,12}(之前|以上|先前|上面|所有|系统)[^。！？\n]{0,12}"
     r"(指令|指示|规则|设定|提示)"),
]
_RULES = [(name, re.compile(pat, re.IGNORECASE)) for name, pat in RULES]

_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i", "|": "l"})
_LEET_WORD = re.compile(r"\S*[A-Za-z]\S*")
_HIDDEN = [
    re.compile(r"<!--(.*?)(?:-->|$)", re.DOTALL),
    re.compile(r"<(\w+)[^>]*(?:hidden|display\s*:\s*none|visibility\s*:\s*hidden)[^>]*>(.*?)</\1>", re.DOTALL | re.IGNORECASE),
    re.compile(r"^\s*\[//\]:\s*#\s*[(\"'](.*?)[)\"']\s*$", re.MULTILINE),
    re.compile(r"\[[^\]]*\]\([^)\s]*\s+\"([^\"]+)\"\)"),
]
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4}){4,}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+|\n+")
SHORT_WORDS = 4  # a view of fewer words is scored p * words / SHORT_WORDS: a few n-grams are weak evidence
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


def _words(text: str) -> int:
    return len(text.split()) + len(_CJK.findall(text)) // 2


WINDOW_MIN_CHARS = 80  # texts longer than this (and of 3+ sentences) are also read two sentences at a time
MAX_WINDOWS = 200


def deleet(text: str) -> str:
    """Letters restored in words that mix letters with digits or symbols ("1gn0re" -> "ignore")."""
    def fix(m: re.Match) -> str:
        w = m.group(0)
        core = w.rstrip(".,;:?")
        if any(c.isdigit() or c in "@$|" for c in core) and sum(c.isalpha() for c in core) >= 2:
            return core.translate(_LEET) + w[len(core):]
        return w
    return _LEET_WORD.sub(fix, text)


# Cyrillic and Greek letters that look like Latin ones ("Уоu аrе nоw in dеvеlореr mоdе" is mostly Cyrillic).
_CONFUSABLE = str.maketrans(
    "аеорсухіјѕԁԛԝһӏАВЕКМНОРСТХУЅІЈαεικνορτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdqwhlABEKMHOPCTXYSIJaeikvoptuxABEZHIKMNOPTYX")
_LATIN = re.compile(r"[A-Za-z]")
_CYRILLIC_GREEK = re.compile(r"[\u0370-\u03ff\u0400-\u052f]")


def unconfuse(text: str) -> str:
    """Latin letters restored in words that mix Latin with Cyrillic or Greek look-alikes ("dеvеlореr" ->
    "developer"); words written wholly in Cyrillic or Greek (Russian, Greek text) are left as they are."""
    def fix(m: re.Match) -> str:
        w = m.group(0)
        return w.translate(_CONFUSABLE) if _LATIN.search(w) and _CYRILLIC_GREEK.search(w) else w
    return re.sub(r"\S+", fix, text)


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text if isinstance(text, str) else "")
    return deleet(unconfuse(_ZERO_WIDTH.sub("", text)))


def _decoded_base64(text: str) -> list[str]:
    out = []
    for m in _BASE64.finditer(text):
        run = m.group(0)
        if len(run) < 16:
            continue
        try:
            raw = base64.b64decode(run + "=" * (-len(run) % 4), validate=True)
            dec = raw.decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            continue
        if sum(c.isalpha() or c.isspace() for c in dec) >= 0.8 * len(dec) and " " in dec.strip():
            out.append(dec)
    return out


def _sentences(norm: str) -> list[str] | None:
    """The sentences a normalised text is read in two at a time, or None when it gets no windows."""
    if len(norm) <= WINDOW_MIN_CHARS:
        return None
    sents = [s.strip() for s in _SENTENCE.split(norm) if s.strip()]
    return sents if len(sents) > 2 else None


def views(text: str) -> list[tuple[str, str]]:
    """(view name, text) pairs the detector scores; see the module docstring."""
    norm = normalise(text)
    return _views(text, norm, _sentences(norm), windows=True)


def _views(text: str, norm: str, sents: list[str] | None, windows: bool) -> list[tuple[str, str]]:
    """The views of ``text`` (normalised: ``norm``, its sentences: ``sents``). ``windows=False`` leaves
    out the text itself and its two-sentence windows when it has them (the fast path scores those from
    its sentences)."""
    out = [("text", norm)] if windows or sents is None else []
    for rx in _HIDDEN:
        for m in rx.finditer(norm):
            part = m.group(m.lastindex or 0).strip()
            if part:
                out.append(("hidden", part))
    for dec in _decoded_base64(text):
        out.append(("base64", normalise(dec)))
    if windows and sents is not None:
        for i in range(min(len(sents) - 1, MAX_WINDOWS)):
            out.append(("window", sents[i] + " " + sents[i + 1]))
    return out


class _SentenceScorer:
    """Scores a long text and its two-sentence windows from its sentences' n-gram counts, each sentence
    counted once, where the pipeline would count every sentence three times (in the text and in two
    windows): the views' cost, most of the detector's time, is about a third.

    Why our own: sklearn's TF-IDF has no way to reuse counts across overlapping documents. It is exact
    for the artifact's pipeline (a FeatureUnion of TfidfVectorizers over a logistic regression):
    ``char_wb`` n-grams stay inside words, and the words of "a b" are those of a then of b, so counts
    add; word n-grams add too, plus the bigram across each sentence boundary, added here. Then the
    vectorizers' own sublinear tf, idf and l2 norm, and the classifier's own coefficients. Any other
    pipeline (or one of these options set otherwise) makes ``build`` return None: the plain path runs.
    """

    def __init__(self, vectorizers: list[Any], clf: Any):
        self.vectorizers, self.clf = vectorizers, clf
        self.tokenizers = [(v.build_preprocessor(), v.build_tokenizer()) if v.analyzer == "word" else None
                           for v in vectorizers]

    @classmethod
    def build(cls, pipeline: Any) -> _SentenceScorer | None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion

        steps = getattr(pipeline, "named_steps", {})
        union, clf = steps.get("features"), steps.get("clf")
        if not isinstance(union, FeatureUnion) or not isinstance(clf, LogisticRegression) or union.transformer_weights:
            return None
        vecs = [t for _, t in union.transformer_list]
        for v in vecs:
            if not isinstance(v, TfidfVectorizer) or not hasattr(v, "idf_") or v.norm != "l2" or not v.use_idf \
                    or v.binary or callable(v.analyzer) or v.stop_words is not None or v.preprocessor is not None:
                return None
            if v.analyzer == "word" and (v.tokenizer is not None or v.ngram_range[1] > 2):
                return None
            if v.analyzer not in ("word", "char_wb"):
                return None
        if len(clf.classes_) != 2:
            return None
        return cls(vecs, clf)

    def score(self, sentence_lists: list[list[str]]) -> list[tuple[float, list[float]]]:
        """Per text (given as its sentences): (P(injection) of the whole text, of each window)."""
        import numpy as np
        from scipy import sparse
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import normalize

        flat = [s for sents in sentence_lists for s in sents]
        # One row per view: the text (every sentence), then its windows (sentences i and i + 1).
        rows, cols, bounds, starts = [], [], [], []
        row = offset = 0
        for sents in sentence_lists:
            n = len(sents)
            starts.append(row)
            rows += [row] * n
            cols += range(offset, offset + n)
            bounds += [(row, offset + j) for j in range(n - 1)]  # the text holds every boundary
            row += 1
            for j in range(min(n - 1, MAX_WINDOWS)):
                rows += [row, row]
                cols += [offset + j, offset + j + 1]
                bounds.append((row, offset + j))
                row += 1
            offset += n
        agg = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(row, len(flat)))
        blocks = []
        for vec, tok in zip(self.vectorizers, self.tokenizers):
            counts = agg @ CountVectorizer.transform(vec, flat)
            if tok is not None and vec.ngram_range[1] == 2 and bounds:
                counts = counts + self._boundary_bigrams(vec, tok, flat, bounds, counts.shape)
            counts = counts.tocsr()
            counts.sum_duplicates()
            if vec.sublinear_tf:
                np.log(counts.data, counts.data)
                counts.data += 1
            blocks.append(normalize(counts @ sparse.diags(vec.idf_), norm="l2", copy=False))
        probs = self.clf.predict_proba(sparse.hstack(blocks).tocsr())[:, 1]  # as the plain path reads it
        out = []
        for k, sents in enumerate(sentence_lists):
            first = starts[k]
            out.append((float(probs[first]), [float(p) for p in probs[first + 1: first + 1 + min(len(sents) - 1, MAX_WINDOWS)]]))
        return out

    @staticmethod
    def _boundary_bigrams(vec, tok, flat, bounds, shape):
        import numpy as np
        from scipy import sparse

        pre, split = tok
        tokens = [split(pre(s)) for s in flat]
        rows, cols = [], []
        for row, j in bounds:
            left, right = tokens[j], tokens[j + 1]
            if left and right:
                col = vec.vocabulary_.get(f"{left[-1]} {right[0]}")
                if col is not None:
                    rows.append(row)
                    cols.append(col)
        return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)


def rule_hits(text: str) -> list[str]:
    """Names of the phrase rules that match ``text`` (normalised first)."""
    norm = normalise(text)
    return [name for name, rx in _RULES if rx.search(norm)]


def load_artifact(path: str | Path | None = None) -> dict[str, Any]:
    import joblib

    artifact = Path(path) if path else ARTIFACT
    if not artifact.is_file():
        raise TunelensError(f"injection classifier not found at {artifact}; run `tunelens safety train-injection`")
    try:
        payload = joblib.load(artifact)
    except Exception as exc:  # unpickling across sklearn versions can fail in many ways
        raise TunelensError(f"could not load injection classifier {artifact} ({exc}); retrain it with "
                            "`tunelens safety train-injection`") from None
    if not isinstance(payload, dict) or "pipeline" not in payload:
        raise TunelensError(f"{artifact} is not a tunelens injection artifact (no 'pipeline' entry)")
    return payload


@register
class InjectionInstrument(Instrument):
    """P(injection) of a text: the highest score over its views; ``detail`` names the view and rules."""

    task = "injection"
    name = "injection"
    labels = ("injection", "benign")
    positive = ("injection",)
    needs_prompt = False

    def __init__(self, path: str | Path | None = None, threshold: float | None = None):
        payload = load_artifact(path)
        self.pipeline = payload["pipeline"]
        self.threshold = float(payload.get("threshold", DEFAULT_THRESHOLD) if threshold is None else threshold)
        self.info = payload.get("report") or payload.get("info") or {}
        self._fast = _SentenceScorer.build(self.pipeline)

    @classmethod
    def from_pipeline(cls, pipeline, threshold: float = DEFAULT_THRESHOLD) -> InjectionInstrument:
        """An instrument over a fitted pipeline in memory (training and validation)."""
        inst = cls.__new__(cls)
        inst.pipeline, inst.threshold, inst.info = pipeline, float(threshold), {}
        inst._fast = _SentenceScorer.build(pipeline)
        return inst

    def score_texts(self, texts: list[str]) -> list[dict[str, Any]]:
        """Per text: ``score``, ``model_score`` (classifier, best view), ``view`` and ``rules``."""
        if isinstance(texts, str):
            raise TypeError("score_texts() takes a list of texts, not a single string")
        fast = getattr(self, "_fast", None)
        # Per text, its views in a fixed order (text, hidden parts, base64, windows) with their
        # probabilities: ties keep the first view, so the order is part of the result.
        per_text: list[list[list[Any]]] = []
        plain: list[list[Any]] = []  # views scored by the pipeline itself
        long_texts: list[tuple[list[list[Any]], list[str]]] = []
        for t in texts:
            t = t if isinstance(t, str) else ""
            norm = normalise(t)
            sents = _sentences(norm)
            by_sentence = fast is not None and sents is not None
            entries = [[name, text, None] for name, text in _views(t, norm, sents, windows=not by_sentence)]
            plain += entries
            if by_sentence:  # the text and its windows are scored from its sentences
                head = [["text", norm, None]]
                windows = [["window", sents[k] + " " + sents[k + 1], None] for k in range(min(len(sents) - 1, MAX_WINDOWS))]
                long_texts.append((head + windows, sents))
                entries = head + entries + windows
            per_text.append(entries)
        if plain:
            for e, p in zip(plain, self.pipeline.predict_proba([e[1] for e in plain])[:, 1]):
                e[2] = float(p)
        if long_texts:
            for (fast_entries, _), (p_text, p_windows) in zip(long_texts, fast.score([s for _, s in long_texts])):
                for e, p in zip(fast_entries, [p_text] + p_windows):
                    e[2] = p
        all_views = [(e[0], e[1]) for entries in per_text for e in entries]
        owner = [i for i, entries in enumerate(per_text) for _ in entries]
        probs = [e[2] for entries in per_text for e in entries]
        out = [{"score": 0.0, "model_score": 0.0, "view": "text", "rules": []} for _ in texts]
        for (name, text), i, p in zip(all_views, owner, probs):
            n_words = _words(text)
            if n_words < SHORT_WORDS:
                p = p * n_words / SHORT_WORDS
            hits = [h for h, rx in _RULES if rx.search(text)]
            score = max(float(p), RULE_SCORE if hits else 0.0)
            o = out[i]
            o["model_score"] = max(o["model_score"], float(p))
            for h in hits:
                if h not in o["rules"]:
                    o["rules"].append(h)
            if score > o["score"]:
                o["score"], o["view"] = score, name
        return out

    def classify(self, examples: list[Example]) -> list[Verdict]:
        res = self.score_texts([e.text for e in examples])
        return [Verdict("injection" if r["score"] >= self.threshold else "benign", r["score"],
                        {"view": r["view"], "rules": r["rules"], "model_score": round(r["model_score"], 4)})
                for r in res]
