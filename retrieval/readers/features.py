"""Question + passage -> the reader's input windows, with each token's place in the passage.

One window is ``<s> query: QUESTION </s></s> passage: TEXT </s>``; a passage longer than
the window is cut into overlapping windows. Position 0 (``<s>``) stands for "no answer in
this window". Training and inference build their inputs here, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from kbqa.retrieval.readers.e5_tokenizer import E5Tokenizer

MAX_QUESTION_TOKENS = 64


@dataclass
class Window:
    ids: list[int]
    passage_start: int  # index of the first passage token in `ids`
    offsets: list[tuple[int, int]]  # character span in the passage of each passage token

    def token_span(self, start_char: int, end_char: int) -> tuple[int, int]:
        """The (start, end) token indices in `ids` covering passage characters [start_char, end_char),
        or (0, 0), the "no answer" position, where the answer is not wholly inside this window."""
        if not self.offsets or self.offsets[0][0] > start_char or self.offsets[-1][1] < end_char:
            return 0, 0
        first = next(i for i, (_a, b) in enumerate(self.offsets) if b > start_char)
        last = max(i for i, (a, _b) in enumerate(self.offsets) if a < end_char)
        return self.passage_start + first, self.passage_start + last

    def text(self, passage: str, start: int, end: int) -> tuple[int, int]:
        """Token indices (start, end) in `ids` -> the character span they cover in `passage`,
        without surrounding white space."""
        a = self.offsets[start - self.passage_start][0]
        b = self.offsets[end - self.passage_start][1]
        while a < b and passage[a].isspace():
            a += 1
        while b > a and passage[b - 1].isspace():
            b -= 1
        return a, b


def windows(tok: E5Tokenizer, question: str, passage: str, max_tokens: int = 384, stride: int = 128) -> list[Window]:
    q_ids, _ = tok.encode("query: " + question.strip())
    q_ids = q_ids[:MAX_QUESTION_TOKENS]
    prefix_ids, prefix_offsets = tok.encode("passage: " + passage)
    shift = len("passage: ")
    marker = sum(1 for _a, b in prefix_offsets if b <= shift - 1)  # the tokens of "passage:"
    head = [tok.bos, *q_ids, tok.eos, tok.eos, *prefix_ids[:marker]]
    body_ids = prefix_ids[marker:]
    body_offsets = [(max(0, a - shift), max(0, b - shift)) for a, b in prefix_offsets[marker:]]
    room = max(16, max_tokens - len(head) - 1)
    out = []
    start = 0
    while True:
        piece = slice(start, start + room)
        out.append(Window([*head, *body_ids[piece], tok.eos], len(head), body_offsets[piece]))
        if start + room >= len(body_ids):
            break
        start += max(1, room - stride) if room > stride else room
    return out
