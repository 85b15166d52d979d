"""A self-contained HTML validation report for one synthetic-data run.

    results = evaluate_results(real_sample, synthetic_sample, metadata, holdout=holdout_sample)
    html = render_report(dataset="adult", run_id="r42", passed=True, checks=checks, real=real_sample,
                         synthetic=synthetic_sample, metadata=metadata, results=results)

The page needs no network to open: inline CSS, no JavaScript, images as base64 PNG. It reads, in order: the
verdict, the run's facts, the headline fidelity/utility/privacy checks, what gives synthetic rows away (open,
as "Why the gate failed", when a fidelity check failed; collapsed otherwise), per-column shapes, the Great
Expectations results (collapsed), one real-vs-synthetic distribution plot per learned column, the association
matrices (real, synthetic, their difference) and the distance-to-closest-record histogram. The matrices and the
distances are details of the metric results (column_pair_trends, dcr_share): the report draws, it does not
measure. Identifier and PII columns are generated, never learned, so they are not plotted. All text that comes
from the data (column names, category values, check names) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from synthlake.column_types import is_continuous, most_frequent_first, to_float
from synthlake.evaluation import METRICS, MetricResult
from synthlake.evaluation.base import MISSING, bounded, to_labels
from synthlake.evaluation.explain import Explanation
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata

HEADLINE_FAMILIES = ("fidelity", "utility", "privacy")
SHAPE_FAMILY = "column_shape"
FIDELITY_FAMILIES = ("fidelity", SHAPE_FAMILY)  # a failure in one of these opens "Why the gate failed"
EXPECTATION_FAMILY = "expectation"
REQUEST_FAMILIES = ("rules", "conditions", "fairness")  # what the dataset's rules and the run's conditions ask
MAX_PLOT_ROWS = 50_000  # the caller passes bounded samples; this only guards against an unbounded frame
TOP_CATEGORIES = 15
# A wide table's report plots this many columns at most (a plot costs about a quarter of a second): the ones that
# matter most, named in the caption; the checks table still lists every column
MAX_PLOTTED_COLUMNS = 40
HIST_BINS = 30
REAL_COLOR, SYNTHETIC_COLOR = "#3b6fb6", "#e07b39"
DPI = 100

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1f2328;
 margin:0;background:#f6f8fa;font-size:15px;line-height:1.45}
main{max-width:1320px;margin:0 auto;padding:20px 28px 40px;background:#fff}
h1{font-size:1.6em;margin:.2em 0 .4em}h2{font-size:1.25em;margin:1.6em 0 .5em;border-bottom:1px solid #d0d7de;
 padding-bottom:.2em}
.verdict{border-radius:8px;padding:14px 20px;margin:10px 0 16px;color:#fff}
.verdict .word{font-size:2em;font-weight:700;letter-spacing:.04em}
.verdict .count{font-size:1.1em;margin-left:14px}
.verdict.pass{background:#1a7f37}.verdict.fail{background:#cf222e}
.verdict ul{margin:.4em 0 0 1.2em;padding:0}.verdict code{color:#fff;background:rgba(0,0,0,.18)}
table{border-collapse:collapse;margin:6px 0 10px;font-size:.93em}
th,td{border:1px solid #d0d7de;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#eef1f4}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.failed td{background:#ffebe9}table.facts th{width:14em}
.badge{display:inline-block;border-radius:10px;padding:0 9px;font-size:.85em;font-weight:600;color:#fff}
.badge.pass{background:#1a7f37}.badge.fail{background:#cf222e}.badge.info{background:#6e7781}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em;background:#eef1f4;
 padding:0 3px;border-radius:3px}
.muted{color:#57606a}.caption{color:#404850;max-width:70em;margin:4px 0 10px}
details{margin:8px 0;border:1px solid #d0d7de;border-radius:6px;padding:6px 12px}
summary{cursor:pointer;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:14px 18px;align-items:start}
figure{margin:0}figure.plot{border:1px solid #e1e4e8;border-radius:6px;padding:6px 8px;background:#fff}
figure.plot.failed{border-color:#cf222e}
figcaption{font-size:.9em;margin-bottom:3px}figcaption b{font-size:1.05em}
img{width:100%;height:auto;display:block}
img.wide{max-width:1500px}img.dcr{max-width:760px}
.note{font-size:.85em;color:#57606a}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px -1px 10px;border-radius:2px}
pre{background:#eef1f4;padding:6px 10px;border-radius:4px;overflow-x:auto;margin:4px 0 10px}
footer{margin-top:2.2em;border-top:1px solid #d0d7de;padding-top:.6em;font-size:.88em;color:#57606a}
@media (max-width:1000px){.grid{grid-template-columns:repeat(2,minmax(0,1fr))}}
"""


