"""Training data from a knowledge base: grounded question/answer pairs in RAG form.

1. `template_pairs(chunks)` makes question/answer pairs from the chunks' own sentences:
   a fact in a sentence (a date, a number with its unit, a name) becomes the answer and the
   sentence, with that fact asked for, becomes the question. Every answer is verbatim text
   of its chunk, so every pair is grounded. Pairs can also come from elsewhere (a QA set).
2. `rag_example(pair, hits)` turns a pair into a training conversation exactly as the
   service prompts the model (`retrieval.prompts.build_messages` over the retrieved hits):
   the reply quotes the answer and cites the block [n] that holds it, or is the NOT_FOUND
   sentence when no block holds it.
3. `not_found_example` replaces every block holding the answer by another block (as many
   blocks as before), so the adapter keeps abstaining when, and only when, the answer is absent.
4. `split_groups` assigns whole groups (a chunk, or an article) to train/validation/test
   (70/15/15, seeded), so no chunk's facts leak across splits.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from kbqa.finetune.formats import Example
from kbqa.retrieval.lang import detect_language
from kbqa.retrieval.prompts import NOT_FOUND, build_messages
from kbqa.retrieval.types import Chunk, Hit

Search = Callable[[str], list[Hit]]
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str  # the reply to learn (cites added by rag_example)
    key: str  # the shortest text a block must hold to answer (verbatim in the gold chunk)
    group: str  # what must not cross splits: a chunk id, or an article
    chunk_id: str = ""


# ---- template questions ---------------------------------------------------------------------

_EN_SENT = re.compile(r"[^.!?\n]+[.!?]")
_ZH_SENT = re.compile(r"[^。！？\n]+[。！？]")
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
# (pattern, wh-phrase) in order of preference
_EN_FACTS = [
    (re.compile(rf"\b\d{{1,2}} (?:{_MONTHS}) \d{{4}}\b"), "what date"),
    (re.compile(rf"\b(?:{_MONTHS}) \d{{4}}\b"), "what month"),
    (re.compile(r"\b(?:1[5-9]|20)\d\d\b(?![\d,.])"), "what year"),
    (re.compile(r"\b\d{1,2}:\d\d\b"), "what time"),
    (
        re.compile(
            r"(?:\d[\d,.]*\s?(?:%|per cent|km/h|km|mm|cm|kg|m|metres|meters|minutes|hours|yuan|silver dollars|seats|tunnels|bridges|stations|labourers|people|passengers|years|days)\b)"
        ),
        "what amount",
    ),
    (re.compile(r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)+\b"), "what name"),
]
_ZH_FACTS = [
    (re.compile(r"\d{4}年\d{1,2}月\d{1,2}日"), "哪一天"),
    (re.compile(r"\d{4}年"), "哪一年"),
    (re.compile(r"\d{1,2}:\d\d"), "几点"),
    (re.compile(r"\d[\d,.]*(?=\s?[^\s\d，。、；：！？（）()“”|])"), "多少"),
]
_BULLET = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.、)）])\s*")


def _facts(sentence: str, patterns) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, wh) fact spans, first pattern first; none opening the sentence."""
    spans: list[tuple[int, int, str]] = []
    for pattern, wh in patterns:
        for m in pattern.finditer(sentence):
            if m.start() > 0 and all(m.end() <= a or m.start() >= b for a, b, _ in spans):
                spans.append((m.start(), m.end(), wh))
    return spans


def _en_questions(sentence: str) -> list[tuple[str, str]]:
    if len(sentence.split()) < 6:
        return []
    out = []
    for a, b, wh in _facts(sentence, _EN_FACTS):
        asked = sentence[:a] + f"[{wh}]" + sentence[b:]
        out.append((f"According to the documents, fill in {wh}: {asked.strip().rstrip('.!?')}?", sentence[a:b].strip()))
    return out


def _zh_questions(sentence: str) -> list[tuple[str, str]]:
    if len(sentence) < 8:
        return []
    out = []
    for a, b, wh in _facts(sentence, _ZH_FACTS):
        asked = sentence[:a] + wh + sentence[b:]
        out.append((f"根据资料，{asked.strip().rstrip('。！？')}？", sentence[a:b].strip()))
    return out


def template_pairs(chunks: Iterable[Chunk], per_chunk: int = 12) -> list[QAPair]:
    """Cloze-style questions on the facts of each chunk's sentences; the answer is the sentence."""
    pairs = []
    for chunk in chunks:
        zh = detect_language(chunk.text) == "zh"
        made = 0
        for sentence in (_ZH_SENT if zh else _EN_SENT).findall(chunk.text):
            sentence = _BULLET.sub("", " ".join(sentence.split()))
            for question, key in _zh_questions(sentence) if zh else _en_questions(sentence):
                if made < per_chunk:
                    pairs.append(QAPair(question, sentence, key, group=chunk.id, chunk_id=chunk.id))
                    made += 1
    return pairs


def dedupe(pairs: Iterable[QAPair]) -> list[QAPair]:
    seen, out = set(), []
    for p in pairs:
        norm = " ".join(re.sub(r"[^\w\s]", " ", p.question.lower()).split())
        if norm not in seen:
            seen.add(norm)
            out.append(p)
    return out


# ---- RAG form --------------------------------------------------------------------------------


def holds(hit: Hit, key: str) -> bool:
    return key.lower() in hit.chunk.text.lower()


