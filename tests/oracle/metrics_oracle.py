#!/usr/bin/env python3
"""Expected values for tests/test_metrics.c: accuracy, binary F1, Matthews correlation, Pearson and
Spearman (average ranks for ties) on fixed arrays. Prints C initializers to paste into the test.

Uses scikit-learn / SciPy when importable; otherwise (as on the machine the stored numbers came
from: /usr/bin/python3 had numpy but neither scipy nor sklearn) the textbook formulas in numpy,
written independently of host/train/metrics.c:
  MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) for binary, Gorodkin's R_K for multiclass
  via the confusion-matrix covariance; Spearman = Pearson of ranks with ties averaged.
Run: /usr/bin/python3 tests/oracle/metrics_oracle.py
"""
import numpy as np

try:
    import scipy.stats
    import sklearn.metrics
    HAVE_REF = True
except ImportError:
    HAVE_REF = False

CLASS_CASES = {
    # name: (predictions, labels)
    "binary": ([1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1], [1, 0, 0, 1, 0, 1, 1, 0, 1, 0, 0, 1]),
    "binary_skewed": ([0, 0, 0, 1, 0, 0, 0, 0, 1, 0], [0, 1, 0, 1, 0, 0, 1, 0, 0, 0]),
    "three_class": ([0, 1, 2, 2, 1, 0, 0, 2, 1, 1, 2, 0, 1], [0, 1, 2, 1, 1, 0, 2, 2, 0, 1, 2, 0, 2]),
    "constant_prediction": ([1, 1, 1, 1, 1, 1], [0, 1, 1, 0, 1, 0]),
}

REGRESSION_CASES = {
    # name: (x, y); values exactly representable in float32
    "scores": ([0.5, 2.25, 3.0, 4.75, 1.5, 2.0, 5.0, 0.0], [1.0, 2.0, 3.5, 4.0, 1.25, 2.5, 4.5, 0.75]),
    "ties": ([1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 0.5, 2.0], [0.0, 1.5, 1.0, 3.0, 2.0, 3.0, 5.0, 1.0, 1.0]),
    "anti": ([3.0, 1.0, 2.0, 5.0, 4.0], [0.25, 4.0, 1.0, 0.5, 0.0]),
}


def mcc_numpy(p, t):
    k = max(p.max(), t.max()) + 1
    c = np.zeros((k, k))
    for a, b in zip(t, p):
        c[a, b] += 1
    t_sum, p_sum = c.sum(1), c.sum(0)
    n, correct = c.sum(), np.trace(c)
    cov_tp = correct * n - t_sum @ p_sum
    cov_pp = n * n - p_sum @ p_sum
    cov_tt = n * n - t_sum @ t_sum
    return 0.0 if cov_pp * cov_tt == 0 else cov_tp / np.sqrt(cov_pp * cov_tt)


def mcc_binary_textbook(p, t):
    tp = np.sum((p == 1) & (t == 1)); tn = np.sum((p == 0) & (t == 0))
    fp = np.sum((p == 1) & (t == 0)); fn = np.sum((p == 0) & (t == 1))
    d = float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if d == 0 else (tp * tn - fp * fn) / np.sqrt(d)


def mcc_onehot(p, t):
    # Gorodkin's R_K: covariance of the one-hot label and prediction matrices.
    k = max(p.max(), t.max()) + 1
    x, y = np.eye(k)[t], np.eye(k)[p]
    x, y = x - x.mean(0), y - y.mean(0)
    d = np.sqrt(np.sum(x * x) * np.sum(y * y))
    return 0.0 if d == 0 else np.sum(x * y) / d


def f1_numpy(p, t):
    tp = np.sum((p == 1) & (t == 1)); fp = np.sum((p == 1) & (t == 0)); fn = np.sum((p == 0) & (t == 1))
    return 0.0 if 2 * tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def average_ranks(x):
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    xs = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def main():
    print(f"// reference: {'scikit-learn/SciPy' if HAVE_REF else 'numpy textbook formulas'}")
    for name, (p, t) in CLASS_CASES.items():
        p, t = np.array(p), np.array(t)
        acc = float(np.mean(p == t))
        if HAVE_REF:
            f1 = sklearn.metrics.f1_score(t, p, zero_division=0) if p.max() <= 1 and t.max() <= 1 else float("nan")
            mcc = sklearn.metrics.matthews_corrcoef(t, p)
        else:
            f1 = f1_numpy(p, t) if p.max() <= 1 and t.max() <= 1 else float("nan")
            mcc = mcc_numpy(p, t)
            if p.max() <= 1 and t.max() <= 1:
                assert abs(mcc - mcc_binary_textbook(p, t)) < 1e-12
            assert abs(mcc - mcc_onehot(p, t)) < 1e-12
        print(f"// {name}: accuracy, f1, mcc")
        print(f"{{{acc!r}, {float(f1)!r}, {float(mcc)!r}}},")
    for name, (x, y) in REGRESSION_CASES.items():
        x, y = np.array(x, dtype=np.float64), np.array(y, dtype=np.float64)
        if HAVE_REF:
            pearson = scipy.stats.pearsonr(x, y)[0]
            spearman = scipy.stats.spearmanr(x, y)[0]
        else:
            pearson = np.corrcoef(x, y)[0, 1]
            spearman = np.corrcoef(average_ranks(x), average_ranks(y))[0, 1]
        print(f"// {name}: pearson, spearman")
        print(f"{{{float(pearson)!r}, {float(spearman)!r}}},")


if __name__ == "__main__":
    main()