def render_report(
    *,
    dataset: str,
    run_id: str,
    passed: bool,
    checks: list[dict],
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    metadata: TableMetadata,
    results: Mapping[str, MetricResult] | None = None,
    facts: dict[str, object] | None = None,
    explanation: Explanation | None = None,
    rules: list[tuple[str, str, float | None]] | None = None,
    drift: Mapping | None = None,
) -> str:
    """The validation report of one run as one self-contained HTML page.

    `checks`: dicts with "check", "family" (fidelity, utility, privacy, column_shape or expectation), "value",
    "threshold", "op" and "passed". `real`, `synthetic`: bounded samples of the real training data and the
    synthetic data. `results`: the run's metric results by name; the report draws column_pair_trends'
    association matrices and dcr_share's distances (a section says so when its result is absent).
    `facts`: small key/value pairs for the header (generator, rows, model version, epsilon, ...).
    `explanation`: what gives synthetic rows away (synthlake.evaluation.explain), drawn after the headline.
    `rules`: the dataset's rules as (label, what it says, share of the source's training rows breaking it).
    `drift`: the run's retraining decision: "decision", "reason", "champion" (a version or None), "thresholds"
    and "columns" (column -> psi, js or ks, drifted), the source against the champion's.
    """
    checks = [dict(c) for c in checks]
    results = results or {}
    dcr = results.get("dcr_share")
    real_rows, synthetic_rows = len(real), len(synthetic)
    real = bounded(real, MAX_PLOT_ROWS, 0)
    synthetic = bounded(synthetic, MAX_PLOT_ROWS, 1)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    title = f"Synthetic data validation: {dataset} / run {run_id}"
    shape_checks = {_shape_column(c, metadata): c for c in checks if c.get("family") == SHAPE_FAMILY}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>Synthetic data validation: <code>{escape(dataset)}</code>, run <code>{escape(run_id)}</code></h1>",
        verdict_section(passed, checks),
        _facts(facts),
        _headline_table(checks),
        _explanation(explanation, checks),
        _rules_section(rules, checks),
        _drift_section(drift),
        _shapes_table(checks, metadata),
        _expectations(checks),
        _distributions(real, synthetic, metadata, shape_checks),
        _associations(results.get("column_pair_trends")),
        _dcr_section(dcr),
        _footer(real_rows, synthetic_rows, len(real), len(synthetic), metadata, dcr, generated),
        "</main></body></html>",
    ]
    return "\n".join(p for p in parts if p)


# --- text --------------------------------------------------------------------------------------------------


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if float(value).is_integer() and abs(value) >= 10:
        return f"{value:,.0f}"
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    if abs(value) >= 10:
        return f"{value:.2f}"
    return f"{value:.4f}"


def _fmt(value: object) -> str:
    """A value for a table cell, escaped: numbers to 4 decimals, None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}" if abs(int(value)) >= 10_000 else str(int(value))
    if isinstance(value, float | np.floating):
        return _number(float(value))
    text = str(value)
    return escape(text if len(text) <= 200 else text[:197] + "...")


def _badge(ok: object) -> str:
    """passed True / False, or None for a metric measured and reported but not a gate."""
    if ok is None:
        return '<span class="badge info">REPORTED</span>'
    return '<span class="badge pass">PASS</span>' if ok else '<span class="badge fail">FAIL</span>'


def _threshold(check: Mapping) -> str:
    threshold, op = check.get("threshold"), check.get("op")
    if threshold is None:
        return "— (not a gate)" if check.get("passed") is None and op else "—"
    op_text = escape(str(op).replace("<=", " ≤").replace(">=", " ≥").replace("-", " − ")) if op else ""
    if isinstance(threshold, float | np.floating) and math.isfinite(threshold) and abs(threshold) < 1000:
        value = f"{float(threshold):.4f}".rstrip("0").rstrip(".")
    else:
        value = "" if threshold is None else _fmt(threshold)
    return f"{op_text} {value}".strip()


def _row_class(check: Mapping) -> str:
    return ' class="failed"' if check.get("passed") is False else ""


def _short(name: str) -> str:
    return str(name).rsplit(":", 1)[-1]


# --- sections: verdict, facts, tables ----------------------------------------------------------------------


def verdict_section(passed: bool, checks: list[dict]) -> str:
    gated = [c for c in checks if c.get("passed") is not None]  # the others are reported, not gates
    failed = [c for c in gated if c.get("passed") is False]
    n_ok = len(gated) - len(failed)
    word, cls = ("PASSED", "pass") if passed else ("FAILED", "fail")
    out = [
        f'<section class="verdict {cls}"><span class="word">{word}</span>',
        f'<span class="count">{n_ok}/{len(gated)} checks passed</span>',
    ]
    if failed:
        label = "Failed checks" if not passed else "Checks that failed (not blocking the verdict)"
        out.append(f"<div>{label} ({len(failed)}):</div><ul>")
        out += [f"<li><code>{escape(c.get('check', '?'))}</code></li>" for c in failed]
        out.append("</ul>")
    elif not passed:
        out.append("<div>No individual check failed; the run was marked as failed by the pipeline.</div>")
    out.append("</section>")
    return "\n".join(out)


def _facts(facts: Mapping[str, object] | None) -> str:
    if not facts:
        return ""
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in facts.items())
    return f'<table class="facts">{rows}</table>'


def _headline_table(checks: list[dict]) -> str:
    known = (*HEADLINE_FAMILIES, SHAPE_FAMILY, EXPECTATION_FAMILY, *REQUEST_FAMILIES)
    order = {f: i for i, f in enumerate(HEADLINE_FAMILIES)}
    rows = [c for c in checks if c.get("family") not in (SHAPE_FAMILY, EXPECTATION_FAMILY)]
    rows.sort(key=lambda c: order.get(c.get("family"), len(order)))  # stable: the caller's order within a family
    out = ["<h2>Headline metrics</h2>"]
    if not rows:
        out.append('<p class="muted">No fidelity, utility or privacy checks were recorded for this run.</p>')
        return "\n".join(out)
    out.append(
        "<table><tr><th>check</th><th>family</th><th>value</th><th>threshold</th><th>result</th><th>meaning</th></tr>"
    )
    for c in rows:
        family = c.get("family")
        family_text = escape(family) if family in known else f"{escape(family)} <span class=muted>(other)</span>"
        out.append(
            f"<tr{_row_class(c)}><td><code>{escape(c.get('check', '?'))}</code></td><td>{family_text}</td>"
            f'<td class="num">{_fmt(c.get("value"))}</td><td class="num">{_threshold(c)}</td>'
            f"<td>{_badge(c.get('passed'))}</td>"
            f'<td class="muted">{escape(_meaning(c.get("check", "")))}</td></tr>'
        )
    out.append("</table>")
    return "\n".join(out)


def _meaning(check: str) -> str:
    """What a known metric means, matched on the check name's last ':' part."""
    metric = METRICS.get(_short(check))
    return metric.meaning if metric else ""


