"""The Parquet records (DESIGN §5): whole part files written atomically, union read, truncation, schemas."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sharing_lab
from sharing_lab.errors import InputError
from sharing_lab.runs import records
from sharing_lab.runs.records import SCHEMAS, RecordWriter
from sharing_lab.runs.sweeps import read_table


def _scalars(step: int, n: int = 2) -> list[dict]:
    return [{"step": step, "epoch": step // 10, "name": f"m{i}", "value": float(step + i)} for i in range(n)]


def _files(directory) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


def test_read_table_is_exported_at_package_level():
    assert sharing_lab.read_table is read_table


def test_flush_writes_one_whole_part_per_table_and_no_temporaries(tmp_path):
    writer = RecordWriter(tmp_path, "myrun")
    writer.add("scalars", _scalars(1))
    writer.add("probs", [{"step": 1, "epoch": 0, "layer": 0, "choice": 0, "width": 2, "prob": 1.0}])
    assert _files(tmp_path) == []  # nothing on disk before a flush
    assert writer.flush() == 1
    assert _files(tmp_path) == ["probs/part-000000.parquet", "scalars/part-000000.parquet"]
    # each part is a complete Parquet file on its own
    table = pq.read_table(tmp_path / "scalars" / "part-000000.parquet")
    assert table.num_rows == 2
    assert table.column("run").to_pylist() == ["myrun", "myrun"]


def test_flush_skips_empty_tables_but_advances_the_part_number(tmp_path):
    writer = RecordWriter(tmp_path, "r")
    writer.add("scalars", [])
    assert writer.flush() == 1
    assert not (tmp_path / "scalars").exists() or _files(tmp_path / "scalars") == []
    writer.add("scalars", _scalars(5))
    writer.flush()
    assert _files(tmp_path) == ["scalars/part-000001.parquet"]


def test_a_failed_write_leaves_no_part_and_no_temporary(tmp_path, monkeypatch):
    writer = RecordWriter(tmp_path, "r")
    writer.add("scalars", _scalars(0))
    writer.flush()
    before = _files(tmp_path)

    def half_write(table, where, **kwargs):
        with open(where, "wb") as handle:
            handle.write(b"PAR1 truncated")
        raise OSError("disk full")

    monkeypatch.setattr(records.pq, "write_table", half_write)
    writer.add("scalars", _scalars(1))
    with pytest.raises(OSError, match="disk full"):
        writer.flush()
    assert _files(tmp_path) == before  # neither a partial part nor a hidden .tmp file
    assert not list(tmp_path.rglob("*.tmp"))
    monkeypatch.undo()
    assert read_table(tmp_path, "scalars")["step"].tolist() == [0, 0]


def test_union_read_in_part_order(tmp_path):
    writer = RecordWriter(tmp_path, "r")
    for step in range(12):  # more than 10 parts: numeric, not lexicographic-by-accident, order
        writer.add("scalars", _scalars(step))
        writer.flush()
    frame = read_table(tmp_path, "scalars")
    assert frame["step"].tolist() == [s for s in range(12) for _ in range(2)]
    assert frame.index.tolist() == list(range(24))  # one fresh index
    assert set(frame["run"]) == {"r"}


def test_parts_are_numbered_from_next_part(tmp_path):
    writer = RecordWriter(tmp_path, "r", next_part=41)
    writer.add("archs", [{"epoch": 0, "source": "sample", "widths": "2,4", "macs": 10, "log_prob": -1.0,
                          "acc": 0.5}])
    assert writer.flush() == 42
    assert _files(tmp_path) == ["archs/part-000041.parquet"]


def test_truncate_drops_parts_at_or_after_next_part_in_every_table(tmp_path):
    writer = RecordWriter(tmp_path, "r")
    for step in range(4):
        writer.add("scalars", _scalars(step))
        writer.add("custom", [{"step": step}])
        writer.flush()
    (tmp_path / "config.json").write_text("{}")  # other files of a run are left alone
    resumed = RecordWriter(tmp_path, "r", next_part=2)
    resumed.truncate()
    assert _files(tmp_path) == [
        "config.json", "custom/part-000000.parquet", "custom/part-000001.parquet",
        "scalars/part-000000.parquet", "scalars/part-000001.parquet",
    ]
    resumed.add("scalars", _scalars(99))
    resumed.flush()
    assert read_table(tmp_path, "scalars")["step"].tolist() == [0, 0, 1, 1, 99, 99]


def test_truncate_with_next_part_zero_drops_everything(tmp_path):
    writer = RecordWriter(tmp_path, "r")
    writer.add("scalars", _scalars(0))
    writer.flush()
    RecordWriter(tmp_path, "r").truncate()
    assert read_table(tmp_path, "scalars").empty


def test_extra_columns_are_kept(tmp_path):
    writer = RecordWriter(tmp_path, "r")
    writer.add("scalars", [{"step": 1, "epoch": 0, "name": "x", "value": 1.0, "tag": "2,4", "note": 3}])
    writer.add("archs", [{"epoch": 0, "source": "beam", "widths": "2,4", "macs": 7, "log_prob": -0.5, "acc": 0.9,
                          "rank": 0, "test_acc": 0.8}])
    writer.flush()
    scalars = read_table(tmp_path, "scalars")
    assert scalars.loc[0, "tag"] == "2,4" and scalars.loc[0, "note"] == 3
    archs = read_table(tmp_path, "archs")
    assert archs.loc[0, "rank"] == 0 and archs.loc[0, "test_acc"] == pytest.approx(0.8)


def test_required_dtypes_are_enforced(tmp_path):
    writer = RecordWriter(tmp_path, "r")
    # ints where floats are required, floats holding integers where ints are required, NaN/None for floats
    writer.add("scalars", [{"step": 3.0, "epoch": 0.0, "name": "loss", "value": 2}])
    writer.add("archs", [{"epoch": 1, "source": "sample", "widths": "2,4", "macs": 12.0, "log_prob": None,
                          "acc": 1}])
    writer.add("probs", [{"step": 1, "epoch": 0, "layer": 0, "choice": 1, "width": 4, "prob": 1}])
    writer.add("layers", [{"step": 1, "epoch": 0, "layer": 2, "phi": 1, "cos_align": float("nan"),
                           "coupled_norm": 0}])
    writer.add("pairs", [{"step": 1, "epoch": 0, "layer": -1, "a": 0, "b": 1, "phi_pair": 4, "cos": 1}])
    writer.add("retrain", [{"epoch": 2.0, "widths": "2,4", "macs": 12.0, "params": 5, "log_prob": None, "rank": 0,
                            "val_acc": 1, "test_acc": float("nan"), "seed": 3.0}])
    writer.add("retrain_curves", [{"step": 4.0, "epoch": 0, "widths": "2,4", "name": "val_acc", "value": 1}])
    writer.add("space", [{"step": 4.0, "epoch": 0, "widths": "2,4", "supernet_acc": 1, "prob": 0}])
    writer.flush()
    assert set(SCHEMAS) == {"scalars", "layers", "probs", "archs", "pairs", "retrain", "retrain_curves", "space"}
    for table, schema in SCHEMAS.items():
        part = pq.read_table(tmp_path / table / "part-000000.parquet")
        assert part.schema.field("run").type == pa.string()
        for column, dtype in schema.items():
            assert part.schema.field(column).type == dtype, (table, column)
        frame = read_table(tmp_path, table)
        for column, dtype in schema.items():
            if dtype == pa.int64():
                assert frame[column].dtype == "int64", (table, column)
            elif dtype == pa.float64():
                assert frame[column].dtype == "float64", (table, column)
            else:
                assert pd.api.types.is_string_dtype(frame[column]), (table, column)
    archs = read_table(tmp_path, "archs")
    assert pd.isna(archs.loc[0, "log_prob"]) and archs.loc[0, "macs"] == 12


def test_schemas_cover_the_design_tables():
    required = {
        "scalars": {"step": pa.int64(), "epoch": pa.int64(), "name": pa.string(), "value": pa.float64()},
        "layers": {"step": pa.int64(), "epoch": pa.int64(), "layer": pa.int64(), "phi": pa.float64(),
                   "cos_align": pa.float64(), "coupled_norm": pa.float64()},
        "probs": {"step": pa.int64(), "epoch": pa.int64(), "layer": pa.int64(), "choice": pa.int64(),
                  "width": pa.int64(), "prob": pa.float64()},
        "archs": {"epoch": pa.int64(), "source": pa.string(), "widths": pa.string(), "macs": pa.int64(),
                  "log_prob": pa.float64(), "acc": pa.float64()},
        "retrain": {"epoch": pa.int64(), "widths": pa.string(), "macs": pa.int64(), "params": pa.int64(),
                    "log_prob": pa.float64(), "rank": pa.int64(), "val_acc": pa.float64(),
                    "test_acc": pa.float64(), "seed": pa.int64()},
        "retrain_curves": {"step": pa.int64(), "epoch": pa.int64(), "widths": pa.string(), "name": pa.string(),
                           "value": pa.float64()},
    }
    for table, columns in required.items():
        for column, dtype in columns.items():
            assert SCHEMAS[table][column] == dtype, (table, column)
    assert list(SCHEMAS["retrain"]) == list(required["retrain"])  # exactly these, in this order
    assert list(SCHEMAS["retrain_curves"]) == list(required["retrain_curves"])
    assert "arch" not in records.OPTIONAL.get("scalars", {})  # retraining curves have a table of their own


def test_a_value_that_does_not_fit_the_required_dtype_is_rejected(tmp_path):
    writer = RecordWriter(tmp_path, "r")
    writer.add("scalars", [{"step": 1.5, "epoch": 0, "name": "x", "value": 1.0}])
    with pytest.raises((pa.ArrowInvalid, ValueError)):
        writer.flush()
    assert not (tmp_path / "scalars").exists() or _files(tmp_path / "scalars") == []


def test_read_table_of_a_missing_table_is_empty_with_the_required_columns(tmp_path):
    frame = read_table(tmp_path, "archs")
    assert frame.empty
    assert list(frame.columns) == ["run", *SCHEMAS["archs"]]
    assert read_table(tmp_path / "absent-run", "scalars").empty


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_corrupt_part_gives_input_error(tmp_path, damage):
    writer = RecordWriter(tmp_path, "r")
    for step in range(2):
        writer.add("scalars", _scalars(step))
        writer.flush()
    part = tmp_path / "scalars" / "part-000001.parquet"
    data = part.read_bytes()
    part.write_bytes({"garbage": b"this is not parquet at all", "truncated": data[: len(data) // 2],
                      "empty": b""}[damage])
    with pytest.raises(InputError, match="part-000001"):
        read_table(tmp_path, "scalars")


def test_tables_read_directly_with_pyarrow_and_pandas(tmp_path):
    """Users open the records without sharing_lab: a table directory is a Parquet dataset."""
    writer = RecordWriter(tmp_path, "r")
    for step in range(3):
        writer.add("scalars", _scalars(step))
        writer.flush()
    direct = pd.read_parquet(tmp_path / "scalars")
    assert sorted(direct["step"].tolist()) == [0, 0, 1, 1, 2, 2]
    assert pq.read_table(tmp_path / "scalars").num_rows == 6


def test_a_leftover_temporary_from_a_killed_write_is_ignored(tmp_path):
    writer = RecordWriter(tmp_path, "r")
    writer.add("scalars", _scalars(0))
    writer.flush()
    (tmp_path / "scalars" / ".part-000001.parquet.k1ll3d.tmp").write_bytes(b"PAR1 half a footer")
    assert read_table(tmp_path, "scalars")["step"].tolist() == [0, 0]
    assert pd.read_parquet(tmp_path / "scalars")["step"].tolist() == [0, 0]


def _tiny_retrain(tmp_path, name: str, seed: int) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Retrain a 3-decision ResNet-20 at widths (4, 2, 4) for two epochs on 32 random 8×8 images."""
    import torch

    from sharing_lab.analysis.retrain import retrain
    from sharing_lab.config import Config, apply_overrides
    from sharing_lab.data import DataBundle, Split
    from sharing_lab.space.layout import build_layout

    g = torch.Generator().manual_seed(0)

    def split(n: int) -> Split:
        return Split(torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % 3)

    data = DataBundle("tiny", 3, split(32), split(16), split(16))
    layout = build_layout("resnet20", "stage", widths=(2, 4), num_classes=3, in_channels=1, image_size=8)
    config = apply_overrides(Config(), ["retrain.epochs=2", "retrain.batch_size=8", f"seed={seed}"])
    run_dir = tmp_path / name
    row = retrain(layout, [4, 2, 4], config, data, torch.device("cpu"), RecordWriter(run_dir, name),
                  log=lambda _: None, log_prob=-1.5, rank=2)
    return row, read_table(run_dir, "retrain"), read_table(run_dir, "retrain_curves")


