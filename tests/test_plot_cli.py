"""`sharing-lab plot` refusals: one line, exit status 2, nothing written."""

import pytest

from sharing_lab.cli import main


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.mark.parametrize("figure", ["all", "fig5", "fig3"])
def test_plot_on_a_directory_without_runs_is_refused(tmp_path, capsys, figure):
    empty, out = tmp_path / "empty", tmp_path / "figs"
    empty.mkdir()
    code, _, err = run_cli(["plot", figure, str(empty), "--out", str(out)], capsys)
    assert code == 2
    assert err.strip().splitlines() == [err.strip()] and err.startswith("error: no runs")
    assert not out.exists()


def test_plot_unknown_figure_is_refused(tmp_path, capsys):
    out = tmp_path / "figs"
    code, _, err = run_cli(["plot", "fig99", str(tmp_path), "--out", str(out)], capsys)
    assert code == 2 and err.startswith("error:") and "fig99" in err and "Traceback" not in err
    assert not out.exists()


def test_plot_missing_path_is_refused(tmp_path, capsys):
    code, _, err = run_cli(["plot", "fig4", str(tmp_path / "nope")], capsys)
    assert code == 2 and "does not exist" in err