def _shape_column(check: Mapping, metadata: TableMetadata) -> str:
    """The column a column_shape check is about: its name with a `column_shape:`-style prefix stripped."""
    name = str(check.get("check", ""))
    if name in metadata.names:
        return name
    for sep in (":", "."):
        if sep in name:
            _, rest = name.split(sep, 1)
            if rest in metadata.names:
                return rest
    return _short(name)


def _shapes_table(checks: list[dict], metadata: TableMetadata) -> str:
    rows = [c for c in checks if c.get("family") == SHAPE_FAMILY]
    if not rows:
        return ""
    out = [
        "<h2>Column shapes</h2>",
        '<p class="caption">Per learned column: 1 − Kolmogorov–Smirnov statistic for numeric and datetime '
        "columns, 1 − total variation distance of category frequencies for categorical ones (1 = identical "
        "distributions).</p>",
        "<table><tr><th>column</th><th>kind</th><th>score</th><th>threshold</th><th>result</th></tr>",
    ]
    for c in rows:
        column = _shape_column(c, metadata)
        kind = metadata.column(column).kind.value if column in metadata.names else "—"
        out.append(
            f"<tr{_row_class(c)}><td><code>{escape(column)}</code></td><td>{escape(kind)}</td>"
            f'<td class="num">{_fmt(c.get("value"))}</td><td class="num">{_threshold(c)}</td>'
            f"<td>{_badge(c.get('passed'))}</td></tr>"
        )
    out.append("</table>")
    return "\n".join(out)


def _expectations(checks: list[dict]) -> str:
    rows = [c for c in checks if c.get("family") == EXPECTATION_FAMILY]
    if not rows:
        return ""
    failed = [c for c in rows if not c.get("passed")]
    ok = [c for c in rows if c.get("passed")]
    summary = f"Great Expectations: {len(ok)} passed, {len(failed)} failed"
    if failed:
        summary += ' <span class="badge fail">FAIL</span>'
    out = [
        "<h2>Data expectations</h2>",
        '<p class="caption">Great Expectations suite derived from the real data\'s profile (columns, types, '
        "not-null, numeric ranges, category sets), run on every synthetic row. Observed: the percent of "
        "unexpected rows, or the observed value.</p>",
        f"<details><summary>{summary}</summary>",
    ]
    with_threshold = any(c.get("threshold") is not None or c.get("op") for c in rows)
    threshold_head = "<th>threshold</th>" if with_threshold else ""
    out.append(f"<table><tr><th>expectation</th><th>observed</th>{threshold_head}<th>result</th></tr>")
    for c in failed + ok:
        threshold = f'<td class="num">{_threshold(c)}</td>' if with_threshold else ""
        out.append(
            f"<tr{_row_class(c)}><td><code>{escape(c.get('check', '?'))}</code></td>"
            f'<td class="num">{_fmt(c.get("value"))}</td>{threshold}<td>{_badge(c.get("passed"))}</td></tr>'
        )
    out.append("</table></details>")
    return "\n".join(out)


