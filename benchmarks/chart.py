"""The PNG summary: one panel per section, each figure as a bar coloured by its verdict."""

from __future__ import annotations

from pathlib import Path

from .harness import SectionResult

#: Per section title prefix: which rows to draw (by unit) and the axis label.
PANELS = {
    "1.": ("records/s", "records / s (higher is better)"),
    "2.": ("req/s", "requests / s (higher is better)"),
    "3.": ("x", "achieved / configured qps"),
    "4.": ("x", "ratio to floor"),
    "5.": ("MiB", "peak RSS, MiB"),
}
COLOURS = {"PASS": "#2e7d32", "MISS": "#c62828", "INFO": "#607d8b", "SKIP": "#bdbdbd"}


def write_chart(sections: list[SectionResult], path: Path) -> str | None:
    """Write the chart; returns a note instead when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart skipped: matplotlib is missing (pip install 'keyapi-async[bench]')"
    panels = []
    for section in sections:
        spec = next((v for k, v in PANELS.items() if section.title.startswith(k)), None)
        rows = [r for r in section.rows if spec and r.unit == spec[0] and r.value is not None]
        if spec and rows:
            panels.append((section.title, spec[1], rows))
    if not panels:
        return "chart skipped: nothing to draw"
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.2 + 0.45 * sum(
        len(p[2]) for p in panels)), squeeze=False)
    for ax, (title, label, rows) in zip(axes[:, 0], panels, strict=True):
        names = [r.name for r in rows][::-1]
        values = [float(r.value or 0) for r in rows][::-1]
        ax.barh(names, values, color=[COLOURS[r.verdict] for r in rows][::-1])
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:,.3g}", va="center", fontsize=7)
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xlabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
