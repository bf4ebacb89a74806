"""The bulk list's format: one target per line, an optional work title before a comma, every bad line named."""

from __future__ import annotations

from tracker_watch.console.bulk import MAX_LINES, parse_lines

V1 = "ab" * 20
MAGNET = f"magnet:?xt=urn:btih:{'cd' * 20}&dn=a,b"


def test_titles_from_the_line_or_the_form_and_headers_comments_blank_lines_skipped() -> None:
    text = f'work,target\n# a comment\n\n{V1}\n"Title, with comma",{MAGNET}\nPlain title, {"ef" * 32}\n'
    items, errors = parse_lines(text, "Default")
    assert errors == []
    assert [(work, spec.key) for spec, work in items] == [
        ("Default", V1), ("Title, with comma", "cd" * 20), ("Plain title", "ef" * 32)]
    assert items[1][0].display_name == "a,b"  # a comma inside the magnet stays in it


def test_every_bad_line_is_reported_with_its_number() -> None:
    items, errors = parse_lines(f"{V1}\nnot a hash\n{'zz' * 20}\nTitle only,\n", "W")
    assert len(items) == 1
    assert [e.line for e in errors] == [2, 3, 4]
    assert all(e.detail for e in errors)


def test_a_line_without_any_title_is_an_error() -> None:
    _, errors = parse_lines(V1, "")
    assert [e.line for e in errors] == [1]
    assert "no work title" in errors[0].detail


def test_empty_and_too_long_lists() -> None:
    assert parse_lines("\n# nothing\n", "W")[1][0].detail.startswith("the list is empty")
    lines = "".join(f"{i + 1:040x}\n" for i in range(MAX_LINES + 1))
    items, errors = parse_lines(lines, "W")
    assert len(items) == MAX_LINES
    assert [e.line for e in errors] == [MAX_LINES + 1]
