"""The interactive explorer (issue 25): built on the committed records, its controls driven from Python, what the
views draw checked by rendering the Vega-Lite specification (vl-convert runs Vega's own dataflow), and the exported
HTML opened in headless Chromium when it is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import sharing_lab
from sharing_lab.cli import main
from sharing_lab.errors import InputError

pytest.importorskip("altair")
vl_convert = pytest.importorskip("vl_convert")

RECORDS = Path(__file__).resolve().parents[1] / "records" / "embedded"
RUNS = [RECORDS / name for name in ("oit-ordinal-s0", "oit-independent-s0", "oit-scheduled-s0")]


@pytest.fixture(scope="module")
def explorer():
    return sharing_lab.explore(RUNS)


def _points(explorer) -> tuple[int, int]:
    """Marks Vega draws: circles of the two Φ views, points of the probability and score lines."""
    svg = vl_convert.vegalite_to_svg(json.dumps(explorer.spec()))
    return svg.count('aria-roledescription="circle"'), svg.count('aria-roledescription="point"')


def _expected(explorer, run=None, arm=None, layer=None, epoch=None, decision=0) -> tuple[int, int]:
    """The same counts from the data, filtered in pandas as the controls say (a missing value draws nothing)."""
    data = explorer.data
    layers, probs, scores = data.layers, data.probs, data.scores
    last = data.last_epoch if epoch is None else epoch

    def keep(frame, by_layer=False):
        mask = frame["epoch"] <= last
        if run is not None:
            mask &= frame["run"] == run
        if arm is not None:
            mask &= frame["arm"] == arm
        if by_layer and layer is not None:
            mask &= frame["layer_name"] == layer
        return frame[mask]

    probs, layers, scores = keep(probs), keep(layers, True), keep(scores)
    circles = int(layers["cos_align"].notna().sum() + layers["coupled_norm"].notna().sum())
    return circles, int(probs[probs["decision"] == decision]["prob"].notna().sum() + scores["value"].notna().sum())


def test_the_views_data_and_controls(explorer):
    data = explorer.data
    assert data.runs == sorted(path.name for path in RUNS)
    assert data.arms == ["independent", "ordinal", "transitionary (Φ cosine)"]
    assert {"val_acc_mean", "gt_kendall"} <= set(data.scores["name"])
    assert len(data.layer_names) > 10 and data.decisions == [0, 1, 2]
    everything = _points(explorer)
    assert everything == _expected(explorer)
    one_run = explorer.select(run="oit-ordinal-s0", layer=data.layer_names[2])
    assert one_run.controls.run == "oit-ordinal-s0" and explorer.controls.run is None  # a new explorer
    assert _points(one_run) == _expected(explorer, run="oit-ordinal-s0", layer=data.layer_names[2])
    assert _points(one_run)[0] < everything[0] / 10
    early = explorer.select(arm="independent", epoch=10, decision=2)
    assert _points(early) == _expected(explorer, arm="independent", epoch=10, decision=2)
    with pytest.raises(InputError, match="unknown run"):
        explorer.select(run="nope")


def test_the_jupyter_widget_reads_and_sets_the_controls(explorer):
    pytest.importorskip("anywidget")
    widget = explorer.select(epoch=12).widget()
    assert widget.params.epoch == 12 and widget.params.decision == 0
    widget.params.epoch = 5
    assert widget.params.epoch == 5
    assert set(widget.selections.trait_names()) >= {"run", "arm", "layer", "steps"}


def test_hover_names_run_layer_and_step(explorer):
    spec = explorer.spec()
    views = [view for row in spec["vconcat"] for view in row["hconcat"]]
    tooltip = {item["field"] for item in views[0]["encoding"]["tooltip"]}
    assert {"run", "layer_name", "step"} <= tooltip
    assert {param["name"] for param in spec["params"]} >= {"run", "arm", "layer", "decision", "epoch", "steps"}
    assert "text/plain" in explorer._repr_mimebundle_() and "application/vnd.vegalite.v6+json" in \
        explorer._repr_mimebundle_()


def test_html_is_self_contained_and_the_cli_writes_it(tmp_path, capsys):
    out = tmp_path / "explore.html"
    with pytest.raises(SystemExit) as exit_:
        main(["explore", *map(str, RUNS), "--html", str(out), "--arm", "ordinal"])
    assert exit_.value.code in (0, None)
    assert "3 runs, 3 arms" in capsys.readouterr().out
    html = out.read_text()
    assert not re.search(r"<script[^>]+src=", html)  # Vega's scripts are inlined: no network
    assert "oit-independent-s0" in html and '"ordinal"' in html
    for args, fragment in ((["explore", str(tmp_path / "none"), "--html", str(out)], "does not exist"),
                           (["explore", str(tmp_path), "--html", str(out)], "no runs"),
                           (["explore", str(RUNS[0]), "--html", str(out), "--layer", "x"], "unknown layer")):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and fragment in err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium (Debian's chromium package) is not installed")
def test_the_html_renders_in_headless_chromium(explorer, tmp_path):
    from PIL import Image

    page = explorer.select(arm="ordinal").save_html(tmp_path / "explore.html")
    shot = tmp_path / "explore.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1000,760", "--virtual-time-budget=20000", f"--screenshot={shot}",
                    page.as_uri()], check=True, capture_output=True, timeout=120)
    image = Image.open(shot).convert("L")
    colours = image.getcolors(maxcolors=1 << 16) or []
    assert image.size == (1000, 760) and len(colours) > 50  # drawn views, not a blank or an error page
