"""The channel number search (paper Sections 2.1, 3.4 and 5.1; schedules in the notes).

Warm-up: one uniformly sampled architecture per step trains the meta-weights, P/Q fixed. Search: the
controller samples the architecture of each weight step and is updated by REINFORCE on a held-out batch
(reward acc·(F/F_target)^β above the target); a transitionary scheme also takes Eq. 5 steps on P/Q.
Every ``eval_every`` epochs, sampled architectures are scored on the validation split, the records are flushed
and a checkpoint is written. At the end, beam search ranks the top-N architectures and the chosen one is
exported. The test split is only ever used for reporting.

On a GPU the inner loop reads nothing back from the device except the controller's reward (one wait per search
step: REINFORCE needs it on the host): losses and accuracies are summed on the device and read at record
steps, and the controller runs on the CPU, where its 19 tiny LSTM steps are cheaper than GPU launches. Several
processes (torchrun) split every batch between them; see :mod:`sharing_lab.distributed`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .config import Config, check
from .controller import Controller, Reinforce, beam_search, reward
from .data import load_data
from .distributed import SINGLE, Group
from .errors import InputError
from .evaluate import batch_statistics, calibration_batches, evaluate_arch
from .export import arch_record, choose, write_export
from .fileio import atomic_write_json
from .flops import count_macs, macs_range
from .layout import build_layout
from .probes import ProbeContext, default_probes
from .records import NullWriter, RecordWriter
from .rundir import SUMMARY, load_checkpoint, save_checkpoint
from .runtime import resolve_device, resolve_runtime
from .sharing import get_scheme
from .supernet import Supernet


class TrainingDiverged(InputError):
    """The loss became NaN or infinite; the last good state was checkpointed."""


class Search:
    """One search run writing into ``run_dir``; :meth:`run` does the work, resuming if a checkpoint exists.

    ``group`` places this process in a multi-process search (its device is the group's); only rank 0 logs,
    records and checkpoints.
    """

    def __init__(self, config: Config, run_dir: Path, log: Callable[[str], None] = print, progress: bool = False,
                 probes=None, group: Group = SINGLE) -> None:
        self.group = group
        if not group.is_main:
            log, progress = (lambda message: None), False
        self.config, self.run_dir, self.log, self.progress = config, Path(run_dir), log, progress
        check(config)
        if group.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = group.device if group.active else resolve_device(config.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # a few hundred (width, stride) shapes, each tuned once
        data_cfg, model_cfg, search_cfg = config.data, config.model, config.search
        group.local_size(data_cfg.batch_size, "data.batch_size")  # refuses a batch the ranks cannot split evenly
        group.local_size(data_cfg.reward_batch_size, "data.reward_batch_size")
        self.data = load_data(data_cfg.name, data_cfg.dir, config.seed, data_cfg.image_size)
        self.runtime = resolve_runtime(self.device, config.runtime.precision, config.runtime.memory_format,
                                       self.data.image_size)
        self.layout = build_layout(
            model_cfg.name, model_cfg.granularity, model_cfg.widths if model_cfg.multipliers is None else None,
            model_cfg.multipliers, _meta(model_cfg.meta), num_classes=self.data.num_classes,
            in_channels=self.data.in_channels, image_size=self.data.image_size,
        )
        self.scheme = get_scheme(config.sharing.scheme)
        _validate(config, self.layout, self.scheme)
        self.target = search_cfg.flops_target
        self.supernet = self.runtime.model(Supernet(self.layout, self.scheme, config.seed, model_cfg.bn))
        self.model = group.wrap(self.supernet)  # what the weight step runs: DDP over the ranks, or the supernet
        self.controller = Controller(self.supernet.num_candidates, search_cfg.controller_hidden, config.seed)
        self.reinforce = Reinforce(self.controller, search_cfg.controller_lr, search_cfg.entropy_weight,
                                   search_cfg.baseline_decay)
        self.optimizer = torch.optim.SGD(self.supernet.parameters(), lr=search_cfg.lr, momentum=search_cfg.momentum,
                                         weight_decay=search_cfg.weight_decay, nesterov=search_cfg.nesterov)
        self.steps_per_epoch = self.data.num_batches("train", data_cfg.batch_size)
        if self.steps_per_epoch == 0:
            raise InputError(f"batch size {data_cfg.batch_size} is larger than the training split")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        seed = config.seed
        self.generators = {name: torch.Generator().manual_seed(seed * 1000 + offset)
                           for offset, name in enumerate(("data", "sample", "reward", "eval", "record"))}
        self.writer = (RecordWriter if group.is_main else NullWriter)(self.run_dir, self.run_dir.name)
        self.epoch, self.step = 0, 0
        self.calibration = calibration_batches(self.data, data_cfg.calibration_images, data_cfg.eval_batch_size,
                                               self.device, self.runtime) if group.is_main else []
        self.probes = default_probes(config.probes, config.seed) if probes is None else probes

    # --- schedule ---------------------------------------------------------------------------------------
    def _lr_factor(self, step: int) -> float:
        cfg = self.config.search
        if cfg.lr_schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(step / (cfg.epochs * self.steps_per_epoch), 1.0)))
        epoch = step // self.steps_per_epoch
        return 0.1 ** sum(epoch >= m for m in cfg.lr_milestones)

    def in_search_phase(self) -> bool:
        return self.epoch >= self.config.search.warmup_epochs

    @lru_cache(maxsize=65536)  # noqa: B019 - one Search per process, bounded cache
    def _min_completion_macs(self, prefix: tuple[int, ...]) -> int:
        arch = prefix + (0,) * (self.layout.num_decisions - len(prefix))
        return count_macs(self.layout, self.layout.widths_of(arch))

    def flops_left(self, prefix) -> float:
        """Controller input: (F_target − F_min(prefix)) / F_target, 0 without a target."""
        if self.target is None:
            return 0.0
        return (self.target - self._min_completion_macs(tuple(prefix))) / self.target

    def macs(self, arch) -> int:
        return count_macs(self.layout, self.layout.widths_of(arch))

    # --- training ---------------------------------------------------------------------------------------
    def _train_epoch(self) -> dict[str, float]:
        cfg, search_phase, group = self.config, self.in_search_phase(), self.group
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss × images, correct: read at the end
        totals = {"seen": 0, "macs": 0.0, "reward": 0.0, "entropy": 0.0, "steps": 0}
        check_every_step = self.device.type == "cpu" and not group.active  # free there; a GPU would have to wait
        batches = self.data.batches("train", cfg.data.batch_size, generator=self.generators["data"],
                                    device=self.device, shard=(group.rank, group.world_size))
        self.model.train()  # evaluation switches to eval mode between epochs only
        for x, y in batches:
            arch, reward_arch, sample = self._decide(search_phase)
            with self.runtime.autocast():
                logits = self.model(self.runtime.input(x), arch)
                loss = F.cross_entropy(logits, y)
            if check_every_step and not torch.isfinite(loss):
                self._diverged(f"loss is {float(loss.detach())} at epoch {self.epoch}, step {self.step}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            sums[0] += loss.detach() * y.numel()
            sums[1] += (logits.argmax(1) == y).sum()
            totals["seen"] += y.numel()
            totals["macs"] += self.macs(arch)
            totals["steps"] += 1
            if search_phase:
                value, entropy = self._controller_step(reward_arch, sample)
                totals["reward"] += value
                totals["entropy"] += entropy
                if self.scheme.transition and self.step % cfg.sharing.transition_every == 0:
                    self.supernet.transition(cfg.sharing.tau)
            self.step += 1
            if group.is_main:
                for probe in self.probes:
                    if probe.due(self.step, self.steps_per_epoch):
                        probe.run(self._probe_context())
        sums = group.sum(sums).cpu()
        totals["seen"] *= group.world_size
        totals["loss"], totals["correct"] = float(sums[0]), int(sums[1])
        if not math.isfinite(totals["loss"]):
            self._diverged(f"the training loss is {totals['loss']} in epoch {self.epoch}")
        return totals

    def _decide(self, search_phase: bool):
        """This step's architecture, and in the search phase the controller's sample for the reward (rank 0
        decides both and broadcasts them). Both are drawn before the weight step; the controller does not
        change in between, so the draws are those of sampling the second one after the step."""
        count, sample, decided = self.layout.num_decisions, None, None
        if self.group.is_main:
            if search_phase:
                with torch.no_grad():
                    decided = self.controller.sample(self.flops_left, self.generators["sample"], arch_only=True).arch
                sample = self.controller.sample(self.flops_left, self.generators["sample"])
                decided = decided + sample.arch
            else:
                decided = self.supernet.sample_uniform(self.generators["sample"])
        decided = self.group.broadcast_ints(decided, 2 * count if search_phase else count)
        return decided[:count], decided[count:], sample

    def _controller_step(self, arch, sample) -> tuple[float, float]:
        """Reward of ``arch`` on a held-out batch (split over the ranks) and, on rank 0, the REINFORCE update."""
        size = self.config.data.reward_batch_size
        indices = torch.randint(self.data.val.labels.numel(), (size,), generator=self.generators["reward"])
        x, y = self.data.batch("val", self.group.shard(indices), device=self.device)
        with torch.no_grad(), batch_statistics(self.supernet), self.runtime.autocast():
            correct = (self.supernet(self.runtime.input(x), arch).argmax(1) == y).sum()
        acc = float(self.group.sum(correct)) / size  # the step's one wait for the device
        if not self.group.is_main:
            return 0.0, 0.0
        value = reward(acc, self.macs(arch), self.target, self.config.search.reward_beta)
        self.reinforce.update(sample, value)
        return value, float(sample.entropy.detach())

    def _diverged(self, message: str) -> None:
        """Stop on a non-finite loss. The rows of the unfinished epoch are dropped and the last checkpoint (an
        epoch boundary, or the initial state) is kept as the last good state: the weights are already broken."""
        state = load_checkpoint(self.run_dir, self.log)
        epoch = state["epoch"] if state is not None else 0
        raise TrainingDiverged(f"training diverged: {message}; the last good state (epoch {epoch}) is the checkpoint "
                               f"in {self.run_dir} (lower search.lr before resuming)")

    def _probe_context(self) -> ProbeContext:
        return ProbeContext(self, self.step, self.epoch)

    # --- records ----------------------------------------------------------------------------------------
    def _record_epoch(self, totals: dict) -> None:
        if not self.group.is_main:
            return
        steps = max(totals["steps"], 1)
        values = {
            "train_loss": totals["loss"] / max(totals["seen"], 1),
            "train_acc": totals["correct"] / max(totals["seen"], 1),
            "macs_sampled": totals["macs"] / steps,
            "lr": self.optimizer.param_groups[0]["lr"],
            "phi": float(sum(self.supernet.phi_per_layer())),
        }
        if self.in_search_phase():
            values.update(reward=totals["reward"] / steps, baseline=self.reinforce.baseline,
                          entropy=totals["entropy"] / steps)
        self.add_scalars(values)
        rows = self.probability_rows()
        self.writer.add("probs", rows)
        expected = {}
        for row in rows:
            key = f"expected_width.{row['layer']}"
            expected[key] = expected.get(key, 0.0) + row["width"] * row["prob"]
        self.add_scalars(expected)

    def add_scalars(self, values: dict[str, float]) -> None:
        self.writer.add("scalars", [{"step": self.step, "epoch": self.epoch, "name": k, "value": float(v)}
                                    for k, v in values.items()])

    @torch.no_grad()
    def probability_rows(self) -> list[dict]:
        """Per decision × candidate probability: the mean softmax over ``prob_samples`` trajectories."""
        samples = [self.controller.sample(self.flops_left, self.generators["record"])
                   for _ in range(self.config.search.prob_samples)]
        rows = []
        for layer, decision in enumerate(self.layout.decisions):
            mean = torch.stack([s.probs[layer] for s in samples]).mean(0).cpu()
            for choice, width in enumerate(decision.candidates):
                rows.append({"step": self.step, "epoch": self.epoch, "layer": layer, "choice": choice,
                             "width": width, "prob": float(mean[choice])})
        return rows

    # --- evaluation -------------------------------------------------------------------------------------
    def score(self, arch, split: str = "val") -> float:
        cfg = self.config.data
        return evaluate_arch(self.supernet, arch, self.calibration, self.data, split, cfg.eval_batch_size,
                             self.device, cfg.eval_images, self.runtime)

    def _evaluate(self) -> None:
        """Score sampled architectures and the widest on the validation split (rank 0; the others wait)."""
        self.group.sync_buffers(self.supernet)
        if self.group.is_main:
            self._score_samples()
        self.group.barrier()

    def _score_samples(self) -> None:
        cfg = self.config.search
        rows, accs = [], []
        for _ in range(cfg.eval_archs):
            if self.in_search_phase():
                arch = self.controller.sample(self.flops_left, self.generators["eval"], arch_only=True).arch
            else:
                arch = self.supernet.sample_uniform(self.generators["eval"])
            acc = self.score(arch)
            accs.append(acc)
            rows.append(arch_record(self, arch, "sample", acc))
        widest = self.score(self.supernet.largest())
        self.writer.add("archs", rows)
        self.add_scalars({"val_acc_mean": sum(accs) / len(accs), "val_acc_max": max(accs),
                          "val_acc_widest": widest})
        phase = "search" if self.in_search_phase() else "warm-up"
        self.log(f"epoch {self.epoch + 1}/{cfg.epochs} ({phase}): val acc mean {sum(accs) / len(accs):.3f} "
                 f"max {max(accs):.3f} widest {widest:.3f}, phi {sum(self.supernet.phi_per_layer()):.4g}")

    # --- checkpoints ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch, "step": self.step, "next_part": self.writer.next_part,
            "supernet": self.supernet.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "controller": self.controller.state_dict(),
            "reinforce": self.reinforce.state_dict(),
            "generators": {name: g.get_state() for name, g in self.generators.items()},
            "torch_rng": torch.get_rng_state(),
            "probes": [probe.state_dict() for probe in self.probes],
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.step = state["epoch"], state["step"]
        self.supernet.load_state_dict(state["supernet"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.controller.load_state_dict(state["controller"])
        self.reinforce.load_state_dict(state["reinforce"])
        for name, generator_state in state["generators"].items():
            self.generators[name].set_state(generator_state)
        torch.set_rng_state(state["torch_rng"])
        for probe, probe_state in zip(self.probes, state.get("probes", [])):
            probe.load_state_dict(probe_state)
        self.writer.next_part = state["next_part"]

    def checkpoint(self) -> None:
        self.writer.flush()
        if self.group.is_main:
            save_checkpoint(self.run_dir, self.state_dict())

    # --- the whole run ----------------------------------------------------------------------------------
    def run(self, stop_requested: Callable[[], bool] = lambda: False) -> dict:
        """Run (or resume) the search to the end, then beam search and export; returns the summary."""
        state = load_checkpoint(self.run_dir, self.log)
        if state is not None:
            self.load_state_dict(state)
            self.log(f"resuming {self.run_dir} at epoch {self.epoch + 1}")
        self.writer.truncate()
        if state is None and self.group.is_main:
            save_checkpoint(self.run_dir, self.state_dict())  # the initial state: always a last good state
        self.group.barrier()
        cfg = self.config.search
        epochs = tqdm(range(self.epoch, cfg.epochs), initial=self.epoch, total=cfg.epochs, desc="search",
                      unit="epoch", disable=not self.progress)
        for _ in epochs:
            totals = self._train_epoch()
            self._record_epoch(totals)
            if self.group.is_main:
                for probe in self.probes:
                    probe.end_of_epoch(self._probe_context())
            last = self.epoch + 1 == cfg.epochs
            evaluate = (self.epoch + 1) % cfg.eval_every == 0 or last
            if evaluate:
                self._evaluate()
            self.epoch += 1
            if evaluate:
                self.checkpoint()
            if self.group.any(stop_requested()) and not last:
                self.checkpoint()
                raise KeyboardInterrupt
        return self.finish()

    def finish(self) -> dict:
        """Beam search for the top-N, score them, export the chosen one, write ``summary.json`` (rank 0; every
        rank returns the summary)."""
        summary = self._finish() if self.group.is_main else None
        return self.group.broadcast_object(summary)

    def _finish(self) -> dict:
        cfg = self.config.search
        top = beam_search(self.controller, cfg.beam_top, self.flops_left)
        rows = [arch_record(self, arch, "beam", self.score(arch), log_prob=log_prob, rank=rank,
                            test_acc=self.score(arch, "test")) for rank, (arch, log_prob) in enumerate(top)]
        self.writer.add("archs", rows)
        self.writer.flush()
        chosen = choose(rows, self.target)
        data_cfg = self.config.data
        export_path = write_export(self.run_dir, self.layout, chosen,
                                   {"name": data_cfg.name, "dir": data_cfg.dir, "image_size": data_cfg.image_size})
        summary = {
            "run": self.run_dir.name, "epochs": cfg.epochs, "steps": self.step,
            "exported": {k: chosen[k] for k in ("widths", "macs", "acc", "test_acc", "log_prob")},
            "macs_range": list(macs_range(self.layout)), "flops_target": self.target,
            "final_phi": float(sum(self.supernet.phi_per_layer())), "export_path": str(export_path),
            "processes": self.group.world_size, **self.runtime.describe(),
        }
        atomic_write_json(self.run_dir / SUMMARY, summary)
        return summary


def _meta(value: str | int) -> str | int:
    return int(value) if isinstance(value, int) or value.isdigit() else value


def _validate(config: Config, layout, scheme) -> None:
    cfg = config.search
    for decision in layout.decisions:
        needed = scheme.required_meta_width(decision.candidates)
        if decision.meta_width < needed:
            raise InputError(f"scheme {scheme.name} needs meta width >= {needed} for {decision.name} "
                             f"(candidates {list(decision.candidates)}), got {decision.meta_width}")
    if cfg.flops_target is not None:
        smallest, largest = macs_range(layout)
        if cfg.flops_target < smallest:
            raise InputError(f"FLOPs target {cfg.flops_target:.4g} MACs is below the smallest architecture "
                             f"({smallest:,} MACs)")
