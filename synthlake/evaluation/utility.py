"""Utility: is the synthetic table as useful as the real one for predicting the dataset's target?

Train-on-synthetic, test-on-real (TSTR) against train-on-real, test-on-real (TRTR): one gradient-boosting model
(scikit-learn's HistGradientBoosting) is fitted on the synthetic rows, one on the real training rows, and both
are scored on the real holdout the generator never saw. The features are the learned columns other than the
target. A categorical target is a classification, scored by ROC AUC (binary; macro one-vs-rest for more
classes); a numeric or datetime target is a regression, scored by R^2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from synthlake.column_types import is_continuous, to_float
from synthlake.evaluation.base import (
    Direction,
    FeatureEncoder,
    Metric,
    MetricResult,
    SharedWork,
    openmp_threads,
    to_labels,
)
from synthlake.metadata import TableMetadata


@dataclass(frozen=True)
class UtilityScore:
    task: str  # classification or regression
    score: str  # roc_auc or r2
    tstr: float
    trtr: float

    @property
    def gap(self) -> float:
        return self.trtr - self.tstr


def _target(frame: pd.DataFrame, spec) -> np.ndarray:
    return to_float(frame[spec.name]) if is_continuous(spec) else to_labels(frame[spec.name]).to_numpy()


def _present(y: np.ndarray, continuous: bool) -> np.ndarray:
    return ~np.isnan(y) if continuous else np.ones(len(y), dtype=bool)


class _Task:
    """Fits on one frame, scores on the holdout; the encoding is learned from the real training rows."""

    def __init__(self, real: pd.DataFrame, holdout: pd.DataFrame, metadata: TableMetadata, seed: int,
                 max_iter: int, threads: int | None = 1):
        if metadata.target is None:
            raise ValueError("utility metrics need the metadata's `target` column")
        self.spec = metadata.column(metadata.target)
        if not self.spec.learned:
            raise ValueError(f"target '{self.spec.name}' is {self.spec.kind.value}: it must be a learned column")
        self.continuous = is_continuous(self.spec)
        self.features = [s for s in metadata.learned_columns if s.name != self.spec.name]
        self.encoder = FeatureEncoder(real, self.features)
        self.seed, self.max_iter, self.threads = seed, max_iter, threads
        y = _target(holdout, self.spec)
        keep = _present(y, self.continuous)
        self.x_test, self.y_test = self.encoder.transform(holdout)[keep], y[keep]
        # the classes are the real training data's; a holdout row of a class never seen there cannot be scored
        self.classes = None if self.continuous else np.unique(_target(real, self.spec))
        if self.classes is not None:
            seen = np.isin(self.y_test, self.classes)
            self.x_test, self.y_test = self.x_test[seen], self.y_test[seen]

    def score(self, train: pd.DataFrame) -> float:
        with openmp_threads(self.threads):
            return self._score(train)

    def _score(self, train: pd.DataFrame) -> float:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
        from sklearn.metrics import r2_score, roc_auc_score

        y = _target(train, self.spec)
        keep = _present(y, self.continuous)
        x, y = self.encoder.transform(train)[keep], y[keep]
        if len(y) == 0 or len(self.y_test) < 2:
            return float("nan")
        options = dict(max_iter=self.max_iter, early_stopping=False, random_state=self.seed,
                       categorical_features=self.encoder.categorical_mask if self.features else None)
        if self.continuous:
            model = HistGradientBoostingRegressor(**options).fit(x, y)
            return float(r2_score(self.y_test, model.predict(self.x_test)))
        if np.unique(self.y_test).size < 2:
            return float("nan")  # AUC is undefined on a one-class holdout
        if np.unique(y).size < 2:
            return 0.5  # a model trained on one class predicts nothing: chance level
        model = HistGradientBoostingClassifier(**options).fit(x, y)
        proba = np.zeros((len(self.y_test), self.classes.size))
        predicted = model.predict_proba(self.x_test)
        for j, label in enumerate(model.classes_):
            where = np.searchsorted(self.classes, label)
            if where < self.classes.size and self.classes[where] == label:
                proba[:, where] = predicted[:, j]  # a class the real data lacks keeps no probability
        if self.classes.size == 2:
            return float(roc_auc_score(self.y_test == self.classes[1], proba[:, 1]))
        proba = proba / np.clip(proba.sum(axis=1, keepdims=True), 1e-12, None)
        present = np.isin(self.classes, self.y_test)
        # macro one-vs-rest over the classes the holdout holds
        scores = [roc_auc_score(self.y_test == c, proba[:, j]) for j, c in enumerate(self.classes) if present[j]]
        return float(np.mean(scores))


def tstr_trtr(real: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame, metadata: TableMetadata,
              seed: int = 0, max_iter: int = 100, threads: int | None = 1) -> UtilityScore:
    """Both scores at once."""
    gap = UtilityGap(max_rows=None, seed=seed, max_iter=max_iter, threads=threads)
    return gap.evaluate(real, synthetic, metadata, holdout=holdout).details["utility"]


class _Utility(Metric):
    """Details: `utility`, a UtilityScore with the scores the metric fitted (the other one nan)."""

    family: ClassVar[str] = "utility"
    direction: ClassVar[Direction] = Direction.MAXIMIZE
    requires: ClassVar[tuple[str, ...]] = ("holdout",)
    fits: ClassVar[tuple[str, ...]]  # the models the metric needs: trained on "synthetic" (tstr), on "real" (trtr)
    reports: ClassVar[str]  # the UtilityScore attribute that is the metric's value

    def __init__(self, max_rows: int | None = -1, seed: int = 0, max_iter: int = 100, threads: int | None = 1):
        super().__init__(max_rows, seed)
        self.max_iter, self.threads = max_iter, threads

    @classmethod
    def missing_context(cls, metadata, context):
        return super().missing_context(metadata, context) + ([] if metadata.target else ["metadata target"])

    def _compute(self, real, synthetic, metadata, *, seed, shared, holdout, **context):
        options = dict(seed=seed, max_iter=self.max_iter, threads=self.threads)
        # tstr, trtr and utility_gap of one evaluation fit each model once
        task = shared.get("utility task", lambda: _Task(real, holdout, metadata, **options), real, holdout,
                          metadata, **options)
        scores = {side: _fitted(shared, task, frame) for side, frame in (("synthetic", synthetic), ("real", real))
                  if side in self.fits}
        utility = UtilityScore("regression" if task.continuous else "classification",
                               "r2" if task.continuous else "roc_auc", scores.get("synthetic", float("nan")),
                               scores.get("real", float("nan")))
        return MetricResult(getattr(utility, self.reports), {"utility": utility})


def _fitted(shared: SharedWork, task: _Task, train: pd.DataFrame) -> float:
    return shared.get("utility score", lambda: task.score(train), task, train)


class TSTR(_Utility):
    """Train on synthetic, test on the real holdout: AUC (classification) or R^2 (regression)."""

    name = "tstr"
    meaning = "a model trained on synthetic rows, tested on the real holdout (AUC, or R^2), higher is better"
    fits, reports = ("synthetic",), "tstr"


class TRTR(_Utility):
    """Train on the real training rows, test on the real holdout: the reference TSTR is measured against."""

    name = "trtr"
    meaning = "the same model trained on real training rows: the reference for tstr"
    fits, reports = ("real",), "trtr"


class UtilityGap(_Utility):
    """TRTR - TSTR: how much predictive power is lost by training on synthetic rows (0 ideal, can be < 0)."""

    name = "utility_gap"
    meaning = "trtr - tstr: what training on synthetic rows costs, 0 ideal"
    direction = Direction.MINIMIZE
    fits, reports = ("synthetic", "real"), "gap"


UTILITY_METRICS: tuple[type[Metric], ...] = (TSTR, TRTR, UtilityGap)
