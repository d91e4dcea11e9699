"""The encoder probe: how well a bag's cell embeddings separate abnormal from normal cells.

A logistic regression on the embeddings (standardised), trained on the per-cell truth of
`cells.csv` and scored out of fold with (stratified) GroupKFold by bag, so no cell is scored by a
model that saw its bag. Its cell-level ROC AUC tells which stage is weak: a low probe AUC
is the encoder's fault, a high one with a poor bag AUC the aggregator's. Evaluation only:
cell truth never reaches training.
"""

from __future__ import annotations

import numpy as np

MAX_CELLS = 20_000  # larger sets are subsampled (all positives kept): the probe stays seconds


def probe_auc(
    features: list[np.ndarray], truth: list[np.ndarray], *, folds: int = 5, seed: int = 0
) -> float | None:
    """Out-of-fold cell AUC of a logistic-regression probe; None without both classes in
    at least two bags' worth of folds. features[i]: (N_i, D) of bag i; truth[i]: (N_i,) 0/1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate(features)  # (N, D)
    y = np.concatenate(truth).astype(int)  # (N,)
    groups = np.concatenate([np.full(len(f), i) for i, f in enumerate(features)])
    if len(set(y)) < 2 or len(features) < 2:
        return None
    rng = np.random.default_rng(seed)
    if len(y) > MAX_CELLS:
        neg = np.flatnonzero(y == 0)
        keep = np.concatenate(
            [np.flatnonzero(y == 1), rng.choice(neg, MAX_CELLS - int(y.sum()), replace=False)]
        )
        x, y, groups = x[keep], y[keep], groups[keep]
    n_folds = min(folds, len(set(groups[y == 1])), len(set(groups)))
    if n_folds < 2:
        return None
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    scores = cross_val_predict(
        model,
        x,
        y,
        groups=groups,
        cv=StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed),
        method="predict_proba",
    )[:, 1]
    return float(roc_auc_score(y, scores))
