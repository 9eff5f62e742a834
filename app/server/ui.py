"""The Gradio chat and admin tabs. Callbacks check the user's rights and call `QAService`.

Chat (callbacks in app/server/chat_ui.py): answers stream token by token; under each
answer its grounded verdict and a collapsible "Sources" message (file, page, score, the
cited passage); multi-turn with the conversation's history; stop, retry and clear. Past
conversations are kept in the browser, per knowledge base (app/server/conversations.py):
a reload reopens the open one, "New chat" starts another, the list reopens any. The
source viewer shows a cited passage highlighted in its document (app/server/source_view.py).
Admin (read-write users only): upload with per-file results, document list with chunk
counts and ingest times, delete.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from kbqa.app.server.auth import KeyRing, Principal
from kbqa.app.server.chat_format import PASSAGE_CHARS, sources_markdown, verdict_markdown  # noqa: F401 (their old home)
from kbqa.app.server.chat_ui import STORE_KEY, STORE_SECRET, ChatCallbacks, principal_of
from kbqa.app.server.conversations import empty
from kbqa.app.service import QAService, UnknownDocument
from kbqa.ingest.loaders import supported_extensions

DOC_HEADERS = ["document", "chunks", "pages", "size (KB)", "ingested (UTC)", "source"]
UPLOAD_HEADERS = ["file", "status", "chunks", "reason"]


def _doc_rows(service: QAService, kb: str) -> list[list]:
    rows = []
    for d in service.documents(kb):
        when = datetime.fromtimestamp(d["ingested_at"], tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        rows.append([d["name"], d["chunks"], d["pages"], round(d["bytes"] / 1024, 1), when, d["source"]])
    return rows


class AdminCallbacks:
    """The admin tab's callbacks: every one needs the right to change the knowledge base."""

    def __init__(self, service: QAService, keyring: KeyRing, max_upload_bytes: int):
        self.service, self.keyring, self.max_upload_bytes = service, keyring, max_upload_bytes

    def need_write(self, kb: str, request: gr.Request) -> Principal:
        """The user, who must be allowed to change `kb`."""
        who = principal_of(self.keyring, request)
        if not kb or not who.can_write(kb):
            raise gr.Error(f"You may not change knowledge base {kb!r}.")
        return who

    def on_docs(self, kb, request: gr.Request):
        """The document list and the delete choices."""
        if not kb:  # a user who may change no knowledge base: nothing to list
            return [], gr.Dropdown(choices=[], value=None)
        self.need_write(kb, request)
        rows = _doc_rows(self.service, kb)
        return rows, gr.Dropdown(choices=[r[5] for r in rows], value=None)

    def on_upload(self, kb, files, request: gr.Request, progress=gr.Progress()):
        """Ingest the uploaded files one by one, reporting each: (upload log, document list)."""
        self.need_write(kb, request)
        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]
        if not paths:
            raise gr.Error("Choose one or more files first.")
        rows = [[Path(p).name, "waiting", 0, ""] for p in paths]
        yield rows, gr.update()
        for i, path in enumerate(paths):
            progress((i, len(paths)), desc=f"ingesting {Path(path).name}")
            rows[i][1] = "ingesting…"
            yield rows, gr.update()
            size = os.path.getsize(path)
            if size > self.max_upload_bytes:
                rows[i][1:] = ["rejected", 0, f"file is {size:,} bytes; the limit is {self.max_upload_bytes:,}"]
                continue
            result = self.service.upload(kb, Path(path).name, Path(path).read_bytes())
            rows[i] = [result.name, result.status, result.chunks, result.reason or ""]
            yield rows, gr.update()
        progress((len(paths), len(paths)), desc="done")
        yield rows, _doc_rows(self.service, kb)

    def on_delete(self, kb, source, request: gr.Request):
        """Delete one document: (document list, delete choices, message)."""
        self.need_write(kb, request)
        if not source:
            raise gr.Error("Choose a document to delete.")
        try:
            removed = self.service.delete(kb, source)
        except UnknownDocument as exc:
            raise gr.Error(str(exc)) from None
        rows = _doc_rows(self.service, kb)
        return rows, gr.Dropdown(choices=[r[5] for r in rows], value=None), f"Deleted {removed['source']} ({removed['chunks_removed']} chunks)."


