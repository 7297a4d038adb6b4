"""Text from users and their files, made safe to print on a terminal or write into Markdown.

A name, statement, path or quoted file line may hold escape sequences (`\\x1b[2J` clears the
screen, `\\x1b]8;;URL\\x07` plants a hyperlink) or bidirectional overrides: `for_terminal`
writes every such character as a visible escape. Rich markup (`[bold]`) needs no escaping here:
the CLI's consoles have markup off and renderables are built from `Text`, never parsed.

In Markdown, `|` ends a table cell, a newline ends a table row, a backtick opens code, `<`
opens raw HTML (so it is written `&lt;`) and `[...](...)` makes a link: `for_markdown` escapes
each, so user text reads as written and cannot restructure the ledger; `markdown_code` puts
text in a code span.
"""

from __future__ import annotations

import re

MARKDOWN_SPECIAL = re.compile(r"([\\`|\[\]])")


def for_terminal(text: object) -> str:
    """`text` (a path, say, as str() writes it) with control and format characters written as
    escapes (`\\x1b`); newlines and tabs kept."""
    return "".join(c if c.isprintable() or c in "\n\t" else _escape(c) for c in str(text))


def for_markdown(text: str) -> str:
    """`text` as literal inline Markdown on one line, safe inside a table cell."""
    one_line = " ".join(text.splitlines()).replace("\t", " ")
    # `<` as an entity: not every Markdown renderer honours `\\<`
    return MARKDOWN_SPECIAL.sub(r"\\\1", for_terminal(one_line)).replace("<", "&lt;")


def markdown_code(text: str) -> str:
    """`text` as one inline code span: a fence longer than any run of backticks in it, its
    control characters visible, `|` escaped (GitHub tables split on it even inside code)."""
    shown = for_terminal(" ".join(text.splitlines()).replace("\t", " ")).replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", shown)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if shown.startswith("`") or shown.endswith("`") else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


def _escape(c: str) -> str:
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
