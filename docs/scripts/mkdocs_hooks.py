"""mkdocs hooks for this site (wired in mkdocs.yml under ``hooks:``).

The docstrings use Sphinx cross-reference roles (``:class:`X```, ``:meth:`y```) that
mkdocstrings renders verbatim, as ``:class:<code>X</code>``; keep just the code.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:attr|class|data|exc|func|meth|mod|obj):(?=<code>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    """Drop the role prefix in front of inline code."""
    return _ROLE.sub("", html)