def _chat_tab(names: list[str]) -> SimpleNamespace:
    """The chat tab's components (inside the Blocks being built)."""
    c = SimpleNamespace()
    c.store = gr.BrowserState(empty(), storage_key=STORE_KEY, secret=STORE_SECRET)
    c.history, c.turns, c.conv_id, c.last_question = gr.State([]), gr.State([]), gr.State(None), gr.State("")
    c.kb = gr.Dropdown(choices=names, value=names[0], label="Knowledge base", visible=len(names) > 1, elem_id="kb-select")
    with gr.Row():
        with gr.Column(scale=1, min_width=220):
            c.new_chat = gr.Button("New chat", elem_id="new-chat")
            c.past = gr.Dropdown(choices=[], value=None, label="Past conversations", elem_id="past")
        with gr.Column(scale=4):
            c.chatbot = gr.Chatbot(
                height=520,
                label="Conversation",
                elem_id="chatbot",
                buttons=["copy"],
                placeholder="Ask a question about the documents in the knowledge base (English or 中文).",
            )
            with gr.Row():
                c.question = gr.Textbox(show_label=False, placeholder="Your question…", scale=8, elem_id="question", autofocus=True)
                c.send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
            with gr.Row():
                c.stop = gr.Button("Stop", elem_id="stop")
                c.retry = gr.Button("Retry", elem_id="retry")
                c.clear = gr.Button("Clear", elem_id="clear")
    with gr.Accordion("Source viewer", open=True, elem_id="source-viewer"):
        c.source_pick = gr.Dropdown(choices=[], value=None, label="Source of the last answer", interactive=False, elem_id="source-pick")
        c.source_note = gr.Markdown("*No sources yet.*", elem_id="source-note")
        c.source_html = gr.HTML(visible=False, elem_id="source-html")
        c.source_img = gr.Image(visible=False, type="pil", format="png", interactive=False, label="Cited page", elem_id="source-image")
    return c


def _admin_tab(exts: list[str], max_upload_bytes: int) -> SimpleNamespace:
    """The admin tab's components (hidden until a read-write user signs in)."""
    a = SimpleNamespace()
    with gr.Tab("Admin", id="admin", visible=False) as a.tab:
        a.kb = gr.Dropdown(choices=[], label="Knowledge base", elem_id="admin-kb")
        a.files = gr.File(
            file_count="multiple",
            file_types=exts,
            label=f"Upload documents ({', '.join(exts)}; at most {max_upload_bytes // (1024 * 1024)} MB each)",
            elem_id="upload",
        )
        a.upload = gr.Button("Upload and ingest", variant="primary", elem_id="upload-btn")
        a.upload_log = gr.Dataframe(headers=UPLOAD_HEADERS, label="Upload results", interactive=False, elem_id="upload-log")
        gr.Markdown("### Documents")
        a.refresh = gr.Button("Refresh list", elem_id="refresh")
        a.docs = gr.Dataframe(headers=DOC_HEADERS, label="Documents in the knowledge base", interactive=False, elem_id="docs")
        with gr.Row():
            a.to_delete = gr.Dropdown(choices=[], label="Document to delete", scale=4, elem_id="delete-choice")
            a.delete = gr.Button("Delete", variant="stop", scale=1, elem_id="delete-btn")
        a.msg = gr.Markdown(elem_id="admin-msg")
    return a


