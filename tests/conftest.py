"""Shared pytest setup: two torch threads (torch 2.13 CPU was seen to crash with one on these nets)."""

import torch

torch.set_num_threads(2)
