"""Comparing runs: :mod:`.figures` (matplotlib PNGs for tables and reports) and
:mod:`.report` (``affectlab-report``: Markdown, self-contained HTML, TensorBoard images)."""
