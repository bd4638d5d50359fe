"""What is made from finished runs and trained networks: retraining from scratch, building a ground-truth table,
the paper's claims and their per-run measures, and the benchmarks with their operator counts."""