def _wire_chat(c: SimpleNamespace, chat: ChatCallbacks) -> None:
    """The chat tab's events. An answer, once finished, is saved in the browser."""
    viewer = [c.source_pick, c.source_note, c.source_html, c.source_img]
    shown = [c.chatbot, c.history, c.turns, c.conv_id, c.last_question, c.store, c.past, *viewer]
    saved = dict(fn=chat.on_saved, inputs=[c.store, c.kb, c.conv_id, c.turns], outputs=[c.store, c.conv_id, c.past, *viewer])
    send_inputs = [c.question, c.kb, c.chatbot, c.history, c.turns]
    send_outputs = [c.chatbot, c.history, c.turns, c.question, c.last_question]
    ev1 = c.send.click(chat.on_send, send_inputs, send_outputs, concurrency_limit=4)
    ev2 = c.question.submit(chat.on_send, send_inputs, send_outputs, concurrency_limit=4)
    ev3 = c.retry.click(chat.on_retry, [c.kb, c.chatbot, c.history, c.turns, c.last_question], [c.chatbot, c.history, c.turns], concurrency_limit=4)
    answering = [ev1, ev2, ev3]
    for ev in answering:
        ev.then(**saved)
    c.stop.click(None, None, None, cancels=answering)
    c.clear.click(chat.on_clear, [c.store, c.kb, c.conv_id], shown, cancels=answering)
    c.new_chat.click(chat.on_new, [c.store, c.kb], shown, cancels=answering)
    c.past.input(chat.on_open, [c.store, c.kb, c.past], shown, cancels=answering)
    c.kb.input(chat.on_restore, [c.store, c.kb], shown, cancels=answering)
    unsaved = [c.chatbot, c.history, c.turns, c.conv_id, c.last_question, c.past, *viewer]
    c.store.change(chat.on_stored, [c.store, c.kb, c.conv_id, c.turns], unsaved)
    c.source_pick.input(chat.on_view, [c.kb, c.turns, c.source_pick], [c.source_note, c.source_html, c.source_img], concurrency_limit=4)


def _wire_admin(a: SimpleNamespace, admin: AdminCallbacks) -> None:
    """The admin tab's events."""
    a.kb.change(admin.on_docs, [a.kb], [a.docs, a.to_delete])
    a.refresh.click(admin.on_docs, [a.kb], [a.docs, a.to_delete])
    a.upload.click(admin.on_upload, [a.kb, a.files], [a.upload_log, a.docs]).then(admin.on_docs, [a.kb], [a.docs, a.to_delete])
    a.delete.click(admin.on_delete, [a.kb, a.to_delete], [a.docs, a.to_delete, a.msg])


def build_ui(service: QAService, keyring: KeyRing, *, max_upload_bytes: int) -> gr.Blocks:
    """The Blocks app: the chat tab, and the admin tab for read-write users."""
    names = service.names()
    chat = ChatCallbacks(service, keyring)
    admin = AdminCallbacks(service, keyring, max_upload_bytes)

    def on_load(request: gr.Request):
        who = principal_of(keyring, request)
        readable = who.readable(names)
        writable = who.writable(names)
        if not readable:
            raise gr.Error("Your key gives access to no knowledge base on this server.")
        greeting = f"Signed in as **{who.name}**" if keyring.enabled else "Local-only mode (no API keys configured)"
        return (
            gr.Dropdown(choices=readable, value=readable[0], visible=len(readable) > 1),
            gr.Tab(visible=bool(writable)),
            gr.Dropdown(choices=writable, value=writable[0] if writable else None),
            greeting,
        )

    with gr.Blocks(title="kbqa") as demo:
        with gr.Row():
            gr.Markdown("## kbqa · ask your documents")
            who_md = gr.Markdown(elem_id="who")
        with gr.Tab("Chat", id="chat"):
            c = _chat_tab(names)
        a = _admin_tab(supported_extensions(), max_upload_bytes)
        _wire_chat(c, chat)
        _wire_admin(a, admin)
        shown = [c.chatbot, c.history, c.turns, c.conv_id, c.last_question, c.store, c.past, c.source_pick, c.source_note, c.source_html, c.source_img]
        demo.load(on_load, None, [c.kb, a.tab, a.kb, who_md]).then(chat.on_restore, [c.store, c.kb], shown)
    return demo


def mount_ui(app, service: QAService, keyring: KeyRing, *, path: str, max_upload_bytes: int):
    """`app` with the chat UI mounted at `path` (a login page when keys are configured)."""
    demo = build_ui(service, keyring, max_upload_bytes=max_upload_bytes)
    auth = keyring.login if keyring.enabled else None
    return gr.mount_gradio_app(
        app,
        demo,
        path=path,
        auth=auth,
        auth_message="Sign in with your API key's name and the key itself." if auth else None,
        max_file_size=max_upload_bytes,
        ssr_mode=False,
        footer_links=["api"],
    )
