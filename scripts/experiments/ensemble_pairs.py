"""The ensemble weight rule: equal weights against log-loss-optimal ones, and how members agree.

Reproduces docs/decisions.md, "Ensemble weights: accuracy decides": for the given runs (two or
more, trained on the same split) it scores on the validation split the equal-weight average and
the average with weights softmax(z) fitted by L-BFGS to minimise the log-loss (what
`kit ensemble` fits), each as errors and log-loss, and for every pair of members the images on
which they disagree and those both get wrong. Reads val_proba.npy only: no TensorFlow, seconds.
`kit ensemble RUN RUN ...` applies the rule itself and prints its cross-fitted accuracy.

    python scripts/experiments/ensemble_pairs.py RUN RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

import _common as c


def fit_weights(probas: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weights softmax(z) minimising the validation log-loss of sum_k w_k P_k."""
    from scipy.optimize import minimize

    def loss(z):
        w = np.exp(z - z.max())
        w /= w.sum()
        return c.log_loss(np.tensordot(w, probas, 1), y)

    z = minimize(loss, np.zeros(len(probas)), method="L-BFGS-B").x
    w = np.exp(z - z.max())
    return w / w.sum()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="two or more run folders or names (any models)")
    args = ap.parse_args()
    runs = [c.run_dir(r) for r in args.runs]
    if len(runs) < 2:
        ap.error("an ensemble needs two runs or more")
    _, y, _ = c.validation(runs)
    probas = np.stack([np.load(r / "val_proba.npy") for r in runs])
    rows = [[r.name, "—", c.errors(p, y), f"{c.log_loss(p, y):.4f}"] for r, p in zip(runs, probas)]
    for name, w in (
        ("equal weights", np.full(len(runs), 1 / len(runs))),
        ("log-loss-optimal", fit_weights(probas, y)),
    ):
        p = np.tensordot(w, probas, 1)
        rows.append([name, " / ".join(f"{x:.3f}" for x in w), c.errors(p, y), f"{c.log_loss(p, y):.4f}"])
    c.print_table(["members / ensemble", "weights", "errors", "val log-loss"], rows)
    print()
    pred = probas.argmax(2)
    c.print_table(
        ["pair", "disagree on", "both wrong"],
        [
            [
                f"{runs[i].name} + {runs[j].name}",
                int((pred[i] != pred[j]).sum()),
                int(((pred[i] != y) & (pred[j] != y)).sum()),
            ]
            for i, j in itertools.combinations(range(len(runs)), 2)
        ],
    )


if __name__ == "__main__":
    main()
