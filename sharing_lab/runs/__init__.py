"""Run directories and what they hold (DESIGN §5): names and ``config.json`` (:mod:`~sharing_lab.runs.rundir`),
the write lock, checkpoints, the Parquet records, sweeps of runs with their states, TensorBoard events."""
