"""Generated blocks in hand-written Markdown: a script rewrites the text between its two marker
lines and leaves everything around them as the authors wrote it."""

import pathlib


def write_block(path: pathlib.Path, begin: str, end: str, content: str) -> None:
    """Puts ``content`` between the markers ``begin`` and ``end`` of ``path``, replacing what was
    there; appends the marked block if ``path`` has no such markers (or does not exist)."""
    path = pathlib.Path(path)
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{content}\n{end}"
    if begin in text and end in text[text.index(begin) :]:
        text = (
            text[: text.index(begin)]
            + block
            + text[text.index(end, text.index(begin)) + len(end) :]
        )
    else:
        text = text + ("\n" if text else "") + block + "\n"
    path.write_text(text)
