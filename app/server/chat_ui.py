"""The chat tab's callbacks: answers, the conversations kept in the browser, the source viewer.

Every callback finds the signed-in user from the Gradio request (the login session: the
browser holds no API key) and checks their right to read the knowledge base before it
calls `QAService`. What the browser sends back (its stored conversations, the sources of
the last answer) is never trusted: a source is opened only when the service finds it
among the knowledge base's documents.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from kbqa.app.server import conversations as convs
from kbqa.app.server.auth import LOCAL, KeyRing, Principal
from kbqa.app.server.chat_format import make_turn, render_turns, turn_messages
from kbqa.app.server.source_view import document_html, mark_pdf_passage, source_label
from kbqa.app.service import QAService, UnknownDocument, UnknownKB

STORE_KEY = "kbqa-conversations"
# gr.BrowserState encrypts in the browser with a secret it is sent: it hides nothing from the
# browser's owner. A fixed one keeps the conversations readable across server restarts.
STORE_SECRET = "kbqa-chat-history-v1"
NO_VIEW = "*Choose a source of the last answer to see the passage in its document.*"


def principal_of(keyring: KeyRing, request: gr.Request | None) -> Principal:
    """The signed-in user (everyone is `LOCAL` without keys); a gr.Error when nobody is."""
    if not keyring.enabled:
        return LOCAL
    who = keyring.principal_named(getattr(request, "username", None))
    if who is None:
        raise gr.Error("Please log in.")
    return who


def _viewer(turns: list) -> tuple:
    """The source viewer emptied, its choices the last answer's sources: (choice, note, html, image)."""
    sources = _last_sources(turns)
    choices = [(source_label(n, s), n - 1) for n, s in enumerate(sources, start=1)]
    return (
        gr.Dropdown(choices=choices, value=None, interactive=bool(choices)),
        NO_VIEW if choices else "*No sources yet.*",
        gr.HTML(value="", visible=False),
        gr.Image(value=None, visible=False),
    )


def _last_sources(turns) -> list[dict]:
    last = turns[-1] if isinstance(turns, list) and turns and isinstance(turns[-1], dict) else {}
    return [s for s in last.get("sources") or [] if isinstance(s, dict) and isinstance(s.get("source"), str)]


