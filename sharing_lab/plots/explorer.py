"""An interactive explorer of one or many runs' records (Vega-Lite through Altair): Φ against gradient alignment and
against the coupled-gradient norm per layer and probe step (paper Section 3.3, Figure 3), the controller's decision
probabilities over the search (Figure 5), and accuracy with the ground-truth scores (Section 5.2).

The records are read once (:func:`explorer_data`); the controls (run, scheme, layer, decision, last epoch) and the
brush over steps are Vega-Lite parameters, so every change is computed in the browser or in JupyterLab's renderer
and updates the views in place, with no kernel round trip and no server; hovering a point names its run, layer and
step. The same chart saves as one self-contained HTML file (Vega's scripts inlined) that works in a browser with no
Python and no network. :meth:`Explorer.select` sets the controls from Python (their initial values);
:meth:`Explorer.widget` gives an ``altair.JupyterChart`` whose controls Python can also read and set.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..extras import require
from .runs import RunSet

SCORES = ("val_acc_mean", "val_acc_widest", "gt_kendall", "gt_top1_prob")  # the accuracy view's scalars


@dataclass(frozen=True)
class ExplorerData:
    """What the views show, read once: probe points (``layers``), decision probabilities (``probs``) and the
    scalars of the accuracy view (``scores``), each with ``run``, ``arm`` and ``epoch`` columns."""

    layers: pd.DataFrame
    probs: pd.DataFrame
    scores: pd.DataFrame

    @property
    def runs(self) -> list[str]:
        return sorted(set(self.layers["run"]) | set(self.scores["run"]))

    @property
    def arms(self) -> list[str]:
        return sorted(set(self.layers["arm"]) | set(self.scores["arm"]))

    @property
    def layer_names(self) -> list[str]:
        order = self.layers.drop_duplicates("layer_name").sort_values("layer")
        return list(order["layer_name"])

    @property
    def decisions(self) -> list[int]:
        return sorted(int(d) for d in self.probs["decision"].unique())

    @property
    def last_epoch(self) -> int:
        epochs = pd.concat([self.layers["epoch"], self.scores["epoch"]])
        return int(epochs.max()) if len(epochs) else 0


def _arm(meta: dict) -> str:
    """A run's arm as the figures name it: the scheme, and how a moving scheme's transforms moved."""
    if meta["phi_schedule"]:
        return f"{meta['scheme']} (Φ {meta['phi_schedule']})"
    if not math.isnan(meta["tau"]):
        return f"{meta['scheme']} (τ {meta['tau']:g})"
    return str(meta["scheme"])


def explorer_data(paths: Iterable[str | Path] | RunSet) -> ExplorerData:
    """The explorer's data from run directories or sweeps of them (:class:`RunSet`); search runs only."""
    runset = paths if isinstance(paths, RunSet) else RunSet.from_paths(paths)
    runset = runset.select(kind="search")
    if not runset:
        raise InputError("no search runs to explore (a run directory holds config.json and its tables)")
    arms = {run.id: _arm(run.meta()) for run in runset}

    def table(name: str, columns: Sequence[str]) -> pd.DataFrame:
        frame = runset.table(name)
        if frame.empty:
            return pd.DataFrame(columns=["run", "arm", *columns])
        frame = frame.assign(arm=frame["id"].map(arms))
        return frame[["run", "arm", *columns]].reset_index(drop=True)

    layers = table("layers", ["step", "epoch", "layer", "name", "phi", "cos_align", "coupled_norm"])
    layers = layers.rename(columns={"name": "layer_name"})
    layers = layers[layers["phi"] > 0]  # Φ is drawn on a log axis; a layer without shared columns has Φ = 0
    probs = table("probs", ["step", "epoch", "layer", "width", "prob"]).rename(columns={"layer": "decision"})
    probs["width"] = probs["width"].astype(str)
    scalars = table("scalars", ["step", "epoch", "name", "value"])
    scores = scalars[scalars["name"].isin(SCORES)].reset_index(drop=True)
    return ExplorerData(layers.reset_index(drop=True), probs, scores)


@dataclass(frozen=True)
class Controls:
    """The controls' values: None shows all (runs, arms, layers) or the whole search (``epoch``: the last epoch
    shown)."""

    run: str | None = None
    arm: str | None = None
    layer: str | None = None
    decision: int = 0
    epoch: int | None = None


