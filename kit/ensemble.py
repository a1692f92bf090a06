"""Average several runs' class probabilities: equal weights unless fitted ones are clearly
better on the shared validation split; or the members of cross-validated groups, judged out of
fold over every labelled row (kit.groups; the "groups" section at the end).

The ensemble's probabilities are a convex combination of its K members':

    p(x) = sum_k w_k p_k(x),    w = softmax(z),  z in R^K   (so w_k >= 0, sum_k w_k = 1)

and z minimises the validation log-loss

    L(w) = -1/n sum_i log( sum_k w_k q_ki ),    q_ki = p_k(x_i)[y_i]  (member k's probability of the truth)

with gradient dL/dw_k = -1/n sum_i q_ki / p_i, and through the softmax dL/dz = w * (g - w.g).
L is convex in w, so L-BFGS on z finds the optimum; only the (K, n) matrix q is needed.

Which weights (docs/decisions.md, "Ensemble weights", has the study behind the rule):
  * members must come from the same data and split (data_checksum and split_hash in metrics.json):
    averaging rows of different validation sets would be meaningless;
  * the default is the plain average, equal weights: a difference of a few of the validation
    images is noise, and weights chosen on those images carry that noise to the test set;
  * fitted weights replace it only when their gain is larger than its noise, measured without
    scoring weights on the rows that chose them: cross-fitted over `folds` folds (each fold
    predicted with weights fitted on the others), the per-image difference in errors against
    equal weights resampled by a paired bootstrap, and the lower end of its `confidence`
    interval above zero: fewer errors, what Kaggle scores, beyond noise. (The log-loss difference
    is reported too; it is not the test: on real members a clear log-loss gain came with more
    held-out errors, docs/decisions.md.)
  * before that, a member whose removal from the equal average saves both errors and log-loss
    beyond their noise is dropped (a broken run), one at a time; alike members never are.

The output is an ordinary run folder (model "ensemble") with weights.json, so `kit predict`,
`kit submit` and `kit report` treat it like any trained model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from kit import config, data, groups, io, metrics, models, runs
from kit.errors import KitError
from kit.metrics import accuracy, log_loss
from kit.runs import Run

WEIGHTS = "weights.json"


@dataclass
class EnsembleConfig:
    folds: int = 5  # cross-fitting: weights fitted on the other folds predict each fold
    bootstrap: int = 2000  # paired bootstrap resamples of the validation rows
    confidence: float = 0.95  # two-sided: fitted weights need the lower end above zero
    seed: int = 0  # the folds and the bootstrap draws
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


def fixed_split_runs(model: str) -> list[Run]:
    """The finished runs of `model` on the shared validation split (not members of a group)."""
    return [r for r in runs.all_runs(model=model) if not groups.group_of(r)]


def default_members(cnn_seeds: int | None = None) -> list[Run]:
    """The latest fixed-split run of each model; with `cnn_seeds`, the latest N CNN runs plus
    the latest scratch run. (Members of cross-validated groups are ensembled as groups.)"""
    if cnn_seeds:
        cnn = fixed_split_runs("cnn")[-cnn_seeds:]
        if len(cnn) < cnn_seeds:
            raise KitError(
                f"asked for {cnn_seeds} CNN runs but {config.runs_dir()} has {len(cnn)} "
                f"finished; train more (`make train-ensemble SEEDS={cnn_seeds}`)"
            )
        scratch = fixed_split_runs("scratch")[-1:]
        return scratch + cnn
    return [rs[-1] for rs in (fixed_split_runs(m) for m in models.names()) if rs]


def default_group() -> groups.Group | None:
    """The latest complete group, when it started after the last fixed-split run finished:
    `kit ensemble` then takes that group, as it takes the latest runs otherwise. (Its start, not
    its members' ends: members a `kit remote` job brings back finished on Kaggle, earlier.)"""
    group = groups.latest_complete()
    if group is None:
        return None
    fixed = [r for m in models.names() for r in fixed_split_runs(m)]
    last = max((r.metrics.get("finished_utc", "") for r in fixed), default="")
    return group if group.created_utc > last else None


def refuse_mixing(members: Sequence[Run]) -> None:
    """One line when a member of a cross-validated group is among fixed-split runs."""
    in_group = [(r.name, groups.group_of(r)) for r in members if groups.group_of(r)]
    if in_group:
        name, group = in_group[0]
        raise KitError(
            f"{name} is a member of the cross-validated group {group} (judged out of fold), the "
            f"others are judged on the fixed validation split: ensemble the group alone "
            f"(`kit ensemble {group}`) or fixed-split runs alone"
        )


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
    ds, sp = data.load_split()
    if metrics.mismatch(shared, metrics.identity(ds.checksum, sp.hash)):
        raise KitError(
            f"the installed data (checksum {ds.checksum}, split {sp.hash}) is not what the runs were "
            f"trained on (checksum {shared['data_checksum']}, split {shared['split_hash']}); point "
            f"--data-dir / KIT_DATA_DIR at that data, or retrain"
        )
    return ds.y_train[sp.val_idx].astype(np.int64)


# ----------------------------------------------------------------------------- build


def row_log_loss(proba: np.ndarray, y: np.ndarray, eps: float = metrics.EPS) -> np.ndarray:
    """Each row's negative log-likelihood of its label: (n,) nats. proba: (n, 10), y: (n,)."""
    return -np.log(np.maximum(proba[np.arange(len(y)), y], eps))


def cross_fitted(val: np.ndarray, y: np.ndarray, cfg: EnsembleConfig) -> np.ndarray:
    """(n, 10): each validation row predicted with weights fitted on the other folds only, so
    no row scores the weights it helped choose. val: (K, n, 10), y: (n,)."""
    fold = np.random.default_rng(cfg.seed).permutation(len(y)) % cfg.folds
    out = np.empty(val.shape[1:], np.float64)
    for f in range(cfg.folds):
        w = fit_weights(val[:, fold != f], y[fold != f], cfg)
        out[fold == f] = combine(val[:, fold == f], w)
    return out


def bootstrap_interval(d: np.ndarray, cfg: EnsembleConfig) -> tuple[float, float]:
    """Percentile interval of mean(d) over `cfg.bootstrap` resamples of the rows. d: (n,)."""
    rng = np.random.default_rng(cfg.seed)
    means = np.array([d[rng.integers(0, len(d), len(d))].mean() for _ in range(cfg.bootstrap)])
    tail = (1 - cfg.confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def accuracy_interval(proba: np.ndarray, y: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the accuracy of proba (n, 10) on labels y (n,)."""
    from scipy.stats import norm

    n, p = len(y), accuracy(proba, y)
    z = float(norm.ppf(1 - (1 - confidence) / 2))
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def _neg(x: float) -> float:
    """-x, with -0.0 shown as 0.0: the reason reads as changes (fitted minus equal)."""
    return -x + 0.0


def _gains(p_old: np.ndarray, p_new: np.ndarray, y: np.ndarray, cfg: EnsembleConfig):
    """Per row, what p_new saves over p_old: (errors (n,) in {-1, 0, 1}, log-loss (n,) nats)."""
    errors = (p_old.argmax(1) != y).astype(np.float64) - (p_new.argmax(1) != y)
    return errors, row_log_loss(p_old, y, cfg.eps) - row_log_loss(p_new, y, cfg.eps)


def _average(val: np.ndarray, members: list[int]) -> np.ndarray:
    return combine(val[members], np.full(len(members), 1.0 / len(members)))


def harmful_members(val: np.ndarray, y: np.ndarray, cfg: EnsembleConfig) -> list[int]:
    """Members to drop from the equal average, most harmful first: one whose removal saves
    errors and log-loss, each beyond its noise (the lower ends of both bootstrap intervals
    above zero). Alike members never qualify; a broken run does. val: (K, n, 10)."""
    keep, dropped = list(range(len(val))), []
    while len(keep) > 1:
        base = _average(val, keep)
        gains = {k: _gains(base, _average(val, [j for j in keep if j != k]), y, cfg) for k in keep}
        k = max(keep, key=lambda k: (gains[k][0].sum(), gains[k][1].mean()))
        errors, nats = gains[k]
        if bootstrap_interval(errors, cfg)[0] <= 0 or bootstrap_interval(nats, cfg)[0] <= 0:
            break
        keep.remove(k)
        dropped.append(k)
    return dropped


@dataclass
class Decision:
    """Which weights, and the evidence. `dropped`: members left out as harmful (indices). Then,
    over the others, cross-fitted against their equal average: `errors` the validation errors of
    (equal weights, fitted weights); `error_gain` the errors fitted weights save over the n rows
    and `error_interval` its bootstrap interval; `gain` the log-loss they save per image (nats;
    > 0 = fitted better) and `interval` its bootstrap interval."""

    weights: np.ndarray
    method: str
    dropped: list[int]
    errors: tuple[int, int]
    error_interval: tuple[float, float]
    gain: float
    interval: tuple[float, float]
    cross_fitted_accuracy: float

    @property
    def error_gain(self) -> float:
        return float(self.errors[0] - self.errors[1])

    def reason(self, names: Sequence[str]) -> str:
        """The decision and its evidence in one line, naming members by `names`."""
        (elo, ehi), (lo, hi) = self.error_interval, self.interval
        head = f"{self.method} weights"
        if self.dropped:
            head += f" without {', '.join(names[k] for k in self.dropped)} (harmful beyond noise)"
        evidence = (
            f"fitted weights, cross-fitted, make {self.errors[1]} errors against {self.errors[0]} "
            f"({_neg(self.error_gain):+.1f} [{_neg(ehi):+.1f}, {_neg(elo):+.1f}]) and change the "
            f"log-loss by {_neg(self.gain):+.4f} [{_neg(hi):+.4f}, {_neg(lo):+.4f}] nats per image"
        )
        verdict = "fewer errors beyond their noise" if self.method == "fitted" else "not clearly fewer errors"
        return f"{head}: {evidence}: {verdict}"


def decide(val: np.ndarray, y: np.ndarray, cfg: EnsembleConfig) -> Decision:
    """Apply the rule of the module docstring. val: (K, n, 10) float64, y: (n,) labels."""
    dropped = harmful_members(val, y, cfg)
    kept = [k for k in range(len(val)) if k not in dropped]
    p_equal = _average(val, kept)
    p_cross = cross_fitted(val[kept], y, cfg) if len(kept) > 1 else p_equal
    e, d = _gains(p_equal, p_cross, y, cfg)
    (elo, ehi), (lo, hi) = bootstrap_interval(e, cfg), bootstrap_interval(d, cfg)
    fitted = elo > 0  # Kaggle scores errors: fewer of them, beyond the noise of these rows
    weights = np.zeros(len(val))
    weights[kept] = fit_weights(val[kept], y, cfg) if fitted else 1.0 / len(kept)
    n = len(y)
    return Decision(
        weights=weights,
        method="fitted" if fitted else "equal",
        dropped=dropped,
        errors=(int(np.sum(p_equal.argmax(1) != y)), int(np.sum(p_cross.argmax(1) != y))),
        error_interval=(elo * n, ehi * n),
        gain=float(d.mean()),
        interval=(lo, hi),
        cross_fitted_accuracy=accuracy(p_cross, y),
    )


def _members(run_refs: Sequence[str] | None, cnn_seeds: int | None) -> list[Run]:
    """The runs to ensemble: those named, else default_members; at least two, each once."""
    members = (
        [runs.require_run(runs.resolve(ref)) for ref in run_refs] if run_refs else default_members(cnn_seeds)
    )
    refuse_mixing(members)
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


def _print_decision(names, val, y, val_proba, decision: Decision, cfg: EnsembleConfig, echo) -> None:
    """A line per member, then the ensemble with its decision: accuracies with their intervals."""
    width = max(len(n) for n in [*names, "ensemble"])

    def acc(p) -> str:
        lo, hi = accuracy_interval(p, y, cfg.confidence)
        return f"val accuracy {accuracy(p, y):.4f} [{lo:.4f}, {hi:.4f}]"

    for name, v, wk in zip(names, val, decision.weights):
        echo(f"  {name:{width}s}  {acc(v)}  weight {wk:.3f}")
    echo(f"  {'ensemble':{width}s}  {acc(val_proba)}")
    echo(f"  {decision.reason(names)} ({cfg.confidence:.0%} intervals, {cfg.folds} folds)")


def _groups_named(refs: list[str], cnn_seeds: int | None) -> list[str]:
    """The groups to ensemble: those named (refused beside runs), else, with nothing named, the
    default group (see default_group); [] when runs are to be ensembled."""
    named = [r for r in refs if groups.is_group(r)]
    if named and len(named) < len(refs):
        other = next(r for r in refs if r not in named)
        raise KitError(
            f"{named[0]} is a cross-validated group (judged out of fold) and {other} is not: "
            f"ensemble groups alone (`kit ensemble {' '.join(named)}`) or fixed-split runs alone"
        )
    group = None if refs or cnn_seeds else default_group()
    return named or ([group.name] if group else [])


def build(
    run_refs: Sequence[str] | None = None,
    cnn_seeds: int | None = None,
    cfg: EnsembleConfig | None = None,
    echo: Callable[[str], None] = print,
) -> Run:
    """Ensemble `run_refs` (default: see default_members) into a new finished "ensemble" run."""
    cfg = cfg or EnsembleConfig()
    named_groups = _groups_named(list(run_refs or []), cnn_seeds)
    if named_groups:
        return build_groups(named_groups, cfg, echo)
    t0 = time.perf_counter()
    members = _members(run_refs, cnn_seeds)
    names = [r.name for r in members]
    shared = check_compatible(members)
    val, test = _load_probas(members, shared)
    y = _validation_labels(shared)

    decision = decide(val, y, cfg)
    val_proba, test_proba = combine(val, decision.weights), combine(test, decision.weights)
    _print_decision(names, val, y, val_proba, decision, cfg, echo)
    run = runs.create("ensemble", seed=0)
    run.write_config({"model": "ensemble", "seed": 0, "members": names, **asdict(cfg)})
    weights = {n: float(wk) for n, wk in zip(names, decision.weights)}
    member_acc = {n: accuracy(v, y) for n, v in zip(names, val)}
    io.write_json(run.file(WEIGHTS), {"method": decision.method, "weights": weights})
    run.write_predictions(val_proba, test_proba)
    run.finish(
        {
            "model": "ensemble",
            "seed": 0,
            **shared,
            "val_accuracy": accuracy(val_proba, y),
            "val_accuracy_interval": accuracy_interval(val_proba, y, cfg.confidence),
            "val_loss": log_loss(val_proba, y),
            "wall_time_s": time.perf_counter() - t0,
            "method": decision.method,
            "reason": decision.reason(names),
            "dropped": [names[k] for k in decision.dropped],
            "members": names,
            "weights": weights,
            "member_val_accuracy": member_acc,
            "best_member_val_accuracy": max(member_acc.values()),
            "cross_fitted_val_accuracy": decision.cross_fitted_accuracy,
            "errors_equal_vs_fitted_cross_fitted": decision.errors,
            "fitted_error_gain": decision.error_gain,
            "fitted_error_gain_interval": decision.error_interval,
            "fitted_log_loss_gain": decision.gain,
            "fitted_log_loss_gain_interval": decision.interval,
        }
    )
    echo(f"ensemble run: {run.path}")
    return run


# ----------------------------------------------------------------------------- groups (out of fold)


@dataclass
class OutOfFold:
    """A set of groups judged out of fold, over all N labelled rows (train.csv order).

    proba: (N, 10) float64, each row the average of the members that did not train on it;
    n_members: (N,) how many members that is; all_wrong / any_wrong: (N,) bool, whether all /
    at least one of those members' own predictions miss the label; member_accuracy: {run name:
    accuracy on its own fold}; single_accuracy: the mean, over (group, repeat), of the accuracy
    of that repeat's K members alone (one member per row): what one member scores out of fold."""

    proba: np.ndarray
    n_members: np.ndarray
    all_wrong: np.ndarray
    any_wrong: np.ndarray
    member_accuracy: dict
    single_accuracy: float

    @property
    def shared_error_share(self) -> float:
        """Of the rows some member gets wrong, the share that every member of the row gets wrong."""
        return float(self.all_wrong.sum() / max(self.any_wrong.sum(), 1))


def _group_members(gs: Sequence[groups.Group], y: np.ndarray):
    """(group, member, run, fold rows) for every member, after checking each is finished and
    its predictions cover its fold."""
    for g in gs:
        done = {r.name for r in g.runs()}
        for m in g.members:
            if m.run not in done:
                raise KitError(
                    f"group {g.name} is not finished: {len(done)} of {len(g.members)} members; "
                    f"finish it with {g.finish_command()}"
                )
            run = runs.Run(config.runs_dir() / m.run)
            rows = groups.member_split(g, m, y).val_idx
            if run.metrics.get("n_val") != len(rows):
                raise KitError(
                    f"{run.path}: {run.metrics.get('n_val')} validation rows, but its fold has {len(rows)}"
                )
            yield g, m, run, rows


def out_of_fold(
    gs: Sequence[groups.Group], y: np.ndarray, val_of: Callable[[Run], np.ndarray] = Run.val_proba
) -> tuple[OutOfFold, np.ndarray, list[str]]:
    """The out-of-fold yardstick of groups `gs` on labels y: (N,), the test prediction (the
    equal average of every member's, (n_test, 10)) and the member names. `val_of(run)`: a
    member's (n_fold, 10) probabilities of its fold (default: its val_proba.npy; a study may
    predict them anew, e.g. with other prediction settings)."""
    n = len(y)
    total, count = np.zeros((n, config.N_CLASSES)), np.zeros(n, np.int64)
    wrong = np.zeros(n, np.int64)
    singles: dict[tuple[str, int], np.ndarray] = {}
    member_acc, tests, names = {}, [], []
    for g, m, run, rows in _group_members(gs, y):
        p = val_of(run).astype(np.float64)
        total[rows] += p
        count[rows] += 1
        wrong[rows] += p.argmax(1) != y[rows]
        singles.setdefault((g.name, m.repeat), np.zeros(n, bool))[rows] = p.argmax(1) == y[rows]
        member_acc[run.name] = accuracy(p, y[rows])
        tests.append(run.test_proba().astype(np.float64))
        names.append(run.name)
    assert count.min() >= 1, "a complete group predicts every row out of fold"
    oof = OutOfFold(
        proba=total / count[:, None],
        n_members=count,
        all_wrong=wrong == count,
        any_wrong=wrong > 0,
        member_accuracy=member_acc,
        single_accuracy=float(np.mean([s.mean() for s in singles.values()])),
    )
    return oof, np.mean(tests, axis=0), names


def _print_oof(gs: Sequence[groups.Group], oof: OutOfFold, y: np.ndarray, cfg: EnsembleConfig, echo) -> None:
    width = max(len(n) for n in oof.member_accuracy)
    for name, acc in oof.member_accuracy.items():
        echo(f"  {name:{width}s}  accuracy on its fold {acc:.4f}")
    lo, hi = accuracy_interval(oof.proba, y, cfg.confidence)
    lo_n, hi_n = int(oof.n_members.min()), int(oof.n_members.max())
    per_row = "1 member" if hi_n == 1 else f"{lo_n} members" if lo_n == hi_n else f"{lo_n}-{hi_n} members"
    echo(
        f"  out of fold over {len(y)} rows ({per_row} per row): accuracy {accuracy(oof.proba, y):.4f} "
        f"[{lo:.4f}, {hi:.4f}], log-loss {log_loss(oof.proba, y):.4f}; one member alone "
        f"{oof.single_accuracy:.4f}"
    )
    echo(
        f"  errors shared by every member of the row: {int(oof.all_wrong.sum())} of the "
        f"{int(oof.any_wrong.sum())} rows some member gets wrong ({oof.shared_error_share:.0%})"
    )
    echo(f"  test prediction: the equal average of all {sum(len(g.members) for g in gs)} members")


def _labels_for(gs: Sequence[groups.Group]) -> np.ndarray:
    """All labelled rows (N,), after checking the installed data is the groups' data."""
    ds = data.load()
    for g in gs:
        if g.data_checksum != ds.checksum:
            raise KitError(
                f"group {g.name} was trained on other data (checksum {g.data_checksum}) than the "
                f"installed data ({ds.checksum}); point --data-dir / KIT_DATA_DIR at that data"
            )
    return ds.y_train.astype(np.int64)


def build_groups(names: Sequence[str], cfg: EnsembleConfig | None = None, echo=print) -> Run:
    """The equal-weight ensemble of every member of the groups `names`, judged out of fold:
    an "ensemble" run whose val_proba.npy is the out-of-fold average over all N labelled rows."""
    cfg = cfg or EnsembleConfig()
    t0 = time.perf_counter()
    gs = [groups.load(n) for n in names]
    y = _labels_for(gs)
    oof, test, members = out_of_fold(gs, y)
    _print_oof(gs, oof, y, cfg, echo)
    run = runs.create("ensemble", seed=0)
    run.write_config({"model": "ensemble", "seed": 0, "groups": list(names), "members": members})
    weights = {n: 1 / len(members) for n in members}
    io.write_json(run.file(WEIGHTS), {"method": "equal", "weights": weights})
    run.write_predictions(oof.proba, test)
    run.finish(
        {
            "model": "ensemble",
            "seed": 0,
            "yardstick": "out-of-fold",
            "groups": list(names),
            "data_checksum": gs[0].data_checksum,
            "split_hash": "out-of-fold",
            "n_val": len(y),
            "n_test": len(test),
            "val_accuracy": accuracy(oof.proba, y),
            "val_accuracy_interval": accuracy_interval(oof.proba, y, cfg.confidence),
            "val_loss": log_loss(oof.proba, y),
            "single_member_oof_accuracy": oof.single_accuracy,
            "shared_error_share": oof.shared_error_share,
            "rows_all_wrong": int(oof.all_wrong.sum()),
            "rows_any_wrong": int(oof.any_wrong.sum()),
            "members_per_row": [int(oof.n_members.min()), int(oof.n_members.max())],
            "wall_time_s": time.perf_counter() - t0,
            "method": "equal",
            "members": members,
            "weights": weights,
            "member_val_accuracy": oof.member_accuracy,
            "best_member_val_accuracy": max(oof.member_accuracy.values()),
        }
    )
    echo(f"ensemble run: {run.path}")
    return run


def group_run(name: str, echo=print) -> Run:
    """The ensemble of group `name` alone: the latest one made, else a new one."""
    made = [r for r in runs.all_runs(model="ensemble") if r.config.get("groups") == [name]]
    return made[-1] if made else build_groups([name], echo=echo)