class ChatCallbacks:
    """The callbacks of the chat tab, bound to one service and key ring."""

    def __init__(self, service: QAService, keyring: KeyRing):
        self.service = service
        self.keyring = keyring

    def reader(self, kb: str, request: gr.Request | None) -> Principal:
        """The user, who must be allowed to read `kb`."""
        who = principal_of(self.keyring, request)
        if not kb or not who.can_read(kb):
            raise gr.Error(f"You may not use knowledge base {kb!r}.")
        return who

    # ---- answers --------------------------------------------------------------------
    def answer(self, question: str, kb: str, display: list, history: list, turns: list) -> Iterator:
        """Stream one answer: yields (display, history, turns); the last has the new turn."""
        display = list(display or []) + [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        yield display, history, turns
        streamed = self.service.stream(kb, question, history)
        text = ""
        for piece in streamed.tokens:
            text += piece
            display[-1] = {"role": "assistant", "content": text}
            yield display, history, turns
        turn = make_turn(question, text.strip(), streamed, kb)
        display = display[:-2] + turn_messages(turn)
        history = list(history or []) + [{"role": "user", "content": question}, {"role": "assistant", "content": turn["a"]}]
        yield display, history, list(turns or []) + [turn]

    def on_send(self, question, kb, display, history, turns, request: gr.Request):
        """Send: (display, history, turns, question box, last question)."""
        self.reader(kb, request)
        question = (question or "").strip()
        if not question:
            yield display, history, turns, question, question
            return
        for d, h, t in self.answer(question, kb, display, history, turns):
            yield d, h, t, "", question

    def on_retry(self, kb, display, history, turns, last_question, request: gr.Request):
        """Retry: the last exchange dropped and asked again; (display, history, turns)."""
        self.reader(kb, request)
        if not last_question:
            yield display, history, turns
            return
        display = list(display or [])
        for i in range(len(display) - 1, -1, -1):  # drop the last question, its answer and sources
            if display[i].get("role") == "user":
                display = display[:i]
                break
        history = list(history or [])
        if len(history) >= 2 and history[-2]["content"] == last_question:
            history = history[:-2]
        turns = list(turns or [])
        if turns and turns[-1].get("q") == last_question:
            turns = turns[:-1]
        yield from self.answer(last_question, kb, display, history, turns)

    # ---- conversations --------------------------------------------------------------
    def _shown(self, store, user: str, kb: str, conv: dict | None) -> tuple:
        """Outputs that show `conv` (None: a new chat): chat, history, turns, id, last question,
        the store, the list of conversations, and the emptied source viewer."""
        turns = list(conv["turns"]) if conv else []
        display, history = render_turns(turns)
        conv_id = conv["id"] if conv else None
        last = str(turns[-1].get("q", "")) if turns else ""
        past = gr.Dropdown(choices=convs.listing(store, user, kb), value=conv_id)
        return (display, history, turns, conv_id, last, store, past, *_viewer(turns))

    def on_saved(self, store, kb, conv_id, turns, request: gr.Request):
        """After an answer: the conversation saved in the browser (store, id, list, viewer)."""
        who = self.reader(kb, request)
        if not turns:  # stopped or failed before a first answer: nothing to keep, nothing to reset
            return tuple(gr.skip() for _ in range(7))
        store, conv_id = convs.save(store, who.name, kb, conv_id, turns)
        return (store, conv_id, gr.Dropdown(choices=convs.listing(store, who.name, kb), value=conv_id), *_viewer(turns))

    def on_restore(self, store, kb, request: gr.Request):
        """Page load or another knowledge base: reopen the conversation that was open there."""
        who = self.reader(kb, request)
        return self._shown(store, who.name, kb, convs.active(store, who.name, kb))

    def on_stored(self, store, kb, conv_id, turns, request: gr.Request):
        """The browser's store read (or changed) while no conversation is open: reopen the
        active one (the page-load restore may run before the browser has read its storage).
        All of `on_restore`'s outputs but the store itself, which would trigger this again."""
        if turns or conv_id:
            return tuple(gr.skip() for _ in range(10))
        shown = self.on_restore(store, kb, request)
        return shown[:5] + shown[6:]

    def on_new(self, store, kb, request: gr.Request):
        """New chat: the current conversation stays in the list; an empty one starts."""
        who = self.reader(kb, request)
        store = convs.activate(store, who.name, kb, None)
        return self._shown(store, who.name, kb, None)

    def on_clear(self, store, kb, conv_id, request: gr.Request):
        """Clear: the current conversation is erased (from the list too); an empty one starts."""
        who = self.reader(kb, request)
        store = convs.remove(store, who.name, kb, conv_id)
        return self._shown(store, who.name, kb, None)

    def on_open(self, store, kb, picked, request: gr.Request):
        """A past conversation chosen in the list: shown, with its history, and made the active one."""
        who = self.reader(kb, request)
        conv = convs.get(store, who.name, kb, picked)
        if conv is None:
            raise gr.Error("That conversation is no longer stored in this browser.")
        store = convs.activate(store, who.name, kb, conv["id"])
        return self._shown(store, who.name, kb, conv)

    # ---- the source viewer ----------------------------------------------------------
    def on_view(self, kb, turns, pick, request: gr.Request):
        """A source of the last answer chosen: its passage marked in its document (note, html, image)."""
        self.reader(kb, request)
        sources = _last_sources(turns)
        if not isinstance(pick, int) or not 0 <= pick < len(sources):
            return NO_VIEW, gr.HTML(value="", visible=False), gr.Image(value=None, visible=False)
        src = sources[pick]
        page = src.get("page") if isinstance(src.get("page"), int) else None
        try:
            doc = self.service.source_document(kb, src["source"], int(src.get("chunk") or 0))
        except (UnknownDocument, UnknownKB, ValueError, TypeError):
            raise gr.Error(f"{src['source']!r} is not a document of knowledge base {kb!r} (deleted since?).") from None
        name = html.escape(Path(doc["source"]).name)
        passage = str(src.get("text", ""))
        if doc["path"] is not None and doc["path"].suffix.lower() == ".pdf" and page:
            try:
                marked = mark_pdf_passage(doc["path"], page, passage)
            except Exception as exc:  # a PDF that needs a password, or changed since it was ingested
                raise gr.Error(f"Cannot show page {page} of {doc['source']}: {exc}") from None
            found = f"the passage is highlighted ({len(marked.boxes)} lines)" if marked.boxes else "the passage was not located on the page"
            note = f"**{name}**, page {page} of {marked.pages}: {found}."
            return note, gr.HTML(value="", visible=False), gr.Image(value=marked.image, visible=True)
        cited = next((c.text for c in doc["chunks"] if c.chunk == src.get("chunk")), "")
        body, found = document_html([c.text for c in doc["chunks"]], passage, cited, context_chars=800)
        where = f", page {page}" if page else ""
        note = f"**{name}**{where}, chunk {src.get('chunk')}: " + ("the passage is highlighted." if found else "the passage was not found in the stored text.")
        block = f'<div id="source-text" style="white-space: pre-wrap; line-height: 1.5; max-height: 520px; overflow-y: auto">{body}</div>'
        return note, gr.HTML(value=block, visible=True), gr.Image(value=None, visible=False)
