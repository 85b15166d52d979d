"""The HTML validation report: self-contained, escaped, one plot per learned column, the verdict up front."""

from __future__ import annotations

import base64
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from synthlake.evaluation import MetricResult, get_metric
from synthlake.evaluation.fidelity import Associations, association_matrix
from synthlake.evaluation.privacy import DCRShare, dcr_share
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata
from synthlake.report import render_report

CHECKS = [
    {"check": "column_shapes", "family": "fidelity", "value": 0.91234567, "threshold": 0.8, "op": ">=", "passed": True},
    {
        "check": "detection_auc",
        "family": "fidelity",
        "value": 0.61,
        "threshold": 0.2,
        "op": "|x-0.5|<=",
        "passed": True,
    },
    {"check": "tstr_ratio", "family": "utility", "value": 0.95, "threshold": 0.8, "op": ">=", "passed": True},
    {"check": "dcr_share", "family": "privacy", "value": 0.52, "threshold": 0.05, "op": "|x-0.5|<=", "passed": True},
    {
        "check": "column_shape:age",
        "family": "column_shape",
        "value": 0.97,
        "threshold": 0.5,
        "op": ">=",
        "passed": True,
    },
    {
        "check": "column_shape:color",
        "family": "column_shape",
        "value": 0.88,
        "threshold": 0.5,
        "op": ">=",
        "passed": True,
    },
    {
        "check": "gx:expect_column_to_exist:age",
        "family": "expectation",
        "value": None,
        "threshold": None,
        "op": None,
        "passed": True,
    },
    {
        "check": "gx:expect_column_values_to_be_between:income",
        "family": "expectation",
        "value": 0.0,
        "threshold": None,
        "op": None,
        "passed": True,
    },
]
FAILED = {"exact_match_share", "gx:expect_column_values_to_be_in_set:color"}


def _failed_checks() -> list[dict]:
    checks = [dict(c) for c in CHECKS]
    checks.append(
        {
            "check": "exact_match_share",
            "family": "privacy",
            "value": 0.2,
            "threshold": 0.01,
            "op": "<=",
            "passed": False,
        }
    )
    checks.append(
        {
            "check": "gx:expect_column_values_to_be_in_set:color",
            "family": "expectation",
            "value": 3.5,
            "threshold": None,
            "op": None,
            "passed": False,
        }
    )
    return checks