def cited(answer: str, n: int, lang: str) -> str:
    answer = answer.strip()
    if lang == "zh":
        return answer.rstrip("。") + f" [{n}]。" if answer.endswith("。") else f"{answer} [{n}]"
    if answer.endswith((".", "!", "?")):
        return f"{answer[:-1]} [{n}]{answer[-1]}"
    return f"{answer} [{n}]"


def rag_example(pair: QAPair, hits: Sequence[Hit], split: str | None = None) -> Example:
    """The prompt the service builds from these hits, and the reply citing the block that answers."""
    lang = detect_language(pair.question)
    messages = build_messages(pair.question, hits, lang)
    gold = [n for n, h in enumerate(hits, 1) if pair.chunk_id and h.chunk.id == pair.chunk_id and holds(h, pair.key)]
    anywhere = [n for n, h in enumerate(hits, 1) if holds(h, pair.key)]
    where = (gold or anywhere or [None])[0]
    reply = NOT_FOUND[lang] if where is None else cited(pair.answer, where, lang)
    meta = {"group": pair.group, "chunk_id": pair.chunk_id, "key": pair.key, "kind": "answer" if where else "not_found"}
    return Example(messages + [{"role": "assistant", "content": reply}], split, meta)


def lacking_blocks(pair: QAPair, hits: Sequence[Hit], spare: Sequence[Hit] = ()) -> list[Hit]:
    """The blocks of `hits` that lack the answer, topped up from `spare` to as many blocks as `hits`."""

    def lacks(h: Hit) -> bool:
        return not holds(h, pair.key) and h.chunk.id != pair.chunk_id

    rest = [h for h in hits if lacks(h)]
    seen = {h.chunk.id for h in rest}
    for h in spare:
        if len(rest) >= len(hits):
            break
        if lacks(h) and h.chunk.id not in seen:
            rest.append(h)
            seen.add(h.chunk.id)
    return rest


def not_found_example(pair: QAPair, hits: Sequence[Hit], split: str | None = None, *, spare: Sequence[Hit] = ()) -> Example | None:
    """The same question over blocks none of which holds the answer -> NOT_FOUND.

    The blocks holding the answer are dropped and the gap is filled from `spare` (other
    retrieved blocks, e.g. lower-ranked ones) up to the number of blocks in `hits`: were the
    NOT_FOUND prompts shorter than the answerable ones, the adapter would learn to abstain
    whenever the context is short rather than when it lacks the answer."""
    rest = lacking_blocks(pair, hits, spare)
    if not rest:
        return None
    lang = detect_language(pair.question)
    messages = build_messages(pair.question, rest, lang)
    meta = {"group": pair.group, "chunk_id": pair.chunk_id, "key": pair.key, "kind": "not_found"}
    return Example(messages + [{"role": "assistant", "content": NOT_FOUND[lang]}], split, meta)


# ---- splits ----------------------------------------------------------------------------------


def split_groups(groups: Iterable[str], seed: int = 42, ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> dict[str, str]:
    """Group -> split name, whole groups at a time, seeded; every split gets a group when there are 3+."""
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise ValueError(f"split ratios must be three non-negative numbers summing to 1 (got {ratios})")
    unique = sorted(set(groups))
    random.Random(seed).shuffle(unique)
    n = len(unique)
    n_val = max(1, round(n * ratios[1])) if n >= 3 and ratios[1] > 0 else 0
    n_test = max(1, round(n * ratios[2])) if n >= 3 and ratios[2] > 0 else 0
    out = {}
    for i, g in enumerate(unique):
        out[g] = "test" if i < n_test else "validation" if i < n_test + n_val else "train"
    return out


def build_examples(
    pairs: Sequence[QAPair],
    search: Search,
    *,
    seed: int = 42,
    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15),
    not_found_ratio: float = 0.15,
    share_context: bool = False,
    progress: bool = False,
) -> list[Example]:
    """De-duplicated pairs -> RAG examples with a split each, plus some NOT_FOUND examples.

    `share_context`: a pair whose key lies in the blocks already retrieved for an earlier pair
    of its group (its chunk) is asked over those same blocks. Their prompts then differ only in
    the question, and train as one packed sequence (TrainConfig.pack_shared_prefix)."""
    from tqdm.auto import tqdm

    pairs = dedupe(pairs)
    assignment = split_groups((p.group for p in pairs), seed, ratios)
    rng = random.Random(seed)
    examples = []
    previous: list[Hit] = []  # blocks retrieved for earlier questions: fillers for NOT_FOUND prompts
    shared: dict[str, Sequence[Hit]] = {}  # group -> the blocks of its first answerable pair
    for pair in tqdm(pairs, desc="make-data", unit="pair", disable=None if progress else True):
        split = assignment[pair.group]
        hits = shared.get(pair.group, ())
        if not any(holds(h, pair.key) for h in hits):
            hits = search(pair.question)
            if share_context and pair.group not in shared and any(holds(h, pair.key) for h in hits):
                shared[pair.group] = hits
        examples.append(rag_example(pair, hits, split))
        if rng.random() < not_found_ratio:
            spare = rng.sample(previous, min(len(previous), 3 * len(hits)))
            extra = not_found_example(pair, hits, split, spare=spare)
            if extra is not None:
                examples.append(extra)
        previous = (previous + list(hits))[-200:]
    return examples


def summarize(examples: Sequence[Example]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for ex in examples:
        row = out.setdefault(ex.split or "none", {"answer": 0, "not_found": 0})
        row[ex.meta.get("kind", "answer")] += 1
    return out
