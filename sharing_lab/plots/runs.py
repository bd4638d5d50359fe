"""Runs that feed the figures: discovery under paths, recorded configuration, tables read lazily.

Runs are told apart by what their ``config.json`` records (scheme, τ, FLOPs target, seed, …), never by the
names of their directories. A run directory made by ``sharing-lab retrain ARCH_JSON`` (its ``config.json``
names a ``source``) holds retraining records only and is marked ``kind = "retrain"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..aps.schemes.base import get_scheme
from ..aps.transition import Transition, transition_of
from ..config import SharingConfig
from ..errors import InputError
from ..fileio import read_json
from ..runs.records import SCHEMAS, read_run_table
from ..runs.rundir import SUMMARY, read_config
from ..runs.sweeps import find_run_dirs

O_I_T = ("ordinal", "independent", "transitionary")
META_COLUMNS = ("id", "run", "path", "kind", "scheme", "family", "alpha", "tau", "phi_schedule", "flops_target",
                "seed", "model", "data", "epochs", "warmup_epochs")


class MissingRuns(InputError):
    """The given runs cannot feed a figure; the message says which runs are missing."""


def _transition(sharing: SharingConfig) -> Transition | None:
    """The transition of a run's settings (None when its scheme keeps the transforms fixed, or is not registered
    here: load its plugin with ``sharing-lab --plugin``)."""
    try:
        return transition_of(sharing, get_scheme(sharing.scheme))
    except InputError:
        return None


def _scheme(spec: str) -> tuple[str, str, float]:
    """(canonical name, family, overlap α) of a scheme spec; unknown (user) schemes keep their spec."""
    try:
        scheme = get_scheme(spec)
        name, alpha = scheme.name, float(scheme.overlap)
    except ValueError:
        name, alpha = spec, math.nan
    return name, name.partition(":")[0], alpha


class Run:
    """One run directory: its configuration (``config``, ``payload``) and its tables, read on first use."""

    def __init__(self, path: str | Path, id: int = 0) -> None:
        self.path, self.id = Path(path), id
        self.config, self.payload = read_config(self.path)
        self.name = str(self.payload.get("run", self.path.name))
        self.kind = "retrain" if "source" in self.payload else "search"
        self.scheme, self.family, self.alpha = _scheme(self.config.sharing.scheme)
        # how its transforms moved (None: fixed); τ is NaN unless they moved at a constant rate
        self.transition = _transition(self.config.sharing)
        self.phi_schedule = None if self.transition is None else self.transition.schedule
        rate = None if self.transition is None else self.transition.rate
        self.tau = math.nan if rate is None else rate
        self._tables: dict[str, pd.DataFrame] = {}

    def table(self, name: str) -> pd.DataFrame:
        """The table ``name`` (cached); schema columns get numeric dtypes even when the table is empty."""
        if name not in self._tables:
            frame = read_run_table(self.path, name)
            for column in SCHEMAS.get(name, {}):
                if column in frame and column not in ("run", "name", "source", "widths"):
                    frame[column] = pd.to_numeric(frame[column], errors="coerce")
            for column in ("name", "source", "widths"):
                if column in frame:
                    frame[column] = frame[column].astype(object)
            self._tables[name] = frame
        return self._tables[name]

    def payload_summary(self) -> dict:
        """``summary.json`` of a finished run (empty when it has none or it cannot be read)."""
        if not (self.path / SUMMARY).exists():
            return {}
        try:
            summary = read_json(self.path / SUMMARY)
        except InputError:
            return {}
        return summary if isinstance(summary, dict) else {}

    def steps_per_epoch(self) -> float:
        """Training steps per epoch as the search recorded it (the first ``steps_per_epoch`` scalar), or
        :class:`MissingRuns` for a run whose records lack it."""
        scalars = self.table("scalars")
        values = scalars.loc[scalars["name"] == "steps_per_epoch", "value"].dropna() if not scalars.empty else []
        if len(values) == 0 or not float(values.iloc[0]) > 0:
            found = "none" if len(values) == 0 else f"{float(values.iloc[0]):g}"
            raise MissingRuns(f"run {self.name!r} ({self.path}) has no positive scalar 'steps_per_epoch' in its "
                              f"records (found: {found}); the figures need it to put steps on an epoch axis: "
                              "record the run again with a sharing-lab that writes it")
        return float(values.iloc[0])

    def meta(self) -> dict:
        search = self.config.search
        return {"id": self.id, "run": self.name, "path": str(self.path), "kind": self.kind, "scheme": self.scheme,
                "family": self.family, "alpha": self.alpha, "tau": self.tau, "phi_schedule": self.phi_schedule,
                "flops_target": math.nan if search.flops_target is None else float(search.flops_target),
                "seed": int(self.config.seed), "model": self.config.model.name, "data": self.config.data.name,
                "epochs": int(search.epochs), "warmup_epochs": int(search.warmup_epochs)}

    def __repr__(self) -> str:
        return f"Run({self.name!r}, scheme={self.scheme!r}, path={str(self.path)!r})"


class RunSet:
    """A set of runs and their metadata table ``meta`` (one row per run; ``flops_target`` NaN = none)."""

    def __init__(self, runs: Sequence[Run] = ()) -> None:
        self.runs = list(runs)
        self.meta = pd.DataFrame([run.meta() for run in self.runs], columns=list(META_COLUMNS))
        self._by_id = {run.id: run for run in self.runs}

    @classmethod
    def from_paths(cls, paths: Iterable[str | Path], max_depth: int = 3) -> RunSet:
        return cls([Run(path, index) for index, path in enumerate(find_run_dirs(paths, max_depth))])

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self) -> Iterator[Run]:
        return iter(self.runs)

    def __bool__(self) -> bool:
        return bool(self.runs)

    def __repr__(self) -> str:
        return f"RunSet({len(self)} runs: {', '.join(self.schemes()) or 'none'})"

    def run(self, id: int) -> Run:
        return self._by_id[id]

    def schemes(self) -> list[str]:
        return sorted(set(self.meta["scheme"]))

    def select(self, predicate: Callable[[Run], bool] | None = None, **equal) -> RunSet:
        """Runs whose metadata equal the given values (None matches a missing value) and pass ``predicate``."""
        keep = []
        for run, row in zip(self.runs, self.meta.to_dict("records")):
            if predicate is not None and not predicate(run):
                continue
            if all(_same(row[key], value) for key, value in equal.items()):
                keep.append(run)
        return RunSet(keep)

    def group_by(self, column: str) -> dict:
        """Runs grouped by a metadata column, keys sorted (a missing value becomes the key None)."""
        groups: dict = {}
        for run, value in zip(self.runs, self.meta[column]):
            key = None if _missing(value) else (value.item() if isinstance(value, np.generic) else value)
            groups.setdefault(key, []).append(run)
        ordered = sorted(groups, key=lambda k: (k is not None, k if k is not None else 0))
        return {key: RunSet(groups[key]) for key in ordered}

    def by_scheme(self) -> dict[str, RunSet]:
        return self.group_by("scheme")

    def by_family(self) -> dict[str, RunSet]:
        return self.group_by("family")

    def by_tau(self) -> dict[float, RunSet]:
        """Transitionary search runs at a constant transition rate, grouped by τ (Φ-scheduled runs left out)."""
        groups = self.select(kind="search", family="transitionary").group_by("tau")
        return {tau: runs for tau, runs in groups.items() if tau is not None}

    def by_flops_target(self) -> dict[float | None, RunSet]:
        return self.group_by("flops_target")

    def table(self, name: str) -> pd.DataFrame:
        """The union of every run's table ``name`` with the run's metadata columns (``id`` tells runs apart)."""
        frames = []
        for run, row in zip(self.runs, self.meta.to_dict("records")):
            frame = run.table(name)
            if frame.empty:
                continue
            frame = frame.drop(columns=["run"], errors="ignore").assign(**row)
            frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=[*META_COLUMNS, *SCHEMAS.get(name, {})])
        return pd.concat(frames, ignore_index=True)

    def describe(self) -> str:
        """Short text for messages: the schemes present (with counts), or 'no runs'."""
        if not self.runs:
            return "no runs"
        counts = self.meta["scheme"].value_counts()
        return ", ".join(f"{scheme}" + (f" ({n} runs)" if n > 1 else "") for scheme, n in sorted(counts.items()))


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _same(actual, wanted) -> bool:
    if wanted is None:
        return _missing(actual)
    if _missing(actual):
        return False
    if isinstance(wanted, float) or isinstance(actual, float):
        return math.isclose(float(actual), float(wanted), rel_tol=1e-12)
    return actual == wanted


SETTING = ("model", "data", "epochs", "warmup_epochs")


def settings(runs: RunSet) -> list[RunSet]:
    """Runs split by setting (model, dataset, epochs, warm-up): only runs of one setting share an axis."""
    groups: dict[tuple, list[Run]] = {}
    for run, row in zip(runs.runs, runs.meta[list(SETTING)].itertuples(index=False)):
        groups.setdefault(tuple(row), []).append(run)
    return [RunSet(group) for _, group in sorted(groups.items(), key=lambda item: str(item[0]))]


def comparison_runs(runset: RunSet, figure: str, families: Sequence[str] = O_I_T) -> dict[str, RunSet]:
    """The search runs of each scheme family for an O/I/T comparison, or :class:`MissingRuns`.

    One setting (model, dataset, epochs, warm-up) for all families: the one covering the most families, then
    the most runs. Within it, runs without a FLOPs target are preferred (the paper's Section 5.2 searches are
    unconstrained), else the most common target; for the transitionary family, the most common τ (ties: the
    smallest), so that a panel averages seeds of one configuration only."""
    search = runset.select(kind="search")
    best: dict[str, RunSet] = {}
    for subset in settings(search):
        chosen = {family: _one_configuration(subset.select(family=family)) for family in families}
        score = (sum(bool(r) for r in chosen.values()), sum(len(r) for r in chosen.values()))
        if not best or score > (sum(bool(r) for r in best.values()), sum(len(r) for r in best.values())):
            best = chosen
    missing = [family for family in families if not best.get(family)]
    if missing:
        elsewhere = [family for family in missing if search.select(family=family)]
        note = (f"; {', '.join(elsewhere)} only with another model, data or schedule (epochs, warm-up)"
                if elsewhere else "")
        raise MissingRuns(f"{figure} needs search runs with schemes {', '.join(families)} (same model, data and "
                          f"schedule); found: {search.describe()} (missing: {', '.join(missing)}{note})")
    return best


SCHEDULED = "transitionary-schedule"  # the arm of Φ-scheduled transitionary runs beside the constant-τ one


def scheme_arms(runset: RunSet, figure: str) -> dict[str, RunSet]:
    """The O, I, T arms present (:func:`comparison_runs`; T at its most common constant τ) and, when there are
    Φ-scheduled transitionary runs of the same setting without a FLOPs target, those as the arm
    :data:`SCHEDULED`. :class:`MissingRuns` when none of O, I, T is present."""
    search = runset.select(kind="search")
    present = [family for family in O_I_T if search.select(family=family)]
    if not present:
        raise MissingRuns(f"{figure} needs search runs of ordinal, independent or transitionary sharing; found: "
                          f"{search.describe()}")
    arms = comparison_runs(search, figure, present)
    setting = tuple(next(iter(arms.values())).meta[list(SETTING)].iloc[0])
    scheduled = search.select(lambda run: run.phi_schedule is not None, family="transitionary", flops_target=None)
    scheduled = scheduled.select(lambda run: tuple(run.meta()[key] for key in SETTING) == setting)
    if scheduled and set(scheduled.meta["id"]) != set(arms.get("transitionary", RunSet()).meta["id"]):
        arms[SCHEDULED] = scheduled
    return arms


def _one_configuration(runs: RunSet) -> RunSet:
    if not runs:
        return runs
    unconstrained = runs.select(flops_target=None)
    if unconstrained:
        runs = unconstrained
    else:
        runs = largest(runs.group_by("flops_target"))
    return most_common_tau(runs) if set(runs.meta["family"]) == {"transitionary"} else runs


def largest(groups: dict) -> RunSet:
    """The biggest group (the first of equals, groups in key order)."""
    size = max(len(g) for g in groups.values())
    return next(group for group in groups.values() if len(group) == size)


def most_common_tau(runs: RunSet) -> RunSet:
    """The runs of the most common constant τ (the paper's APS-T; among equals the middle τ, as
    :mod:`sharing_lab.analysis.claims` takes it: a τ sweep's ends are the too small and too large rates), or the
    Φ-scheduled runs when there are only those."""
    groups = runs.group_by("tau")
    rates = {tau: group for tau, group in groups.items() if tau is not None}
    if len(groups) <= 1 or not rates:
        return runs if len(groups) <= 1 else largest(groups)
    taus = sorted(rates)
    most = max(len(group) for group in rates.values())
    middle = (len(taus) - 1) / 2
    return rates[min((tau for tau in taus if len(rates[tau]) == most), key=lambda tau: abs(taus.index(tau) - middle))]


def tau_runs(runset: RunSet, figure: str) -> dict[float, RunSet]:
    """Transitionary search runs grouped by τ (at least two rates), or :class:`MissingRuns`; one setting (the
    one with the most rates), runs without a FLOPs target preferred."""
    search = runset.select(kind="search")
    best: dict[float, RunSet] = {}
    for subset in settings(search.select(family="transitionary")):
        unconstrained = subset.select(flops_target=None)
        groups = (unconstrained if len(unconstrained.by_tau()) >= 2 else subset).by_tau()
        if len(groups) > len(best):
            best = groups
    if len(best) < 2:
        taus = sorted(set(search.select(family="transitionary").meta["tau"]))
        found = ", ".join(f"τ={t:g}" for t in taus) or search.describe()
        raise MissingRuns(f"{figure} needs transitionary search runs with at least two transition rates "
                          f"(sharing.transition = τ) and the same model, data and schedule; found: {found}")
    return dict(sorted(best.items(), reverse=True))
