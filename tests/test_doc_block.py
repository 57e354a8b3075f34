"""Generated blocks in hand-written Markdown (the report scripts' docs)."""

from jaxlab.doc_block import write_block

BEGIN, END = "<!-- table: begin -->", "<!-- table: end -->"


def test_rewriting_a_block_keeps_the_hand_written_text(tmp_path):
    path = tmp_path / "REPORT.md"
    write_block(path, BEGIN, END, "first table")
    assert path.read_text() == f"{BEGIN}\nfirst table\n{END}\n"
    path.write_text(
        "# Title\n\nintro\n\n" + path.read_text() + "\n## Where the time goes\n\nprofiled prose\n"
    )
    write_block(path, BEGIN, END, "second table")
    text = path.read_text()
    assert text == (
        f"# Title\n\nintro\n\n{BEGIN}\nsecond table\n{END}\n"
        "\n## Where the time goes\n\nprofiled prose\n"
    )


def test_a_document_without_the_markers_gets_the_block_appended(tmp_path):
    path = tmp_path / "REPORT.md"
    path.write_text(f"# Title\n\nan {END} quoted before any block\n")
    write_block(path, BEGIN, END, "table")
    assert path.read_text() == (
        f"# Title\n\nan {END} quoted before any block\n\n{BEGIN}\ntable\n{END}\n"
    )
    write_block(path, BEGIN, END, "new table")
    assert path.read_text().count(BEGIN) == 1
    assert path.read_text().endswith(f"{BEGIN}\nnew table\n{END}\n")