def _rules_section(rules: list[tuple[str, str, float | None]] | None, checks: list[dict]) -> str:
    """Each rule: what it says, how often the source breaks it, how many synthetic rows do (must be 0)."""
    if not rules:
        return ""
    staged = {c.get("check"): c for c in checks if c.get("family") == "rules"}
    rows = []
    for label, says, source_share in rules:
        check = staged.get(label, {})
        rows.append(f"<tr{_row_class(check)}><td><code>{escape(label)}</code></td><td>{escape(says)}</td>"
                    f'<td class="num">{_fmt(source_share)}</td><td class="num">{_fmt(check.get("value"))}</td>'
                    f"<td>{_badge(check.get('passed'))}</td></tr>")
    return "\n".join([
        "<h2>Business rules</h2>",
        '<p class="caption">The dataset config\'s rules hold on every generated row by construction; each is a '
        "Great Expectations expectation over every staged row. Source: the share of the real training rows "
        "that break it (the profile stage refuses a rule broken more often than allowed).</p>",
        "<table><tr><th>rule</th><th>says</th><th>source rows breaking it</th><th>synthetic rows breaking it</th>"
        "<th>result</th></tr>", *rows, "</table>"])


def _drift_section(drift: Mapping | None) -> str:
    """The check stage's decision and the columns' drift scores, the most drifted first."""
    if not drift:
        return ""
    limits = drift.get("thresholds") or {}
    columns = sorted((drift.get("columns") or {}).items(), key=lambda kv: -kv[1]["psi"])
    rows = [f"<tr{_row_class({'passed': not d['drifted']})}><td><code>{escape(name)}</code></td>"
            f'<td class="num">{_fmt(d["psi"])}</td><td class="num">{_fmt(d.get("js"))}</td>'
            f'<td class="num">{_fmt(d.get("ks"))}</td><td>{"drifted" if d["drifted"] else "stable"}</td></tr>'
            for name, d in columns]
    table = ["<table><tr><th>column</th><th>PSI</th><th>Jensen-Shannon</th><th>KS</th><th></th></tr>", *rows,
             "</table>"] if rows else ["<p>No drift scores: there was no source of the champion's to compare.</p>"]
    return "\n".join([
        "<h2>Drift and retraining</h2>",
        f"<p><strong>{escape(drift.get('decision'))}</strong>: {escape(drift.get('reason'))}.</p>",
        f'<p class="caption">This run\'s training rows against those the champion model learned (PSI over the '
        f"champion's bins; Jensen-Shannon distance for categories, KS at the champion's ventiles for numbers). A "
        f"column drifted above PSI {_fmt(limits.get('psi'))}, JS {_fmt(limits.get('js'))} or KS "
        f"{_fmt(limits.get('ks'))} (params.yaml check).</p>", *table])


# --- what gives synthetic rows away -----------------------------------------------------------------------


def _explanation(explanation: Explanation | None, checks: list[dict]) -> str:
    """Open, as "Why the gate failed", when a fidelity or column-shape check failed; collapsed otherwise."""
    if explanation is None:
        return ""
    failed = [c for c in checks if c.get("family") in FIDELITY_FAMILIES and c.get("passed") is False]
    if failed:
        names = ", ".join(f"<code>{escape(c.get('check', '?'))}</code>" for c in failed)
        head, tail = ['<h2 id="why">Why the gate failed</h2>', f"<p>Failed fidelity checks: {names}.</p>"], []
    else:
        head = ['<h2 id="why">What distinguishes synthetic rows</h2>',
                "<details><summary>Top detector features, worst columns and pairs, rule hints</summary>"]
        tail = ["</details>"]
    body = [
        "<h3>What the detector tells rows apart by</h3>",
        '<p class="caption">The detection_auc classifier\'s top columns: how much its AUC drops when the column '
        "alone is shuffled among rows it did not train on (0: not used).</p>",
        html_table(["column", "AUC drop when shuffled"], [[_code(c), _fmt(v)] for c, v in explanation.features],
               "No column lowers the detector's AUC when shuffled (or detection_auc was not computed)."),
        "<h3>Columns and pairs furthest from the real data</h3>",
        '<p class="caption">Lowest scores first (1 = identical): accuracy is 1 − TVD of the discretised column '
        "or pair, shape the column's KS / TV complement, pair trend its correlation or contingency "
        "similarity.</p>",
        html_table(["column", "accuracy", "shape"],
               [[_code(s.column), _fmt(s.accuracy), _fmt(s.shape)] for s in explanation.worst_columns],
               "No per-column scores were computed."),
        html_table(["column pair", "accuracy", "pair trend"],
               [[f"{_code(p.columns[0])} × {_code(p.columns[1])}", _fmt(p.accuracy),
                 f"{_fmt(p.trend)} <span class=muted>{escape(p.trend_metric or '')}</span>"]
                for p in explanation.worst_pairs], "No per-pair scores were computed."),
        "<h3>Rules that would help</h3>",
    ]
    if explanation.hints:
        body.append('<p class="caption">Each line can go under the dataset config\'s <code>rules:</code>; '
                    "together with the rules already there, the engine accepts them. The rule then holds on "
                    "every generated row by construction.</p><ul>")
        body += [f"<li>{escape(h.evidence)}<pre><code>{escape(h.yaml)}</code></pre></li>" for h in explanation.hints]
        body.append("</ul>")
    else:
        body.append('<p class="muted">None found: no inequality, derived column (date part, copy, sum or '
                    "difference) or fixed combination holds on the real rows and is broken on the synthetic "
                    "rows.</p>")
    return "\n".join(head + body + tail)


