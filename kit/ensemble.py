"""Weighted average of several runs' class probabilities, weights fitted on the shared validation split.

The ensemble's probabilities are a convex combination of its K members':

    p(x) = sum_k w_k p_k(x),    w = softmax(z),  z in R^K   (so w_k >= 0, sum_k w_k = 1)

and z minimises the validation log-loss

    L(w) = -1/n sum_i log( sum_k w_k q_ki ),    q_ki = p_k(x_i)[y_i]  (member k's probability of the truth)

with gradient dL/dw_k = -1/n sum_i q_ki / p_i, and through the softmax dL/dz = w * (g - w.g).
L is convex in w, so L-BFGS on z finds the optimum; only the (K, n) matrix q is needed.

Rules, in order:
  * members must come from the same data and split (data_checksum and split_hash in metrics.json):
    averaging rows of different validation sets would be meaningless;
  * the fitted weights are kept only if they help over equal weights on what Kaggle scores:
    higher validation accuracy, or the same accuracy and a log-loss lower by `EnsembleConfig.min_gain`
    (weights fitted on the rows we score on buy little, and equal weights are the honest default;
    on real data two CNN seeds averaged equally made 16 errors, log-loss-fitted weights 19);
  * the result is never worse on validation (accuracy, then log-loss) than the best member alone:
    if it would be, the ensemble is that member (one-hot weights), and says so.

The output is an ordinary run folder (model "ensemble") with weights.json, so `kit predict`,
`kit submit` and `kit report` treat it like any trained model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from kit import config, io, metrics, models, runs
from kit.errors import KitError
from kit.metrics import accuracy, log_loss
from kit.runs import Run

WEIGHTS = "weights.json"


@dataclass
class EnsembleConfig:
    min_gain: float = 1e-4  # log-loss (nats) fitted weights must save over equal weights to be kept
    eps: float = metrics.EPS  # floor under probabilities before log (a member can say exactly 0)
    maxiter: int = 200  # L-BFGS iterations; K is tiny, it converges in tens


# ----------------------------------------------------------------------------- maths


def combine(probas: np.ndarray, w: np.ndarray) -> np.ndarray:
    """sum_k w_k P_k. probas: (K, n, 10), w: (K,) -> (n, 10) float64 (runs store float32)."""
    return np.tensordot(w, np.asarray(probas, dtype=np.float64), axes=1)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def fit_weights(probas: np.ndarray, y: np.ndarray, cfg: EnsembleConfig | None = None) -> np.ndarray:
    """Weights (K,) on the simplex minimising the log-loss of combine(probas, w) on labels y."""
    from scipy.optimize import minimize

    cfg = cfg or EnsembleConfig()
    K, n, _ = probas.shape
    q = probas[:, np.arange(n), y].astype(np.float64)  # (K, n): each member's p(truth)

    def loss_and_grad(z: np.ndarray) -> tuple[float, np.ndarray]:
        w = softmax(z)
        p = np.maximum(w @ q, cfg.eps)  # (n,)
        g = -(q / p).mean(axis=1)  # dL/dw, (K,)
        return float(-np.log(p).mean()), w * (g - w @ g)

    res = minimize(loss_and_grad, np.zeros(K), jac=True, method="L-BFGS-B", options={"maxiter": cfg.maxiter})
    return softmax(res.x)


# ----------------------------------------------------------------------------- members


def default_members(cnn_seeds: int | None = None) -> list[Run]:
    """The latest run of each model; with `cnn_seeds`, the latest N CNN runs plus the latest scratch run."""
    if cnn_seeds:
        cnn = runs.all_runs(model="cnn")[-cnn_seeds:]
        if len(cnn) < cnn_seeds:
            raise KitError(
                f"asked for {cnn_seeds} CNN runs but {config.runs_dir()} has {len(cnn)} "
                f"finished; train more (`make train-ensemble SEEDS={cnn_seeds}`)"
            )
        scratch = runs.latest("scratch")
        return ([scratch] if scratch else []) + cnn
    return [r for r in (runs.latest(m) for m in models.names()) if r is not None]


def check_compatible(members: Sequence[Run]) -> dict:
    """Refuse members trained on different data or split; return the shared metrics fields."""
    first = members[0]
    m0 = first.metrics
    for r in members[1:]:
        m = r.metrics
        for key, what in (
            ("data_checksum", "data"),
            ("split_hash", "validation split"),
            ("n_val", "validation size"),
            ("n_test", "test size"),
        ):
            if m.get(key) != m0.get(key):
                raise KitError(
                    f"runs {first.name} and {r.name} were trained on a different {what}: "
                    f"{key} {m0.get(key)!r} vs {m.get(key)!r}. Ensemble only runs trained on the same "
                    f"data (retrain one of them, or pick runs with the same {key} in metrics.json)"
                )
    return {k: m0.get(k) for k in ("data_checksum", "split_hash", "n_val", "n_test")}


def _load_probas(members: Sequence[Run], shared: dict) -> tuple[np.ndarray, np.ndarray]:
    """(K, n_val, 10) and (K, n_test, 10) float64 stacks, shapes checked against metrics."""
    val, test = [], []
    for r in members:
        for name in (runs.VAL_PROBA, runs.TEST_PROBA):
            if not r.file(name).exists():
                raise KitError(f"{r.path} has no {name}; it cannot be ensembled (retrain it)")
        v, t = r.val_proba(), r.test_proba()
        if v.shape != (shared["n_val"], config.N_CLASSES) or t.shape != (shared["n_test"], config.N_CLASSES):
            raise KitError(
                f"{r.path}: probabilities have shapes {v.shape} and {t.shape}, but its "
                f"metrics.json says n_val={shared['n_val']}, n_test={shared['n_test']}"
            )
        val.append(v)
        test.append(t)
    return np.stack(val).astype(np.float64), np.stack(test).astype(np.float64)


def _validation_labels(shared: dict) -> np.ndarray:
    """The validation labels (n_val,) in split order, after checking the data matches the members'."""
    from kit import data

    ds, sp = data.load_split()
    if metrics.mismatch(shared, metrics.identity(ds.checksum, sp.hash)):
        raise KitError(
            f"the installed data (checksum {ds.checksum}, split {sp.hash}) is not what the runs were "
            f"trained on (checksum {shared['data_checksum']}, split {shared['split_hash']}); point "
            f"--data-dir / KIT_DATA_DIR at that data, or retrain"
        )
    return ds.y_train[sp.val_idx].astype(np.int64)


