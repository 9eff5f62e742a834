"""The Gradio chat and admin tabs. Callbacks check the user's rights and call `QAService`.

Chat: answers stream token by token; under each answer a collapsible "Sources" message
(file, page, score, the cited passage); multi-turn with the conversation's history; stop,
retry and clear. Admin (read-write users only): upload with per-file results, document
list with chunk counts and ingest times, delete.
"""
from __future__ import annotations

import html
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import gradio as gr

from app.server.auth import LOCAL, KeyRing, Principal
from app.service import QAService, UnknownDocument
from ingest.loaders import supported_extensions

PASSAGE_CHARS = 2000
DOC_HEADERS = ["document", "chunks", "pages", "size (KB)", "ingested (UTC)", "source"]
UPLOAD_HEADERS = ["file", "status", "chunks", "reason"]


def _who(keyring: KeyRing, request: gr.Request | None) -> Principal:
    if not keyring.enabled:
        return LOCAL
    who = keyring.principal_named(getattr(request, "username", None))
    if who is None:
        raise gr.Error("Please log in.")
    return who


def sources_markdown(sources) -> tuple[str, str]:
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


def _doc_rows(service: QAService, kb: str) -> list[list]:
    rows = []
    for d in service.documents(kb):
        when = datetime.fromtimestamp(d["ingested_at"], tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        rows.append([d["name"], d["chunks"], d["pages"], round(d["bytes"] / 1024, 1), when, d["source"]])
    return rows


def build_ui(service: QAService, keyring: KeyRing, *, max_upload_bytes: int) -> gr.Blocks:
    names = service.names()
    exts = supported_extensions()

    def answer(question: str, kb: str, display: list, history: list, who: Principal) -> Iterator:
        if not who.can_read(kb):
            raise gr.Error(f"You may not use knowledge base {kb!r}.")
        display = list(display or []) + [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        yield display, history
        streamed = service.stream(kb, question, history)
        text = ""
        for piece in streamed.tokens:
            text += piece
            display[-1] = {"role": "assistant", "content": text}
            yield display, history
        text = text.strip()
        result = streamed.result
        if result is not None:
            text = result.text
        found = streamed.found if result is None else result.found
        display[-1] = {"role": "assistant", "content": text + verdict_markdown(result)}
        if found and streamed.sources:
            title, body = sources_markdown(streamed.sources)
            display.append({"role": "assistant", "content": body, "metadata": {"title": title, "status": "done"}})
        else:
            display[-1] = {"role": "assistant", "content": f"{text}\n\n*(nothing relevant was found in “{kb}”)*"}
        history = list(history or []) + [{"role": "user", "content": question}, {"role": "assistant", "content": text}]
        yield display, history

    def on_send(question, kb, display, history, request: gr.Request):
        who = _who(keyring, request)
        question = (question or "").strip()
        if not question:
            yield display, history, question, question
            return
        for d, h in answer(question, kb, display, history, who):
            yield d, h, "", question

    def on_retry(kb, display, history, last_question, request: gr.Request):
        who = _who(keyring, request)
        if not last_question:
            yield display, history
            return
        display = list(display or [])
        # drop the last exchange (question, answer, sources) from the display and the history
        for i in range(len(display) - 1, -1, -1):
            if display[i].get("role") == "user":
                display = display[:i]
                break
        history = list(history or [])
        if len(history) >= 2 and history[-2]["content"] == last_question:
            history = history[:-2]
        yield from answer(last_question, kb, display, history, who)

    def on_load(request: gr.Request):
        who = _who(keyring, request)
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

    def need_write(kb: str, request: gr.Request) -> Principal:
        who = _who(keyring, request)
        if not kb or not who.can_write(kb):
            raise gr.Error(f"You may not change knowledge base {kb!r}.")
        return who

    def on_docs(kb, request: gr.Request):
        need_write(kb, request)
        rows = _doc_rows(service, kb)
        return rows, gr.Dropdown(choices=[r[5] for r in rows], value=None)

    def on_upload(kb, files, request: gr.Request, progress=gr.Progress()):
        need_write(kb, request)
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
            if size > max_upload_bytes:
                rows[i][1:] = ["rejected", 0, f"file is {size:,} bytes; the limit is {max_upload_bytes:,}"]
                continue
            result = service.upload(kb, Path(path).name, Path(path).read_bytes())
            rows[i] = [result.name, result.status, result.chunks, result.reason or ""]
            yield rows, gr.update()
        progress((len(paths), len(paths)), desc="done")
        yield rows, _doc_rows(service, kb)

    def on_delete(kb, source, request: gr.Request):
        need_write(kb, request)
        if not source:
            raise gr.Error("Choose a document to delete.")
        try:
            removed = service.delete(kb, source)
        except UnknownDocument as exc:
            raise gr.Error(str(exc)) from None
        rows = _doc_rows(service, kb)
        return rows, gr.Dropdown(choices=[r[5] for r in rows], value=None), f"Deleted {removed['source']} ({removed['chunks_removed']} chunks)."

    with gr.Blocks(title="kbqa") as demo:
        with gr.Row():
            gr.Markdown("## kbqa · ask your documents")
            who_md = gr.Markdown(elem_id="who")
        history = gr.State([])
        last_question = gr.State("")
        with gr.Tab("Chat", id="chat"):
            kb = gr.Dropdown(choices=names, value=names[0], label="Knowledge base", visible=len(names) > 1, elem_id="kb-select")
            chatbot = gr.Chatbot(height=520, label="Conversation", elem_id="chatbot", buttons=["copy"], placeholder="Ask a question about the documents in the knowledge base (English or 中文).")
            with gr.Row():
                question = gr.Textbox(show_label=False, placeholder="Your question…", scale=8, elem_id="question", autofocus=True)
                send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
            with gr.Row():
                stop = gr.Button("Stop", elem_id="stop")
                retry = gr.Button("Retry", elem_id="retry")
                clear = gr.Button("Clear", elem_id="clear")
        with gr.Tab("Admin", id="admin", visible=False) as admin_tab:
            admin_kb = gr.Dropdown(choices=[], label="Knowledge base", elem_id="admin-kb")
            files = gr.File(file_count="multiple", file_types=exts, label=f"Upload documents ({', '.join(exts)}; at most {max_upload_bytes // (1024 * 1024)} MB each)", elem_id="upload")
            upload = gr.Button("Upload and ingest", variant="primary", elem_id="upload-btn")
            upload_log = gr.Dataframe(headers=UPLOAD_HEADERS, label="Upload results", interactive=False, elem_id="upload-log")
            gr.Markdown("### Documents")
            refresh = gr.Button("Refresh list", elem_id="refresh")
            docs = gr.Dataframe(headers=DOC_HEADERS, label="Documents in the knowledge base", interactive=False, elem_id="docs")
            with gr.Row():
                to_delete = gr.Dropdown(choices=[], label="Document to delete", scale=4, elem_id="delete-choice")
                delete = gr.Button("Delete", variant="stop", scale=1, elem_id="delete-btn")
            admin_msg = gr.Markdown(elem_id="admin-msg")

        send_inputs = [question, kb, chatbot, history]
        send_outputs = [chatbot, history, question, last_question]
        ev1 = send.click(on_send, send_inputs, send_outputs, concurrency_limit=4)
        ev2 = question.submit(on_send, send_inputs, send_outputs, concurrency_limit=4)
        ev3 = retry.click(on_retry, [kb, chatbot, history, last_question], [chatbot, history], concurrency_limit=4)
        stop.click(None, None, None, cancels=[ev1, ev2, ev3])
        clear.click(lambda: ([], [], ""), None, [chatbot, history, last_question], cancels=[ev1, ev2, ev3])
        kb.change(lambda: ([], [], ""), None, [chatbot, history, last_question])

        demo.load(on_load, None, [kb, admin_tab, admin_kb, who_md])
        admin_kb.change(on_docs, [admin_kb], [docs, to_delete])
        refresh.click(on_docs, [admin_kb], [docs, to_delete])
        upload.click(on_upload, [admin_kb, files], [upload_log, docs]).then(on_docs, [admin_kb], [docs, to_delete])
        delete.click(on_delete, [admin_kb, to_delete], [docs, to_delete, admin_msg])
    return demo


def mount_ui(app, service: QAService, keyring: KeyRing, *, path: str, max_upload_bytes: int):
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
