"""Which library should draw the explorer (issue 25)? The explorer's four views of a sweep of runs (Φ against
alignment and coupled norm, decision probabilities, accuracy) drawn with Altair (Vega-Lite), Plotly and Bokeh from
the same data, each saved as one self-contained HTML file; measured: building and writing it, its size, and the
time headless Chromium takes to load and render it into a screenshot (the browser's cost).

    python analyses/explorer_libraries.py records/embedded --runs 48 [--repeat 3]

Needs altair, vl-convert-python, plotly and bokeh, and Debian's chromium.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from sharing_lab.plots.explorer import Explorer, explorer_data
from sharing_lab.plots.runs import RunSet


def plotly_html(data, path: Path) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=2, subplot_titles=("alignment", "coupled norm", "probabilities", "scores"))
    for arm, rows in data.layers.groupby("arm"):
        text = rows["run"] + " " + rows["layer_name"] + " step " + rows["step"].astype(str)
        fig.add_trace(go.Scatter(x=rows["phi"], y=rows["cos_align"], mode="markers", name=arm, text=text), 1, 1)
        fig.add_trace(go.Scatter(x=rows["phi"], y=rows["coupled_norm"], mode="markers", name=arm, text=text), 1, 2)
    probs = data.probs[data.probs["decision"] == 0]
    for (run, width), rows in probs.groupby(["run", "width"]):
        fig.add_trace(go.Scatter(x=rows["step"], y=rows["prob"], mode="lines+markers", name=f"{run} {width}",
                                 showlegend=False), 2, 1)
    for (run, name), rows in data.scores.groupby(["run", "name"]):
        fig.add_trace(go.Scatter(x=rows["step"], y=rows["value"], mode="lines+markers", name=f"{run} {name}",
                                 showlegend=False), 2, 2)
    fig.update_xaxes(type="log", row=1)
    fig.write_html(path, include_plotlyjs=True)


def bokeh_html(data, path: Path) -> None:
    from bokeh.embed import file_html
    from bokeh.layouts import gridplot
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    source = ColumnDataSource(data.layers)
    hover = [("run", "@run"), ("layer", "@layer_name"), ("step", "@step")]
    align = figure(x_axis_type="log", title="alignment", width=330, height=240, tools=[HoverTool(tooltips=hover)])
    align.scatter("phi", "cos_align", source=source)
    coupled = figure(x_axis_type="log", title="coupled norm", width=330, height=240,
                     tools=[HoverTool(tooltips=hover)], x_range=align.x_range)
    coupled.scatter("phi", "coupled_norm", source=source)
    probs = figure(title="probabilities", width=330, height=200)
    for _, rows in data.probs[data.probs["decision"] == 0].groupby(["run", "width"]):
        probs.line(rows["step"], rows["prob"])
        probs.scatter(rows["step"], rows["prob"])
    scores = figure(title="scores", width=330, height=200)
    for _, rows in data.scores.groupby(["run", "name"]):
        scores.line(rows["step"], rows["value"])
        scores.scatter(rows["step"], rows["value"])
    path.write_text(file_html(gridplot([[align, coupled], [probs, scores]]), INLINE, "explorer"))


def altair_html(data, path: Path) -> None:
    Explorer(data).save_html(path)


def render_seconds(chromium: str, page: Path, shot: Path) -> float:
    start = time.perf_counter()
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1000,760", "--virtual-time-budget=20000", f"--screenshot={shot}", page.as_uri()],
                   check=True, capture_output=True, timeout=300)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path)
    parser.add_argument("--runs", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    runs = RunSet.from_paths([args.records]).select(kind="search")
    start = time.perf_counter()
    data = explorer_data(RunSet(runs.runs[: args.runs]))
    print(f"{len(data.runs)} runs read in {time.perf_counter() - start:.1f} s: {len(data.layers)} probe points, "
          f"{len(data.probs)} probabilities, {len(data.scores)} scores")
    print("| library | build + write HTML (s) | HTML (MiB) | headless Chromium load + render (s, median) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name, write in (("Altair (Vega-Lite)", altair_html), ("Plotly", plotly_html), ("Bokeh", bokeh_html)):
            page = Path(folder) / f"{name.split()[0].lower()}.html"
            start = time.perf_counter()
            write(data, page)
            built = time.perf_counter() - start
            shots = [render_seconds(chromium, page, page.with_suffix(f".{i}.png")) for i in range(args.repeat)] \
                if chromium else [float("nan")]
            print(f"| {name} | {built:.1f} | {page.stat().st_size / 2**20:.1f} | {statistics.median(shots):.1f} |")


if __name__ == "__main__":
    main()