def test_retrain_writes_its_own_tables_and_leaves_the_global_rng_alone(tmp_path):
    import torch

    torch.manual_seed(1234)
    before = torch.get_rng_state()
    row, table, curves = _tiny_retrain(tmp_path, "a", seed=3)
    assert torch.equal(torch.get_rng_state(), before)  # fork_rng: the caller's generator is untouched
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["retrain", "retrain_curves"]  # no archs/scalars
    assert list(row) == list(SCHEMAS["retrain"])  # the returned dict is the row, same keys
    assert len(table) == 1 and table.loc[0, "run"] == "a"
    stored = table.iloc[0]
    assert (stored["epoch"], stored["widths"], stored["rank"], stored["seed"]) == (2, "4,2,4", 2, 3)
    assert stored["log_prob"] == -1.5 and stored["macs"] == row["macs"] > 0 and stored["params"] == row["params"]
    assert 0 <= stored["val_acc"] <= 1 and 0 <= stored["test_acc"] <= 1
    assert curves["epoch"].tolist() == [0, 0, 1, 1] and curves["step"].tolist() == [4, 4, 8, 8]
    assert curves["name"].tolist() == ["train_loss", "val_acc"] * 2 and set(curves["widths"]) == {"4,2,4"}
    assert curves.loc[3, "value"] == pytest.approx(row["val_acc"])
    for name in ("retrain", "retrain_curves"):
        schema = pq.read_schema(next((tmp_path / "a" / name).glob("part-*.parquet")))
        for column, dtype in SCHEMAS[name].items():
            assert schema.field(column).type == dtype, (name, column)
    again, _, again_curves = _tiny_retrain(tmp_path, "b", seed=3)  # deterministic per seed
    assert again == pytest.approx(row)
    assert again_curves["value"].tolist() == pytest.approx(curves["value"].tolist())
    _, _, other_curves = _tiny_retrain(tmp_path, "c", seed=4)  # another seed: another initialisation
    assert other_curves.loc[0, "value"] != pytest.approx(curves.loc[0, "value"])
