"""Python syntax highlighting as escaped HTML, done in the kernel with Pygments.

The same HTML goes into the live view, the debugger and the static export, so
there is one highlighter. Token classes are short (`k`, `s`, `c`...) to keep
the bytes sent to the front end small.
"""

from __future__ import annotations

from functools import lru_cache

from .sanitize import esc

# Pygments token type (by its top-level names) -> our element's suffix.
_CLASSES = (
    ("Comment", "c"),
    ("Keyword", "k"),
    ("Name.Builtin", "b"),
    ("Name.Function", "f"),
    ("Name.Class", "f"),
    ("Name.Decorator", "f"),
    ("Literal.String", "s"),
    ("Literal.Number", "m"),
    ("Operator.Word", "k"),
)


@lru_cache(maxsize=1)
def _lexer():
    from pygments.lexers import PythonLexer

    return PythonLexer(stripnl=False, ensurenl=False)


def _class_of(ttype) -> str:
    name = str(ttype)[len("Token."):]
    for prefix, cls in _CLASSES:
        if name == prefix or name.startswith(prefix + "."):
            return cls
    return ""


def highlight_python(code: str) -> str:
    """`code` as HTML: escaped text with <r-k>, <r-s>, <r-c>, <r-m>... around keywords, strings, comments, numbers."""
    out: list[str] = []
    run_cls, run = "", []
    for ttype, value in _lexer().get_tokens(code):
        cls = _class_of(ttype) if value.strip() else run_cls
        if cls != run_cls and run:
            out.append(_span(run_cls, "".join(run)))
            run = []
        run_cls = cls
        run.append(value)
    if run:
        out.append(_span(run_cls, "".join(run)))
    return "".join(out)


def _span(cls: str, text: str) -> str:
    return f"<r-{cls}>{esc(text)}</r-{cls}>" if cls else esc(text)