# ----------------------------------------------------------------------------- build


def choose_weights(val: np.ndarray, y: np.ndarray, cfg: EnsembleConfig) -> tuple[np.ndarray, str]:
    """Apply the rules of the module docstring. val: (K, n, 10). Returns (weights (K,), method)."""
    K = len(val)
    equal = np.full(K, 1.0 / K)
    fitted = fit_weights(val, y, cfg)
    p_fit, p_eq = combine(val, fitted), combine(val, equal)
    # Kaggle scores accuracy: log-loss-optimal weights that cost accuracy do not "help"
    acc_fit, acc_eq = accuracy(p_fit, y), accuracy(p_eq, y)
    if acc_fit > acc_eq or (acc_fit == acc_eq and log_loss(p_fit, y) < log_loss(p_eq, y) - cfg.min_gain):
        w, method = fitted, "fitted"
    else:
        w, method = equal, "equal"
    # best member: accuracy first, log-loss to break ties
    best = max(range(K), key=lambda k: (accuracy(val[k], y), -log_loss(val[k], y)))
    ens = combine(val, w)
    # ties in log-loss up to rounding count as "not worse"
    if (accuracy(ens, y), -log_loss(ens, y) + 1e-9) < (accuracy(val[best], y), -log_loss(val[best], y)):
        w, method = np.eye(K)[best], "best-member"
    return w, method


def cross_fitted_accuracy(
    val: np.ndarray, y: np.ndarray, cfg: EnsembleConfig, folds: int = 2, seed: int = 0
) -> float:
    """Validation accuracy with weights chosen on the other folds: an estimate free of the
    optimism of scoring weights on the rows they were fitted to. val: (K, n, 10)."""
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    correct = 0
    for f in range(folds):
        w, _ = choose_weights(val[:, fold != f], y[fold != f], cfg)
        correct += int(np.sum(combine(val[:, fold == f], w).argmax(1) == y[fold == f]))
    return correct / len(y)


def _members(run_refs: Sequence[str] | None, cnn_seeds: int | None) -> list[Run]:
    """The runs to ensemble: those named, else default_members; at least two, each once."""
    members = (
        [runs.require_run(runs.resolve(ref)) for ref in run_refs] if run_refs else default_members(cnn_seeds)
    )
    names = [r.name for r in members]
    if len(set(names)) != len(names):
        raise KitError(f"the same run is listed twice: {', '.join(names)}")
    if len(members) < 2:
        raise KitError(
            f"an ensemble needs at least two finished runs; found {len(members)} "
            f"({', '.join(names) or 'none'}) in {config.runs_dir()}. Train more "
            f"(`kit train scratch`, `kit train cnn`) or name runs: `kit ensemble RUN RUN ...`"
        )
    return members


def build(
    run_refs: Sequence[str] | None = None,
    cnn_seeds: int | None = None,
    cfg: EnsembleConfig | None = None,
    echo: Callable[[str], None] = print,
) -> Run:
    """Ensemble `run_refs` (default: see default_members) into a new finished "ensemble" run."""
    cfg = cfg or EnsembleConfig()
    t0 = time.perf_counter()
    members = _members(run_refs, cnn_seeds)
    names = [r.name for r in members]
    shared = check_compatible(members)
    val, test = _load_probas(members, shared)
    y = _validation_labels(shared)

    w, method = choose_weights(val, y, cfg)
    val_proba, test_proba = combine(val, w), combine(test, w)

    member_acc = [accuracy(v, y) for v in val]
    width = max(len(n) for n in names)
    for name, acc, wk in zip(names, member_acc, w):
        echo(f"  {name:{width}s}  val accuracy {acc:.4f}  weight {wk:.3f}")
    ens_acc, best_acc = accuracy(val_proba, y), max(member_acc)
    honest = cross_fitted_accuracy(val, y, cfg)
    echo(
        f"  {'ensemble':{width}s}  val accuracy {ens_acc:.4f}  ({method} weights; "
        f"{ens_acc - best_acc:+.4f} over the best member; {honest:.4f} with weights fitted on "
        f"the other half of the validation rows)"
    )

    run = runs.create("ensemble", seed=0)
    run.write_config({"model": "ensemble", "seed": 0, "members": names, **asdict(cfg)})
    io.write_json(run.file(WEIGHTS), {"method": method, "weights": {n: float(wk) for n, wk in zip(names, w)}})
    run.write_predictions(val_proba, test_proba)
    run.finish(
        {
            "model": "ensemble",
            "seed": 0,
            **shared,
            "val_accuracy": ens_acc,
            "val_loss": log_loss(val_proba, y),
            "wall_time_s": time.perf_counter() - t0,
            "method": method,
            "members": names,
            "member_val_accuracy": dict(zip(names, member_acc)),
            "best_member_val_accuracy": best_acc,
            "cross_fitted_val_accuracy": honest,
        }
    )
    echo(f"ensemble run: {run.path}")
    return run