def _synthetic(real: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """Each column shuffled on its own: same marginals, no joint structure."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: rng.permutation(real[c].to_numpy()) for c in real.columns})


@pytest.fixture(scope="module")
def table(mixed_table) -> pd.DataFrame:
    return mixed_table.copy()


@pytest.fixture(scope="module")
def passed_html(table, metadata) -> str:
    rng = np.random.default_rng(2)
    synthetic = _synthetic(table)
    results = {"dcr_share": DCRShare.from_distances(rng.random(300), rng.random(300)),
               "column_pair_trends": get_metric("column_pair_trends").evaluate(table, synthetic, metadata)}
    return render_report(
        dataset="customers",
        run_id="run-7",
        passed=True,
        checks=CHECKS,
        real=table,
        synthetic=synthetic,
        metadata=metadata,
        results=results,
        facts={"generator": "ctgan", "rows": 300, "epsilon": None, "created_at": "2025-01-01"},
    )


@pytest.fixture(scope="module")
def failed_html(table, metadata) -> str:
    synthetic = _synthetic(table, seed=3)
    return render_report(
        dataset="customers",
        run_id="run-8",
        passed=False,
        checks=_failed_checks(),
        real=table,
        synthetic=synthetic,
        metadata=metadata,
        results={"column_pair_trends": get_metric("column_pair_trends").evaluate(table, synthetic, metadata)},
    )


def _verdict(html: str) -> str:
    return re.search(r'<section class="verdict.*?</section>', html, re.S).group(0)


def _assert_self_contained(html: str) -> None:
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html.lower()
    assert "<link" not in html.lower() and "@import" not in html and "url(" not in html
    for src in re.findall(r'<img[^>]*\ssrc="([^"]*)"', html):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_passed_run_shows_the_verdict_first(passed_html):
    assert passed_html.startswith("<!DOCTYPE html>")
    verdict = passed_html.index('class="verdict pass"')
    assert verdict < passed_html.index("Headline metrics") < passed_html.index("Distributions")
    assert "PASSED" in _verdict(passed_html) and "8/8 checks passed" in passed_html
    assert "FAILED" not in passed_html
    for fact in ("generator", "ctgan", "created_at", "2025-01-01"):
        assert f">{fact}<" in passed_html


def test_a_failed_run_names_its_failed_checks_in_the_banner(failed_html):
    verdict = _verdict(failed_html)
    assert 'class="verdict fail"' in verdict and "FAILED" in verdict
    assert "8/10 checks passed" in verdict
    for name in FAILED:
        assert html_escape(name) in verdict
    assert "column_shapes" not in verdict  # a passed check is not listed as failed
    assert failed_html.count('<tr class="failed">') == 2  # both failing rows highlighted


def html_escape(text: str) -> str:
    import html

    return html.escape(text)


def test_headline_values_are_rounded_and_thresholds_carry_their_op(passed_html):
    assert "0.9123" in passed_html and "0.91234567" not in passed_html
    assert "≥ 0.8" in passed_html
    assert "|x − 0.5| ≤ 0.05" in passed_html


def test_every_learned_column_has_a_plot_and_generated_columns_none(passed_html, failed_html):
    for page in (passed_html, failed_html):
        plotted = re.findall(r'<figure class="plot[^"]*" data-column="([^"]*)">(.*?)</figure>', page, re.S)
        assert [name for name, _ in plotted] == ["age", "income", "color", "signup"]
        for _, body in plotted:
            assert '<img src="data:image/png;base64,' in body
        assert 'data-column="customer_id"' not in page and 'data-column="email"' not in page
        assert "Associations between columns" in page  # the matrices: real, synthetic, difference
        assert "Cramér's V" in page and "correlation ratio" in page
        _assert_self_contained(page)


def test_nulls_are_reported_for_plotted_columns(passed_html, table):
    income = re.search(r'data-column="income">(.*?)</figure>', passed_html, re.S).group(1)
    share = 100 * table["income"].isna().mean()
    assert f"nulls: real {share:.1f}%, synthetic {share:.1f}%" in income  # a shuffle keeps the null rate


def test_great_expectations_are_collapsed_with_failures_first(failed_html, passed_html):
    details = re.search(r"<details>(.*?)</details>", failed_html, re.S).group(1)
    assert "Great Expectations: 2 passed, 1 failed" in details
    rows = re.findall(r"<td><code>(gx:[^<]*)</code>", details)
    assert rows[0] == "gx:expect_column_values_to_be_in_set:color" and len(rows) == 3
    assert "<details open" not in failed_html
    assert "Great Expectations: 2 passed, 0 failed" in passed_html


def test_column_shapes_table_lists_columns_with_their_kind(passed_html):
    section = passed_html[passed_html.index("<h2>Column shapes") : passed_html.index("<h2>Data expectations")]
    assert "<code>age</code></td><td>numeric</td>" in section
    assert "<code>color</code></td><td>categorical</td>" in section


def test_text_from_the_data_is_escaped():
    rng = np.random.default_rng(0)
    n = 200
    real = pd.DataFrame(
        {
            "<b>x</b>": rng.choice(["<i>a</i>", "$5-$10", "b & c", None], n),
            "amount": rng.normal(size=n),
        }
    )
    metadata = TableMetadata(
        columns=[
            ColumnSpec(name="<b>x</b>", kind=ColumnKind.CATEGORICAL),
            ColumnSpec(name="amount", kind=ColumnKind.NUMERIC),
        ]
    )
    checks = [
        {
            "check": "column_shape:<b>x</b>",
            "family": "column_shape",
            "value": 0.4,
            "threshold": 0.5,
            "op": ">=",
            "passed": False,
        }
    ]
    page = render_report(
        dataset="<script>alert(1)</script>",
        run_id="r&d",
        passed=False,
        checks=checks,
        real=real,
        synthetic=_synthetic(real),
        metadata=metadata,
        facts={"<k>": "<v>"},
    )
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert 'data-column="&lt;b&gt;x&lt;/b&gt;"' in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "r&amp;d" in page and "&lt;k&gt;" in page and "&lt;v&gt;" in page
    _assert_self_contained(page)


def test_works_without_dcr_and_without_any_check(table, metadata):
    page = render_report(
        dataset="d",
        run_id="r",
        passed=True,
        checks=[],
        real=table,
        synthetic=_synthetic(table),
        metadata=metadata,
        results=None,
        facts=None,
    )
    assert "PASSED" in page and "0/0 checks passed" in page
    assert "No distances to closest record" in page and 'class="dcr-share"' not in page
    assert "Failed checks" not in page and "<details>" not in page
    assert len(re.findall(r'<figure class="plot', page)) == 4
    _assert_self_contained(page)


def test_the_dcr_share_shown_matches_a_known_case(table, metadata):
    to_train = np.array([0.1, 0.2, 0.3, 0.4, 0.0, 0.5, 0.25, 0.9])
    to_holdout = np.array([0.2, 0.2, 0.1, 0.5, 0.3, 0.5, 0.2, 0.95])
    # closer to training: 0.1<0.2, 0.4<0.5, 0.0<0.3, 0.9<0.95 (4 rows); ties 0.2=0.2, 0.5=0.5 count half: 5/8
    assert dcr_share(to_train, to_holdout) == pytest.approx(0.625)
    small = table.head(60)
    page = render_report(
        dataset="d",
        run_id="r",
        passed=True,
        checks=[],
        real=small,
        synthetic=_synthetic(small),
        metadata=metadata,
        results={"dcr_share": DCRShare.from_distances(to_train, to_holdout)},
    )
    assert re.search(r'<span class="dcr-share">([0-9.]+)</span>', page).group(1) == "0.625"
    assert "no sign of memorisation" in page
    _assert_self_contained(page)


def test_dcr_share_edge_cases():
    assert dcr_share(np.zeros(4), np.zeros(4)) == 0.5  # all ties
    assert dcr_share(np.zeros(3), np.ones(3)) == 1.0  # every synthetic row sits on a training row
    assert dcr_share(np.array([0.1, np.nan]), np.array([0.2, 0.3])) == 1.0  # a nan pair is left out
    assert dcr_share(np.zeros(3), np.zeros(4)) is None  # not paired row by row
    assert dcr_share(np.array([]), np.array([])) is None


def test_association_matrix_on_known_cases():
    rng = np.random.default_rng(0)
    n = 500
    x = rng.normal(size=n)
    group = rng.choice(["a", "b", "c"], n)
    frame = pd.DataFrame(
        {
            "x": x,
            "neg": -2 * x + 1,  # Pearson -1 with x
            "group": group,
            "same_group": pd.Series(group).map({"a": "u", "b": "v", "c": "w"}),  # Cramér's V 1 with group
            "by_group": pd.Series(group).map({"a": 1.0, "b": 5.0, "c": 9.0}),  # correlation ratio 1 with group
            "noise": rng.choice(["p", "q"], n),
            "constant": np.ones(n),
        }
    )
    kinds = {
        "x": ColumnKind.NUMERIC,
        "neg": ColumnKind.NUMERIC,
        "group": ColumnKind.CATEGORICAL,
        "same_group": ColumnKind.CATEGORICAL,
        "by_group": ColumnKind.NUMERIC,
        "noise": ColumnKind.CATEGORICAL,
        "constant": ColumnKind.NUMERIC,
    }
    specs = [ColumnSpec(name=k, kind=v) for k, v in kinds.items()]
    m = association_matrix(frame, specs)
    idx = {s.name: i for i, s in enumerate(specs)}
    assert m[idx["x"], idx["neg"]] == pytest.approx(-1)
    assert m[idx["group"], idx["same_group"]] == pytest.approx(1)
    assert m[idx["group"], idx["by_group"]] == pytest.approx(1)
    assert m[idx["by_group"], idx["group"]] == pytest.approx(1)  # symmetric
    assert m[idx["group"], idx["noise"]] < 0.15  # independent
    assert np.isnan(m[idx["constant"], idx["x"]]) and np.isnan(m[idx["constant"], idx["constant"]])


def test_the_association_matrices_come_from_the_pair_trends_result(table, metadata):
    columns = ["age", "income", "color", "signup"]
    real, synthetic = np.eye(4), np.eye(4)
    synthetic[1, 2] = synthetic[2, 1] = 0.9  # the one pair that differs
    trends = MetricResult(0.9, {"associations": Associations(columns, real, synthetic)})
    page = render_report(dataset="d", run_id="r", passed=True, checks=[], real=table, synthetic=_synthetic(table),
                         metadata=metadata, results={"column_pair_trends": trends})
    assert "The largest difference is 0.900, between <code>income</code> and <code>color</code>." in page
    without = render_report(dataset="d", run_id="r", passed=True, checks=[], real=table,
                            synthetic=_synthetic(table), metadata=metadata)
    assert "No association matrices were computed" in without and "largest difference" not in without


def test_a_learned_column_missing_from_the_synthetic_data_is_reported_not_fatal(table, metadata):
    synthetic = _synthetic(table).drop(columns=["color"])
    page = render_report(
        dataset="d", run_id="r", passed=False, checks=[], real=table, synthetic=synthetic, metadata=metadata
    )
    color = re.search(r'data-column="color">(.*?)</figure>', page, re.S).group(1)
    assert "column missing from the synthetic data" in color


def test_a_reported_metric_without_threshold_is_not_counted_as_a_check(table, metadata):
    reported = {"check": "nndr", "family": "privacy", "value": 0.9, "threshold": None, "op": ">=", "passed": None}
    html = render_report(dataset="customers", run_id="run-9", passed=True, checks=[*CHECKS, reported],
                         real=table, synthetic=_synthetic(table), metadata=metadata)
    assert "8/8 checks passed" in _verdict(html) and "nndr" not in _verdict(html)
    assert "REPORTED" in html and "not a gate" in html and '<tr class="failed">' not in html


def _why(html: str) -> str:
    return re.search(r'<h2 id="why">.*?(?=<h2>)', html, re.S).group(0)


@pytest.fixture(scope="module")
def explained(table, metadata):
    """A synthetic table whose income is shifted: the detector and the column scores must point at it."""
    from synthlake.evaluation import evaluate_results
    from synthlake.evaluation.explain import Hint, explain

    synthetic = table.assign(income=table["income"] + 30_000)
    names = ["column_shapes", "column_pair_trends", "accuracy_univariate", "accuracy_bivariate", "detection_auc"]
    results = evaluate_results(table, synthetic, metadata, names)
    explanation = explain(table, synthetic, metadata, results)
    hint = Hint({"kind": "inequality", "low": "age", "high": "income"}, "income >= age: <b>holds</b>", 0.0, 0.2)
    return synthetic, results, replace(explanation, hints=[*explanation.hints, hint])


def test_a_failed_fidelity_gate_explains_itself(table, metadata, explained):
    synthetic, results, explanation = explained
    auc = results["detection_auc"].value
    checks = [*CHECKS[:1], {"check": "detection_auc", "family": "fidelity", "value": auc, "threshold": 0.25,
                            "op": "|x-0.5|<=", "passed": False}]
    html = render_report(dataset="d", run_id="r", passed=False, checks=checks, real=table, synthetic=synthetic,
                         metadata=metadata, results=results, explanation=explanation)
    why = _why(html)
    assert "Why the gate failed" in why and "<details>" not in why
    assert "Failed fidelity checks: <code>detection_auc</code>" in why
    assert explanation.features[0][0] == "income"
    detector = re.findall(r"<tr><td><code>(.*?)</code>", why.split("<h3>")[1])
    importance = dict(results["detection_auc"].details["features"])
    assert detector[0] == "income" and all(importance[c] > 0 for c in detector)  # the columns it uses only
    columns = why.split("<h3>")[2]
    assert re.search(r"<tr><td><code>income</code></td><td class=\"num\">0\.\d+</td>", columns)
    assert "<pre><code>- {kind: inequality, low: age, high: income}</code></pre>" in why
    assert "income &gt;= age: &lt;b&gt;holds&lt;/b&gt;" in why and "<b>holds</b>" not in why
    assert html.index("<h2>Headline metrics</h2>") < html.index('<h2 id="why">') < html.index("<h2>Distributions")


def test_a_passing_gate_keeps_the_explanation_collapsed_and_no_explanation_no_section(table, metadata, explained):
    synthetic, results, explanation = explained
    html = render_report(dataset="d", run_id="r", passed=True, checks=CHECKS, real=table, synthetic=synthetic,
                         metadata=metadata, results=results, explanation=explanation)
    why = _why(html)
    assert "What distinguishes synthetic rows" in why and "<details>" in why and "Why the gate failed" not in html
    # a failed privacy check is no fidelity failure: still collapsed
    html = render_report(dataset="d", run_id="r", passed=False, checks=_failed_checks(), real=table,
                         synthetic=synthetic, metadata=metadata, results=results, explanation=explanation)
    assert "Why the gate failed" not in html and "What distinguishes synthetic rows" in html
    html = render_report(dataset="d", run_id="r", passed=False, checks=_failed_checks(), real=table,
                         synthetic=synthetic, metadata=metadata, results=results)
    assert 'id="why"' not in html


def test_the_rules_section_lists_each_rule_with_source_and_synthetic_breaks(table, metadata):
    checks = [{"check": "rule #0 (inequality)", "family": "rules", "value": 0, "threshold": 0, "op": "<=",
               "passed": True},
              {"check": "rule #1 (range)", "family": "rules", "value": 7, "threshold": 0, "op": "<=",
               "passed": False}]
    rules = [("rule #0 (inequality)", "a <= b", 0.0), ("rule #1 (range)", "0 <= c <= <d>", 0.004)]
    page = render_report(dataset="d", run_id="r", passed=False, checks=checks, real=table,
                         synthetic=_synthetic(table), metadata=metadata, rules=rules)
    section = page[page.index("<h2>Business rules</h2>"):]
    section = section[: section.index("</table>")]
    assert section.count("<tr") == 3 and "0 &lt;= c &lt;= &lt;d&gt;" in section  # escaped
    assert re.search(r"rule #1 \(range\).*0\.004.*>7<.*FAIL", section, re.S)
    assert "rules <span class=muted>(other)</span>" not in page  # a known family in the headline table
    no_rules = render_report(dataset="d", run_id="r", passed=True, checks=[], real=table,
                             synthetic=_synthetic(table), metadata=metadata)
    assert "Business rules" not in no_rules
