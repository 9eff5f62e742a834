"""What the chat shows: an answer's messages (the answer, its verdict line, the collapsible
"Sources" message) built from one *turn*, the plain record of a question and its answer
that the browser keeps (app/server/conversations.py) and that reopens a conversation.

A turn: ``{"q": question, "a": answer text (what the model sees as history), "shown": the
answer as displayed (with its verdict line or "nothing found" note), "sources": [{source,
page, chunk, score, text}]}``, source texts cut to `PASSAGE_CHARS`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from kbqa.retrieval.types import Chunk, Hit

PASSAGE_CHARS = 2000


def sources_markdown(sources: Sequence[Hit]) -> tuple[str, str]:
    """(title, body) of the sources message under an answer."""
    names = []
    for hit in sources:
        name = Path(hit.chunk.source).name
        if name not in names:
            names.append(name)
    title = f"Sources: {', '.join(names)}"
    blocks = []
    for n, hit in enumerate(sources, start=1):
        page = f" · p. {hit.chunk.page}" if hit.chunk.page else ""
        passage = hit.chunk.text if len(hit.chunk.text) <= PASSAGE_CHARS else hit.chunk.text[:PASSAGE_CHARS] + " …"
        blocks.append(
            f"<details><summary><b>[{n}] {html.escape(Path(hit.chunk.source).name)}</b>{page} · score {hit.score:.3f}</summary>\n\n"
            f"<code>{html.escape(hit.chunk.source)}</code>, chunk {hit.chunk.chunk}\n\n"
            + "\n".join("> " + html.escape(line) for line in passage.splitlines() if line.strip())
            + "\n\n</details>"
        )
    return title, "\n\n".join(blocks)


def verdict_markdown(result) -> str:
    """The line under an answer that says how it was made and whether it was checked."""
    if result is None or not result.found and not result.replaced:
        return ""
    if result.replaced:
        why = "; ".join(result.unsupported[:3])
        what = "replaced by a quote from the sources" if result.found else "withheld"
        return f"\n\n*⚠ answer check: the generated answer was not supported by its sources ({html.escape(why)}); {what}.*"
    if result.mode == "extractive":
        return "\n\n*✓ quoted from the sources (extractive answer)*"
    return "\n\n*✓ checked: every number, date and name is in the cited sources (generated answer)*"


def source_record(hit: Hit) -> dict:
    """A cited passage as a turn keeps it (JSON, its text cut to `PASSAGE_CHARS`)."""
    c = hit.chunk
    return {"source": c.source, "page": c.page, "chunk": c.chunk, "score": round(float(hit.score), 4), "text": c.text[:PASSAGE_CHARS]}


def _hit(record: dict) -> Hit:
    page = record.get("page")
    chunk = Chunk(
        id="",
        text=str(record.get("text", "")),
        source=str(record.get("source", "")),
        page=page if isinstance(page, int) and page > 0 else None,
        chunk=int(record.get("chunk") or 0),
    )
    return Hit(chunk, float(record.get("score") or 0.0))


def make_turn(question: str, text: str, streamed, kb: str) -> dict:
    """The turn for a finished answer (`service.StreamedAnswer`, its tokens read to the end as `text`)."""
    result = streamed.result
    if result is not None:
        text = result.text
    found = streamed.found if result is None else result.found
    if found and streamed.sources:
        shown, sources = text + verdict_markdown(result), [source_record(h) for h in streamed.sources]
    else:
        shown, sources = f"{text}\n\n*(nothing relevant was found in “{kb}”)*", []
    return {"q": question, "a": text, "shown": shown, "sources": sources}


def turn_messages(turn: dict) -> list[dict]:
    """The chat messages of one turn: the question, the answer, and its sources (collapsed)."""
    messages = [{"role": "user", "content": str(turn.get("q", ""))}, {"role": "assistant", "content": str(turn.get("shown", ""))}]
    sources = [_hit(s) for s in turn.get("sources") or [] if isinstance(s, dict)]
    if sources:
        title, body = sources_markdown(sources)
        messages.append({"role": "assistant", "content": body, "metadata": {"title": title, "status": "done"}})
    return messages


def render_turns(turns: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    """(chat display, model history) of a conversation's turns."""
    display: list[dict] = []
    history: list[dict] = []
    for turn in turns:
        display += turn_messages(turn)
        history += [{"role": "user", "content": str(turn.get("q", ""))}, {"role": "assistant", "content": str(turn.get("a", ""))}]
    return display, history
