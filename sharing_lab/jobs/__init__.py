"""Many runs at once: the recipes each figure needs, sweep files of one's own, a job (one search and its
retraining) and the executors that run jobs here, on SLURM (submitit) or on Ray."""
