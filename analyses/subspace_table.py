"""Start the table of a sub-space from a larger space's table built with the same recipe, or restate a table's
metadata after its space's seeds changed.

    python analyses/subspace_table.py fashion-mnist-resnet20-x1248 fashion-mnist-resnet20-x124

Copies the rows of SOURCE whose architecture lies in TARGET's space and whose seed TARGET declares into TARGET's
table (which must not exist yet), with TARGET's metadata, so that ``sharing-lab groundtruth build TARGET`` resumes
from them. This is sound because a table's networks are trained each from its own seeded initialisation on its
seed's batches (:func:`sharing_lab.analysis.retrain.train_population`): a row does not depend on which population
it was trained in, and ``groundtruth build TARGET`` alone gives the same rows up to float rounding. Both spaces must
share the data, model and training recipe. With TARGET equal to SOURCE, rewrites the table's metadata for the
space as now registered (rows of seeds it no longer declares are dropped).
"""

from __future__ import annotations

import sys

from sharing_lab.analysis.truth_build import data_shape
from sharing_lab.errors import InputError
from sharing_lab.space import build_space
from sharing_lab.truth.table import (
    metadata,
    read_table_file,
    recipe,
    recipe_of,
    resolve_space,
    table_path,
    write_table_file,
)


def derive(source_name: str, target_name: str) -> int:
    source, target = resolve_space(source_name), resolve_space(target_name)
    frame, meta = read_table_file(table_path(source.name), source)
    if recipe_of(meta) != recipe(target):
        raise InputError(f"{source.name}'s table was built with another recipe than {target.name}'s")
    shared = ("data.name", "data.image_size", "data.train_images", "model.name", "model.granularity")
    if any(source.key().get(field) != target.key().get(field) for field in shared):
        raise InputError(f"{source.name} and {target.name} differ in data or model")
    out = table_path(target.name)
    if target.name != source.name and out.exists():
        raise InputError(f"{out} exists: build it with sharing-lab groundtruth build {target.name}")
    config = target.config()
    space = build_space(config, *data_shape(config))
    archs = {",".join(map(str, space.widths_of(arch))) for arch in space.enumerate()}
    rows = frame[frame["widths"].isin(archs) & frame["seed"].isin(target.seeds)]
    write_table_file(out, rows.to_dict("records"), metadata(target, 0.0 if target is not source else meta["wall_s"]))
    print(f"{out}: {len(rows)} rows ({rows['seed'].nunique()} seeds x {rows['widths'].nunique()} architectures) "
          f"from {source.name}")
    return len(rows)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python analyses/subspace_table.py SOURCE TARGET")
    try:
        derive(sys.argv[1], sys.argv[2])
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
