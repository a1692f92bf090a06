"""The ensemble weight rule on held-out halves: which rule's weights hold on images they never saw.

Reproduces docs/decisions.md, "Ensemble weights": for the given runs (two or more, on the same
split) it splits the validation rows at random into halves A and B, `--repeats` times; on A it
chooses weights by each rule, and scores them on B (errors). Rules:

    equal     the plain average
    previous  the rule before: fitted (log-loss-optimal) weights if they beat equal weights on
              A's accuracy, or tie it with a log-loss lower by 1e-4; then never worse on A than
              the best member alone, else that member's one-hot
    current   what `kit ensemble` does (kit.ensemble.decide): equal weights unless fitted ones
              gain beyond their noise, cross-fitted with a paired bootstrap
    best      the member that is best on A, alone

For each rule against `current`: how often it made fewer, as many, more errors on B, and the
mean difference. Reads val_proba.npy only: no TensorFlow, a minute for 200 repeats.

    python scripts/experiments/ensemble_rules.py RUN RUN [RUN ...] [--repeats 200] [--seed 0]
        [--broken-member]       # add a confident random member: does the rule drop it?
"""

from __future__ import annotations

import argparse

import numpy as np

import _common as c

MIN_GAIN = 1e-4  # the previous rule's log-loss margin, nats


def previous_rule(val: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The rule `kit ensemble` applied before this study (kept here to measure it)."""
    ens = c.ensemble()
    k = len(val)
    equal, fitted = np.full(k, 1 / k), ens.fit_weights(val, y, ens.EnsembleConfig())
    p_fit, p_eq = ens.combine(val, fitted), ens.combine(val, equal)
    a_fit, a_eq = ens.accuracy(p_fit, y), ens.accuracy(p_eq, y)
    better = a_fit > a_eq or (a_fit == a_eq and ens.log_loss(p_fit, y) < ens.log_loss(p_eq, y) - MIN_GAIN)
    w = fitted if better else equal
    best = max(range(k), key=lambda i: (ens.accuracy(val[i], y), -ens.log_loss(val[i], y)))
    mixed = ens.combine(val, w)
    if (ens.accuracy(mixed, y), -ens.log_loss(mixed, y) + 1e-9) < (
        ens.accuracy(val[best], y),
        -ens.log_loss(val[best], y),
    ):
        w = np.eye(k)[best]
    return w


def rules(val: np.ndarray, y: np.ndarray, bootstrap: int) -> dict[str, np.ndarray]:
    """Each rule's weights (K,), chosen on val (K, n, 10) with labels y."""
    ens = c.ensemble()
    k = len(val)
    best = max(range(k), key=lambda i: ens.accuracy(val[i], y))
    return {
        "equal": np.full(k, 1 / k),
        "previous": previous_rule(val, y),
        "current": ens.decide(val, y, ens.EnsembleConfig(bootstrap=bootstrap)).weights,
        "best": np.eye(k)[best],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="two or more run folders or names (any models)")
    ap.add_argument("--repeats", type=int, default=200, help="random halves to try [200]")
    ap.add_argument("--seed", type=int, default=0, help="seeds the halves [0]")
    ap.add_argument("--bootstrap", type=int, default=1000, help="the current rule's resamples [1000]")
    ap.add_argument(
        "--broken-member",
        action="store_true",
        help="add a broken member: confident random probabilities (Dirichlet 0.05, seeded)",
    )
    args = ap.parse_args()
    runs = [c.run_dir(r) for r in args.runs]
    if len(runs) < 2:
        ap.error("an ensemble needs two runs or more")
    _, y, _ = c.validation(runs)
    val = np.stack([np.load(r / "val_proba.npy") for r in runs]).astype(np.float64)
    rng = np.random.default_rng(args.seed)
    if args.broken_member:
        val = np.concatenate([val, rng.dirichlet(np.full(val.shape[2], 0.05), size=(1, len(y)))])
    errors: dict[str, list[int]] = {}
    for _ in range(args.repeats):
        a = np.zeros(len(y), bool)
        a[rng.permutation(len(y))[: len(y) // 2]] = True
        for name, w in rules(val[:, a], y[a], args.bootstrap).items():
            errors.setdefault(name, []).append(c.errors(c.ensemble().combine(val[:, ~a], w), y[~a]))
    current = np.array(errors["current"])
    rows = []
    for name, errs in errors.items():
        d = np.array(errs) - current
        rows.append(
            [
                name,
                f"{np.mean(errs):.2f}",
                int((d < 0).sum()),
                int((d == 0).sum()),
                int((d > 0).sum()),
                f"{d.mean():+.2f}",
            ]
        )
    print(
        f"{len(val)} members{' (the last one broken)' if args.broken_member else ''}, "
        f"{args.repeats} random halves of {len(y)} validation rows "
        f"(choose on one, score on the other's {len(y) - len(y) // 2})"
    )
    c.print_table(
        ["rule", "mean errors on B", "fewer than current", "as many", "more", "mean difference"], rows
    )


if __name__ == "__main__":
    main()