class Explorer:
    """Linked interactive views of runs' records with their controls (see the module's docstring)."""

    def __init__(self, data: ExplorerData, controls: Controls | None = None) -> None:
        self.data = data
        self.controls = controls or Controls()

    def select(self, run: str | None = None, arm: str | None = None, layer: str | None = None,
               decision: int | None = None, epoch: int | None = None) -> Explorer:
        """The same data with these control values (others kept); unknown values are refused in one line."""
        for value, known, what in ((run, self.data.runs, "run"), (arm, self.data.arms, "arm"),
                                   (layer, self.data.layer_names, "layer"),
                                   (decision, self.data.decisions, "decision")):
            if value is not None and value not in known:
                raise InputError(f"unknown {what} {value!r}; known: {', '.join(map(str, known[:12]))}"
                                 + (" …" if len(known) > 12 else ""))
        changes = {key: value for key, value in (("run", run), ("arm", arm), ("layer", layer),
                                                 ("decision", decision), ("epoch", epoch)) if value is not None}
        return Explorer(self.data, replace(self.controls, **changes))

    def chart(self):
        """The Altair chart: the two Φ views side by side, the probability and accuracy views below."""
        alt = require("altair", "the explorer")
        data, controls = self.data, self.controls
        run = alt.selection_point(name="run", fields=["run"], value=controls.run, bind=alt.binding_select(
            options=[None, *data.runs], labels=["all runs", *data.runs], name="run "))
        arm = alt.selection_point(name="arm", fields=["arm"], value=controls.arm, bind=alt.binding_select(
            options=[None, *data.arms], labels=["all arms", *data.arms], name="arm "))
        layer = alt.selection_point(name="layer", fields=["layer_name"], value=controls.layer, bind=alt.binding_select(
            options=[None, *data.layer_names], labels=["all layers", *data.layer_names], name="layer "))
        decision = alt.param(name="decision", value=controls.decision, bind=alt.binding_select(
            options=data.decisions, name="decision "))
        last = data.last_epoch
        epoch = alt.param(name="epoch", value=last if controls.epoch is None else controls.epoch,
                          bind=alt.binding_range(min=0, max=max(last, 1), step=1, name="last epoch "))
        steps = alt.selection_interval(name="steps", encodings=["x"])
        shown = (alt.datum.epoch <= epoch)
        tooltip = ["run:N", "arm:N", "layer_name:N", "layer:Q", "step:Q", "epoch:Q", "phi:Q", "cos_align:Q",
                   "coupled_norm:Q"]

        def phi_view(y: str, title: str):
            return (alt.Chart(alt.Data(name="layers"), title=title).mark_circle(size=28, opacity=0.7)
                    .encode(x=alt.X("phi:Q", scale=alt.Scale(type="log"), title="Φ (Eq. 4)"),
                            y=alt.Y(f"{y}:Q", title=title), color=alt.Color("arm:N", title="arm"), tooltip=tooltip)
                    .transform_filter(run).transform_filter(arm).transform_filter(layer)
                    .transform_filter(shown).transform_filter(steps)
                    .properties(width=330, height=240))

        alignment = phi_view("cos_align", "gradient alignment (cos, Eq. 3)").add_params(run, arm, layer)
        coupled = phi_view("coupled_norm", "coupled-gradient norm")
        probs = (alt.Chart(alt.Data(name="probs"), title="decision probabilities (Figure 5)").mark_line(point=True)
                 .encode(x=alt.X("step:Q"), y=alt.Y("prob:Q", scale=alt.Scale(domain=[0, 1])),
                         color=alt.Color("width:N", title="width"), detail="run:N",
                         tooltip=["run:N", "arm:N", "decision:Q", "width:N", "step:Q", "epoch:Q", "prob:Q"])
                 .transform_filter(alt.datum.decision == decision).transform_filter(run).transform_filter(arm)
                 .transform_filter(shown).add_params(decision).properties(width=330, height=200))
        scores = (alt.Chart(alt.Data(name="scores"), title="accuracy and ground-truth scores (brush: steps)")
                  .mark_line(point=True)
                  .encode(x=alt.X("step:Q"), y=alt.Y("value:Q"), color=alt.Color("name:N", title="measure"),
                          detail="run:N", tooltip=["run:N", "arm:N", "name:N", "step:Q", "epoch:Q", "value:Q"])
                  .transform_filter(run).transform_filter(arm).transform_filter(shown)
                  .add_params(steps, epoch).properties(width=330, height=200))
        chart = (alt.vconcat(alt.hconcat(alignment, coupled),
                             alt.hconcat(probs, scores).resolve_scale(color="independent"))
                 .resolve_scale(color="independent").properties(title="sharing-lab explorer"))
        chart.datasets = {"layers": _values(data.layers), "probs": _values(data.probs), "scores": _values(data.scores)}
        return chart

    def spec(self) -> dict:
        """The Vega-Lite specification, data included (not validated against the schema again: Altair built it)."""
        return self.chart().to_dict(validate=False)

    def save_html(self, path: str | Path) -> Path:
        """One self-contained HTML file (Vega, Vega-Lite and vega-embed inlined: no network, no Python)."""
        vl_convert = require("vl_convert", "a self-contained HTML export")
        path = Path(path)
        path.write_text(vl_convert.vegalite_to_html(json.dumps(self.spec()), bundle=True))
        return path

    def widget(self):
        """An ``altair.JupyterChart`` of the views (needs the anywidget package): its ``params`` (``decision``,
        ``epoch``) can be set from Python and its ``selections`` (``run``, ``arm``, ``layer``, the brushed
        ``steps``) read, while the views update in place."""
        require("anywidget", "the explorer widget")
        alt = require("altair", "the explorer")
        return alt.JupyterChart(self.chart())

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"application/vnd.vegalite.v6+json": self.spec(), "text/plain": repr(self)}

    def __repr__(self) -> str:
        return (f"Explorer({len(self.data.runs)} runs, {len(self.data.arms)} arms, {len(self.data.layer_names)} "
                f"layers; controls {self.controls})")


def _values(frame: pd.DataFrame) -> list[dict]:
    """A frame as inline Vega data (JSON: NaN becomes null)."""
    return json.loads(frame.to_json(orient="records", double_precision=6))


def explore(paths: str | Path | Iterable[str | Path] | RunSet) -> Explorer:
    """The explorer of a run directory, a sweep directory of runs, or several of them."""
    if isinstance(paths, str | Path):
        paths = [paths]
    return Explorer(explorer_data(paths))
