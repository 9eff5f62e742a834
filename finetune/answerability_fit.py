"""Fit the reader's answerability model (`retrieval.readers.answerability`) on validation items.

A logistic regression, L2-regularised, solved by Newton's method on standardised features: it
predicts whether the reader's best span is right (a reference and it contain one another).
`out_of_fold` gives each item a log-odds from a model that never saw its question, so that the
threshold is chosen on scores as honest as those of new questions.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import numpy as np

from kbqa.retrieval.readers.answerability import FEATURES, Answerability

L2 = 1.0
FOLDS = 5


def fit(rows: Sequence[Mapping[str, float]], labels: Sequence[bool], names: Sequence[str] = FEATURES, l2: float = L2) -> Answerability:
    x = np.array([[r[n] for n in names] for r in rows], dtype=float)
    y = np.array(labels, dtype=float)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    penalty = l2 * np.diag([*np.ones(len(names)), 0.0])  # the bias is not shrunk
    w = np.zeros(z.shape[1])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        step = np.linalg.solve((z * (p * (1 - p))[:, None]).T @ z + penalty, z.T @ (p - y) + penalty @ w)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return Answerability(tuple(names), tuple(mean.tolist()), tuple(scale.tolist()), tuple(w[:-1].tolist()), float(w[-1]))


def out_of_fold(rows: Sequence[Mapping[str, float]], labels: Sequence[bool], groups: Sequence[str], folds: int = FOLDS, seed: int = 0) -> list[float]:
    """Each item's log-odds from a model fitted on the other folds (items of one group, such as
    the two sets of blocks of one question, stay in one fold)."""
    names = sorted(set(groups))
    random.Random(seed).shuffle(names)
    fold_of = {g: i % folds for i, g in enumerate(names)}
    out = [0.0] * len(rows)
    for k in range(folds):
        train = [i for i, g in enumerate(groups) if fold_of[g] != k]
        test = [i for i, g in enumerate(groups) if fold_of[g] == k]
        if not test:
            continue
        model = fit([rows[i] for i in train], [labels[i] for i in train])
        for i in test:
            out[i] = model.logit(rows[i])
    return out