def _code(text: object) -> str:
    return f"<code>{escape(text)}</code>"


def html_table(header: list[str], rows: list[list[str]], empty: str) -> str:
    """Cells are HTML already (escaped by the caller); the first column is text, the others numbers."""
    if not rows:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" if i == 0 else f'<td class="num">{c}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


# --- plots -------------------------------------------------------------------------------------------------


def figure(width: float, height: float):
    """A matplotlib Figure on its own Agg canvas. pyplot is never imported and `matplotlib.use` never called:
    no global backend state changes (switching it would close a notebook user's open figures), no display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png(fig, alt: str, cls: str = "") -> str:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")  # drawn as a box: harmless
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})  # no URL in the PNG's tags
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    css = f' class="{cls}"' if cls else ""
    return f'<img{css} src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def mpl_text(text: object, limit: int = 22) -> str:
    """Text safe for matplotlib (a '$' would start mathtext), shortened for an axis label."""
    text = str(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _values(frame: pd.DataFrame, spec: ColumnSpec) -> np.ndarray:
    """A continuous column as floats (datetimes: seconds since the epoch), parsing datetime strings if needed."""
    values = frame[spec.name]
    if spec.kind == ColumnKind.DATETIME and not pd.api.types.is_datetime64_any_dtype(values):
        values = pd.to_datetime(values, errors="coerce", utc=True)
    return to_float(values)


def _pct(part: float, whole: int) -> str:
    if not whole:
        return "n/a"
    share = 100 * part / whole
    return "<0.1%" if 0 < share < 0.05 else f"{share:.1f}%"


def _distributions(
    real: pd.DataFrame, synthetic: pd.DataFrame, metadata: TableMetadata, shape_checks: Mapping[str, Mapping]
) -> str:
    specs = metadata.learned_columns
    if len(specs) > MAX_PLOTTED_COLUMNS:  # failed and lowest shape scores first
        def rank(spec):
            check = shape_checks.get(spec.name) or {}
            return (check.get("passed") is not False, check.get("value") if check.get("value") is not None else 1)

        kept = {s.name for s in sorted(specs, key=rank)[:MAX_PLOTTED_COLUMNS]}
        specs = [s for s in specs if s.name in kept]
    out = [
        "<h2>Distributions, real vs synthetic</h2>",
        '<p class="caption legend">One plot per learned column:<span style="background:'
        f'{REAL_COLOR}"></span>real<span style="background:{SYNTHETIC_COLOR}"></span>synthetic. Numeric and '
        "datetime columns as histograms of the share of non-null rows per bin, the same bins over the real "
        "data's range for both (synthetic values outside it are counted in the caption; a log scale when one "
        f"bin holds most rows); categorical columns as "
        f'frequencies of the {TOP_CATEGORIES} most frequent real categories, the rest as "(other)" and '
        'nulls as "(null)".'
        + (f" The {len(specs)} columns of {len(metadata.learned_columns)} with the lowest shape scores."
           if len(specs) < len(metadata.learned_columns) else "") + "</p>",
        '<div class="grid">',
    ]
    for spec in specs:
        check = shape_checks.get(spec.name)
        failed = check is not None and not check.get("passed")
        score = ""
        if check is not None:
            score = f" · shape {_fmt(check.get('value'))} {_badge(check.get('passed'))}"
        head = f"<b>{escape(spec.name)}</b> <span class=muted>{escape(spec.kind.value)}</span>{score}"
        if spec.name not in real.columns or spec.name not in synthetic.columns:
            side = "real" if spec.name not in real.columns else "synthetic"
            body, note = f'<p class="muted">column missing from the {side} data</p>', ""
        elif is_continuous(spec):
            body, note = _histogram(real, synthetic, spec)
        else:
            body, note = _bars(real, synthetic, spec)
        cls = "plot failed" if failed else "plot"
        out.append(
            f'<figure class="{cls}" data-column="{escape(spec.name)}"><figcaption>{head}'
            f'<div class="note">{escape(note)}</div></figcaption>{body}</figure>'
        )
    out.append("</div>")
    return "\n".join(out)


def _histogram(real: pd.DataFrame, synthetic: pd.DataFrame, spec: ColumnSpec) -> tuple[str, str]:
    r_all, s_all = _values(real, spec), _values(synthetic, spec)
    r, s = r_all[~np.isnan(r_all)], s_all[~np.isnan(s_all)]
    nulls = f"nulls: real {_pct(r_all.size - r.size, r_all.size)}, synthetic {_pct(s_all.size - s.size, s_all.size)}"
    if r.size == 0:
        return '<p class="muted">no non-null real values</p>', nulls
    lo, hi = float(r.min()), float(r.max())
    integer_like = spec.kind == ColumnKind.NUMERIC and bool(np.all(r == np.round(r)))
    if hi == lo:
        edges = np.array([lo - 0.5, hi + 0.5])
    elif integer_like:  # bins of whole numbers of integers, centred on them: no aliasing
        width = max(1.0, math.ceil((hi - lo + 1) / HIST_BINS))
        edges = np.arange(lo - 0.5, hi + 0.5 + width, width)
    else:
        edges = np.linspace(lo, hi, HIST_BINS + 1)
    outside = int(((s < edges[0]) | (s > edges[-1])).sum())
    note = nulls + (f"; synthetic outside the real range: {_pct(outside, s.size)}" if outside else "")
    scale = 86_400.0 if spec.kind == ColumnKind.DATETIME else 1.0  # matplotlib dates: days since 1970-01-01
    edges_plot, r_plot, s_plot = edges / scale, r / scale, s / scale
    # share of the non-null rows per bin (all bins are equally wide); synthetic values outside the real range
    # count in the denominator, so that their mass shows as missing area
    r_share = np.histogram(r_plot, edges_plot)[0] / r.size
    s_share = np.histogram(s_plot, edges_plot)[0] / max(s.size, 1)
    log = r_share.max() > 0.6 and np.count_nonzero(r_share) > 1
    fig = figure(4.4, 2.9)
    ax = fig.subplots()
    ax.stairs(r_share, edges_plot, fill=True, color=REAL_COLOR, alpha=0.45, label="real")
    if s.size:
        ax.stairs(s_share, edges_plot, color=SYNTHETIC_COLOR, linewidth=1.6, label="synthetic")
    if log:
        ax.set_yscale("log")
        note += "; log scale"
    ax.set_ylabel("share of rows per bin" + (" (log)" if log else ""), fontsize=8)
    ax.tick_params(labelsize=8)
    if spec.kind == ColumnKind.DATETIME:
        import matplotlib.dates as mdates

        locator = mdates.AutoDateLocator(minticks=3, maxticks=7)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    else:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=integer_like))
        ax.xaxis.set_major_formatter(_compact_formatter())
    style_axes(fig, ax)
    return png(fig, f"{spec.name}: real vs synthetic histogram"), note


def style_axes(fig, ax) -> None:
    fig.legend(loc="outside upper right", ncols=2, fontsize=8, frameon=False, handlelength=1.2)
    ax.spines[["top", "right"]].set_visible(False)


def _compact_formatter():
    from matplotlib.ticker import FuncFormatter

    def fmt(x, _pos):
        a = abs(x)
        if a >= 1e6:
            return f"{x / 1e6:g}M"
        if a >= 1e4:
            return f"{x / 1e3:g}k"
        return f"{x:g}"

    return FuncFormatter(fmt)


def _bars(real: pd.DataFrame, synthetic: pd.DataFrame, spec: ColumnSpec) -> tuple[str, str]:
    r, s = to_labels(real[spec.name]), to_labels(synthetic[spec.name])
    counts = r[r != MISSING].value_counts(sort=False)
    top = [v for v, _ in most_frequent_first(counts.items())[:TOP_CATEGORIES]]
    labels, r_freq, s_freq = [], [], []
    r_n, s_n = max(len(r), 1), max(len(s), 1)
    for value in top:
        labels.append(value)
        r_freq.append((r == value).sum() / r_n)
        s_freq.append((s == value).sum() / s_n)
    keep = set(top) | {MISSING}
    r_other, s_other = (~r.isin(keep)).sum() / r_n, (~s.isin(keep)).sum() / s_n
    if r_other or s_other:
        labels.append("(other)")
        r_freq.append(r_other)
        s_freq.append(s_other)
    r_null, s_null = (r == MISSING).sum() / r_n, (s == MISSING).sum() / s_n
    if r_null or s_null:
        labels.append("(null)")
        r_freq.append(r_null)
        s_freq.append(s_null)
    n_cats = counts.size
    unseen = set(s[s != MISSING].unique()) - set(counts.index)
    note = f"{n_cats} real categories"
    if n_cats > TOP_CATEGORIES:
        note += f", top {TOP_CATEGORIES} shown"
    if unseen:
        note += f"; {len(unseen)} synthetic categories never seen in the real data"
    if not labels:
        return '<p class="muted">no values</p>', note
    k = len(labels)
    fig = figure(4.4, max(1.8, 0.85 + 0.2 * k))
    ax = fig.subplots()
    y = np.arange(k)
    h = 0.4
    ax.barh(y - h / 2, r_freq, height=h, color=REAL_COLOR, alpha=0.8, label="real")
    ax.barh(y + h / 2, s_freq, height=h, color=SYNTHETIC_COLOR, alpha=0.9, label="synthetic")
    ax.set_yticks(y, labels=[mpl_text(v) for v in labels], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share of rows", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlim(0, max(max(r_freq), max(s_freq)) * 1.08 or 1)
    style_axes(fig, ax)
    return png(fig, f"{spec.name}: real vs synthetic category frequencies"), note


# --- associations ------------------------------------------------------------------------------------------


def _associations(pair_trends: MetricResult | None) -> str:
    if pair_trends is None:
        return ('<h2>Associations between columns</h2>\n<p class="muted">No association matrices were computed '
                "for this run (they come with the column_pair_trends metric).</p>")
    associations = pair_trends.details["associations"]
    columns, m_real, m_syn = associations.columns, associations.real, associations.synthetic
    if len(columns) < 2:
        return ""
    diff = np.abs(m_real - m_syn)
    shown = ""
    if len(columns) > MAX_PLOTTED_COLUMNS:  # the columns whose associations differ most
        worst = np.sort(np.where(np.isfinite(diff), diff, -1), axis=1)[:, -1]
        keep = np.sort(np.argsort(-worst, kind="stable")[:MAX_PLOTTED_COLUMNS])
        shown = (f" Shown: the {len(keep)} columns of {len(columns)} whose largest difference is largest.")
        columns = [columns[i] for i in keep]
        m_real, m_syn, diff = (m[np.ix_(keep, keep)] for m in (m_real, m_syn, diff))
    n = len(columns)
    names = [mpl_text(c, 18) for c in columns]
    panel = max(3.6, 0.3 * n + 1.6)
    fig = figure(3 * panel + 1.2, panel)
    axes = fig.subplots(1, 3)
    import matplotlib

    diverging = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#d9d9d9")
    reds = matplotlib.colormaps["Reds"].with_extremes(bad="#d9d9d9")
    vmax_diff = max(0.5, float(np.nanmax(diff)) if np.isfinite(diff).any() else 0.5)
    panels = (
        (m_real, "real", diverging, -1, 1),
        (m_syn, "synthetic", diverging, -1, 1),
        (diff, "|real − synthetic|", reds, 0, vmax_diff),
    )
    fontsize = 9 if n <= 16 else 7
    for ax, (matrix, label, cmap, vmin, vmax) in zip(axes, panels, strict=True):
        im = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(label, fontsize=10)
        ax.set_xticks(range(n), labels=names, rotation=90, fontsize=fontsize)
        ax.set_yticks(range(n), labels=names if ax is axes[0] else [""] * n, fontsize=fontsize)
        if n <= 12:
            for i in range(n):
                for j in range(n):
                    if np.isfinite(matrix[i, j]):
                        ax.text(
                            j,
                            i,
                            f"{matrix[i, j]:.2f}",
                            ha="center",
                            va="center",
                            fontsize=6.5,
                            color="white" if abs(matrix[i, j]) > 0.6 * max(abs(vmin), vmax) else "black",
                        )
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=8.5)
    worst = np.unravel_index(np.nanargmax(np.where(np.isfinite(diff), diff, -1)), diff.shape)
    worst_text = ""
    if np.isfinite(diff[worst]):
        worst_text = (
            f" The largest difference is {diff[worst]:.3f}, between <code>{escape(columns[worst[0]])}"
            f"</code> and <code>{escape(columns[worst[1]])}</code>."
        )
    return "\n".join(
        [
            "<h2>Associations between columns</h2>",
            '<p class="caption">Pairwise association over the learned columns, real (left), synthetic (middle) and '
            "their absolute difference (right). Two numeric/datetime columns: Pearson's r (signed, −1 to 1; "
            "datetimes as timestamps). Two categorical columns: Cramér's V (0 to 1). A categorical and a numeric "
            "column: the correlation ratio η (0 to 1). Nulls are a category of their own in categorical columns and "
            f"left out of numeric ones; grey cells are undefined (a constant column).{worst_text}{shown}</p>",
            png(fig, "association matrices: real, synthetic and their difference", "wide"),
        ]
    )


# --- distance to closest record ----------------------------------------------------------------------------


def _dcr_section(dcr: MetricResult | None) -> str:
    out = ["<h2>Distance to closest record (DCR)</h2>"]
    if dcr is None:
        out.append('<p class="muted">No distances to closest record were computed for this run.</p>')
        return "\n".join(out)
    t = np.asarray(dcr.details["to_train"], dtype=float).ravel()
    h = np.asarray(dcr.details["to_holdout"], dtype=float).ravel()
    t_f, h_f = t[np.isfinite(t)], h[np.isfinite(h)]
    share = dcr.value
    if t_f.size == 0 and h_f.size == 0:
        out.append('<p class="muted">The distance arrays are empty.</p>')
        return "\n".join(out)
    both = np.r_[t_f, h_f]
    lo, hi = float(both.min()), float(both.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1, 41)
    fig = figure(7.6, 3.2)
    ax = fig.subplots()
    ax.hist(h_f, bins=edges, density=True, color="#6e7781", alpha=0.35, label="synthetic → holdout")
    ax.hist(
        t_f, bins=edges, density=True, histtype="step", linewidth=1.8, color="#cf222e", label="synthetic → training"
    )
    ax.set_xlabel("distance to the closest record (Gower, 0 = identical row)", fontsize=8.5)
    ax.set_ylabel("density", fontsize=8.5)
    ax.tick_params(labelsize=8)
    style_axes(fig, ax)
    stats = ["<table><tr><th></th><th>synthetic → training</th><th>synthetic → holdout</th></tr>"]
    for label, fn in (
        ("rows", lambda a: f"{a.size:,}"),
        ("median distance", lambda a: _fmt(float(np.median(a)))),
        ("5th percentile", lambda a: _fmt(float(np.quantile(a, 0.05)))),
        ("share at distance 0 (identical)", lambda a: f"{100 * np.mean(a == 0):.2f}%"),
    ):
        cells = "".join(f'<td class="num">{fn(a) if a.size else "n/a"}</td>' for a in (t_f, h_f))
        stats.append(f"<tr><th>{label}</th>{cells}</tr>")
    stats.append("</table>")
    if math.isnan(share):
        share_text = f"The DCR share is undefined here ({t.size:,} and {h.size:,} distances)."
    else:
        share_text = (
            f'<b>DCR share: <span class="dcr-share">{share:.3f}</span></b> of synthetic rows are closer '
            "to a training row than to a holdout row (ties count half); 0.5 is ideal, values well above "
            "0.5 mean the generator sits closer to the rows it was trained on."
        )
    out += [
        png(fig, "distance to closest record: synthetic to training vs synthetic to holdout", "dcr"),
        '<p class="caption">For each synthetic row, the distance to its closest training row (red outline) and '
        "to its closest holdout row, real rows the generator never saw (grey), with as many holdout as "
        "training rows. Overlapping curves mean the generator does not sit closer to its training rows than "
        "to unseen rows from the same population: no sign of memorisation. A red curve shifted left of the "
        "grey one, or a spike at 0, means synthetic rows copy or nearly copy training rows.</p>",
        f"<p>{share_text}</p>",
        "\n".join(stats),
    ]
    return "\n".join(out)


# --- footer ------------------------------------------------------------------------------------------------


def _footer(
    real_rows: int,
    synthetic_rows: int,
    real_used: int,
    synthetic_used: int,
    metadata: TableMetadata,
    dcr: MetricResult | None,
    generated: str,
) -> str:
    skipped = [c for c in metadata.columns if not c.learned]
    used = (
        f"{real_used:,} real and {synthetic_used:,} synthetic rows"
        if (real_used, synthetic_used) == (real_rows, synthetic_rows)
        else f"seeded samples of {real_used:,} of {real_rows:,} real and "
        f"{synthetic_used:,} of {synthetic_rows:,} synthetic rows"
    )
    lines = [
        "<footer><b>How these numbers were computed.</b>",
        f"<p>Plots and association matrices use {used}: bounded samples of the real training data and of "
        "the synthetic data, not the full tables. The check values come from the validation run "
        "(fidelity metrics on bounded samples, Great Expectations on every synthetic row). "
        f"{len(metadata.learned_columns)} learned columns are compared (numeric, categorical, datetime).",
    ]
    if skipped:
        names = ", ".join(f"<code>{escape(c.name)}</code> ({escape(c.kind.value)})" for c in skipped)
        lines.append(f" Not compared: {names}: identifiers and PII are generated, never learned from real values.")
    if dcr is not None:
        n_dcr = np.asarray(dcr.details["to_train"]).size
        lines.append(
            f" Distances to closest record: {n_dcr:,} synthetic rows; Gower distances over the learned "
            "columns (numeric: "
            "difference of the real data's CDF; categorical: 0 if equal, 1 otherwise; the mean over "
            "columns), with as many holdout as training rows."
        )
    lines.append(f"</p><p>Report generated {escape(generated)} by synthlake.</p></footer>")
    return "".join(lines)
