"""Plain text → LaTeX text: one table of special characters for the whole report (tables, captions, claims)."""

from __future__ import annotations

#: plain character → LaTeX, for every text the report prints (the claims table overrides a few in math mode)
LATEX_SPECIAL = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_",
                 "{": "\\{", "}": "\\}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}",
                 # in the default OT1 font encoding "<" and ">" print as "¡" and "¿" (the captions' "<variant>@...")
                 "<": "\\textless{}", ">": "\\textgreater{}",
                 # pdflatex's default input encoding prints "×" as "Ö"
                 "×": "$\\times$", "–": "--", "±": "$\\pm$"}


def latex_escape(text: str) -> str:
    """Plain text (a table's caption) → LaTeX."""
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)
