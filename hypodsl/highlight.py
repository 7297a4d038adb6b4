"""A Pygments lexer for `.hyp`, used when the CLI shows spec text."""

from __future__ import annotations

from typing import ClassVar

from pygments.lexer import RegexLexer, words
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String, Text

KEYWORDS = (
    "study",
    "run",
    "runs",
    "import",
    "probe",
    "split",
    "n",
    "seed",
    "confidence",
    "correction",
    "mark",
    "window",
    "path",
    "circuit",
    "claim",
    "expect",
    "pending",
    "at",
    "over",
    "on",
    "with",
    "and",
    "birth",
    "before",
    "after",
    "final",
    "first",
    "basis",
    "sha256",
    "family",
    "select",
    "neurons",
    "features",
    "heads",
    "sustained",
    "where",
    "top",
    "by",
    "exploratory",
    "prior",
)
CONSTANTS = (
    "supported",
    "negative",
    "unsupported",
    "holm",
    "bh",
    "none",
    "all",
    "mean",
    "trend",
    "zero",
    "resample",
    "embed",
    "pos",
    "unembed",
)


class HypLexer(RegexLexer):
    name = "hyp"
    aliases: ClassVar[list[str]] = ["hyp", "hypodsl"]
    filenames: ClassVar[list[str]] = ["*.hyp"]

    tokens: ClassVar[dict] = {
        "root": [
            (r"#[^\n]*", Comment.Single),
            (r'"([^"\\\n]|\\.)*"', String.Double),
            (r"L[0-9]+\.(H[0-9]+(\.[qkv])?|mlp)\b", Name.Class),
            (r"[A-Za-z_][A-Za-z0-9_]*\.(f[0-9]+|error)\b", Name.Class),  # l2.f27, l2.error
            (words(KEYWORDS, suffix=r"\b"), Keyword),
            (words(CONSTANTS, suffix=r"\b"), Keyword.Constant),
            (r"[A-Za-z_][A-Za-z0-9_]*(?=\s*\()", Name.Function),
            (r"[A-Za-z_][A-Za-z0-9_]*", Name),
            (r"[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?", Number),
            (r"->|<-|\.\.|<=|>=|[<>=+\-*/|]", Operator),
            (r"[{}()\[\],:]", Punctuation),
            (r"\s+", Text),
        ]
    }
