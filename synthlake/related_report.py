"""The validation report of a run of related tables: one self-contained HTML page with the verdict, every check,
and for each child table its children-per-parent distribution, a few real and synthetic sequences side by side,
and the transition matrix of a categorical column (real against synthetic). Pieces and style from
synthlake.report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from synthlake.column_types import category_strings, to_float
from synthlake.metadata import ColumnKind, ColumnSpec
from synthlake.report import CSS, escape, figure, html_table, mpl_text, png, style_axes, verdict_section

SEQUENCES_SHOWN = 3  # real and synthetic sequences drawn side by side
TOP_CATEGORIES = 8  # categories of a transition matrix (the rest are "other")


@dataclass
class Family:
    """A child table's rows under a sample of parents, real and synthetic (bounded samples)."""

    table: str
    key: str  # the child's foreign key
    order_by: str | None
    columns: list[ColumnSpec]  # the child's learned columns
    real_lengths: np.ndarray  # children per parent
    synthetic_lengths: np.ndarray
    real: pd.DataFrame
    synthetic: pd.DataFrame


def render_related_report(*, dataset: str, run_id: str, passed: bool, checks: list[dict],
                          families: list[Family]) -> str:
    title = f"Synthetic data validation: {dataset} / run {run_id} (related tables)"
    rows = [[f"<code>{escape(c['check'])}</code>", escape(c["family"]), _value(c["value"]),
             escape("" if c["threshold"] is None else f"{c['op']} {c['threshold']}"),
             {True: "pass", False: "FAIL", None: "reported"}[c["passed"]]] for c in checks]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>Synthetic data validation: <code>{escape(dataset)}</code>, run <code>{escape(run_id)}</code></h1>",
        verdict_section(passed, checks),
        "<h2>Checks</h2>", html_table(["check", "family", "value", "gate", "result"], rows, "no checks"),
        *[_family_section(f) for f in families],
        f'<p class="muted">Generated {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC.</p>',
        "</main></body></html>",
    ]
    return "\n".join(parts)


def _value(value) -> str:
    return escape(f"{value:.4f}" if isinstance(value, float) else value)


def _family_section(family: Family) -> str:
    parts = [f"<h2>Table <code>{escape(family.table)}</code></h2>", _lengths(family)]
    if family.order_by is not None:
        numeric = [c for c in family.columns if c.kind == ColumnKind.NUMERIC][:2]
        if numeric:
            parts.append(_sequences(family, numeric))
        categorical = next((c for c in family.columns if c.kind == ColumnKind.CATEGORICAL), None)
        if categorical is not None:
            parts.append(_transitions(family, categorical))
    return "\n".join(parts)


def _lengths(family: Family) -> str:
    fig = figure(6.4, 2.8)
    ax = fig.add_subplot()
    top = int(max(family.real_lengths.max(initial=0), family.synthetic_lengths.max(initial=0)))
    bins = np.linspace(0, top + 1, min(top + 2, 40))
    ax.hist([family.real_lengths, family.synthetic_lengths], bins=bins, density=True,
            label=["real", "synthetic"], color=["#4c72b0", "#dd8452"])
    ax.set_xlabel(mpl_text(f"rows per parent in {family.table}", 60))
    style_axes(fig, ax)  # the legend: real, synthetic
    return "<h3>Children per parent</h3>" + png(fig, f"rows per parent in {family.table}, real and synthetic")


def _sequences(family: Family, columns: list[ColumnSpec]) -> str:
    fig = figure(6.4, 2.4 * len(columns))
    for row, spec in enumerate(columns):
        for side, (label, frame) in enumerate((("real", family.real), ("synthetic", family.synthetic))):
            ax = fig.add_subplot(len(columns), 2, 2 * row + side + 1)
            ordered = frame.sort_values([family.key, family.order_by], kind="stable")
            for _, group in list(ordered.groupby(family.key, sort=False))[:SEQUENCES_SHOWN]:
                ax.plot(np.arange(len(group)), to_float(group[spec.name]), marker=".", linewidth=1)
            ax.set_title(mpl_text(f"{label}: {spec.name}", 40), fontsize=9)
            ax.set_xlabel("position")
            ax.spines[["top", "right"]].set_visible(False)
    return ("<h3>Sequences, real and synthetic</h3>"
            + png(fig, f"{SEQUENCES_SHOWN} real and synthetic sequences of {family.table}"))


def _transitions(family: Family, spec: ColumnSpec) -> str:
    labels = category_strings(family.real[spec.name], "(null)")
    kept = labels.value_counts().index[:TOP_CATEGORIES].tolist()
    fig = figure(6.4, 3.2)
    for side, (label, frame) in enumerate((("real", family.real), ("synthetic", family.synthetic))):
        matrix = _transition_matrix(frame, family.key, family.order_by, spec.name, kept)
        ax = fig.add_subplot(1, 2, side + 1)
        ax.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
        ax.set_xticks(range(len(matrix.columns)), [mpl_text(c, 10) for c in matrix.columns], rotation=90,
                      fontsize=7)
        ax.set_yticks(range(len(matrix.index)), [mpl_text(c, 10) for c in matrix.index], fontsize=7)
        ax.set_title(mpl_text(f"{label}: {spec.name} next", 40), fontsize=9)
    return ("<h3>Transitions (row: a value; columns: the share of each next value)</h3>"
            + png(fig, f"transition matrices of {spec.name}, real and synthetic"))


def _transition_matrix(frame: pd.DataFrame, key: str, order_by: str, column: str, kept: list[str]) -> pd.DataFrame:
    ordered = frame.sort_values([key, order_by], kind="stable").reset_index(drop=True)
    labels = category_strings(ordered[column], "(null)")
    labels = labels.where(labels.isin(kept), "other")
    following = labels.groupby(ordered[key].to_numpy()).shift(-1)
    pairs = pd.crosstab(labels[following.notna()], following[following.notna()], normalize="index")
    names = kept + (["other"] if "other" in set(labels) else [])
    return pairs.reindex(index=names, columns=names, fill_value=0.0)
