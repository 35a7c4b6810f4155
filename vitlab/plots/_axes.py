"""Axis helpers shared by the plot modules."""

from __future__ import annotations

from collections.abc import Mapping


def label_sizes(ax, table: Mapping[str, Mapping[int, object]]) -> None:
    """Tick a log x axis at every training-set size in ``table`` ({arm: {size: ...}}), labelled as plain
    numbers ("100", "1,000"), with no minor ticks."""
    sizes = sorted({size for by_size in table.values() for size in by_size})
    ax.set_xticks(sizes, [f"{size:,}" for size in sizes])
    ax.minorticks_off()
