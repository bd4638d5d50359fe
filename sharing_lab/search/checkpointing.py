"""A search and its checkpoints: writing one at each evaluation, and resuming a stopped run from its newest.

A checkpoint is written only for a state without NaN or inf (else the search diverged and the previous checkpoint
stays the last good one), after the records are flushed; it carries the configuration (plain values), so a
checkpoint that no longer fits ``config.json`` can say where. Resuming loads the newest readable checkpoint,
drops the record parts written after it, and applies the rates a diverged run's resume may change
(:data:`sharing_lab.config.RESUME_CHANGEABLE`), recording the change in ``config.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..config import RESUME_CHANGEABLE, RESUME_FREE, Config, differences, flat, to_dict
from ..errors import InputError
from ..runs import rundir
from ..runs.checkpoints import non_finite, read_checkpoint, save_checkpoint
from ..runs.records import has_records, part_files, part_number
from .lr_schedule import lr_factor
from .session import Search
from .state import SearchState


def restore(target: SearchState, run_dir: Path, config: Config, log: Callable[[str], None] = print) -> dict | None:
    """Load the newest readable checkpoint into ``target`` and return it; None when the run has none. A checkpoint
    that does not fit the run's configuration (``config.json`` edited by hand, e.g. model.widths) is refused in
    one line naming the keys that differ."""
    found = restore_file(target, run_dir, config, log)
    return None if found is None else found[0]


def restore_file(target: SearchState, run_dir: Path, config: Config, log: Callable[[str], None] = print
                 ) -> tuple[dict, Path] | None:
    """:func:`restore`, with the path of the checkpoint file it loaded."""
    found = read_checkpoint(run_dir, log)
    if found is None:
        return None
    state, path = found
    try:
        target.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
        saved = state.get("config")
        changed = differences(saved, to_dict(config)) if isinstance(saved, dict) else []
        detail = (f"config.json differs from the checkpoint's configuration in {', '.join(changed)}" if changed
                  else (str(error).strip().splitlines() or [type(error).__name__])[-1].strip()[:160])
        raise InputError(f"checkpoint {path} does not fit {Path(run_dir) / rundir.CONFIG} ({detail}); was "
                         "config.json edited by hand?") from None
    return state, path


def checkpoint(search: Search) -> None:
    """Verify the state (every rank), flush the records and write the checkpoint (rank 0) that resuming restarts
    from."""
    bad = non_finite(search.state.state_dict())
    if search.group.any(bool(bad)):
        search.guard.diverged(f"non-finite values in {', '.join(bad[:3]) or 'another rank'} at the end of epoch "
                              f"{search.state.epoch - 1}")
    search.writer.flush()
    search.state.next_part = search.writer.next_part
    if search.group.is_main:
        save_checkpoint(search.run_dir, {**search.state.state_dict(), "config": to_dict(search.config)})


def resume(search: Search) -> bool:
    """Load the run's checkpoint if it has one and drop the records written after it; True if resumed.

    Never deletes what it cannot replace: a run with record parts but no checkpoint, or whose checkpoints are all
    unreadable, is refused (nothing touched). The rates of ``config.RESUME_CHANGEABLE`` come from the
    configuration (a diverged run's resume may change them); a change is recorded in ``config.json``."""
    state, cfg = search.state, search.config
    found = restore_file(state, search.run_dir, cfg, search.log)
    saved, loaded = found if found is not None else (None, None)
    if saved is None and has_records(search.run_dir):
        raise InputError(f"run {search.run_dir} has records but no checkpoint to resume them from; nothing was "
                         "changed (start a new run instead)")
    if saved is not None:
        search.writer.next_part = state.next_part
        if search.group.is_main:
            check_stale_parts(search.run_dir, state.next_part, loaded)
        _take_rates(state, cfg)
        previous, payload = rundir.read_config(search.run_dir) if (search.run_dir / rundir.CONFIG).is_file() \
            else (cfg, {})
        changed = differences(previous, cfg)  # logging.* (RESUME_FREE) may change on any resume
        edited = _edited_by_hand(saved.get("config"), cfg, payload)
        if edited and (not set(edited) <= set(RESUME_CHANGEABLE) or rundir.diverged_info(search.run_dir) is None):
            raise InputError(f"{search.run_dir / rundir.CONFIG} differs from the configuration of the checkpoint "
                             f"being resumed in {', '.join(edited)} (edited by hand?); only a diverged run may "
                             f"change {', '.join(RESUME_CHANGEABLE)} on resume, with --set: restore the file")
        changed += [key for key in edited if key not in changed]
        training = [key for key in changed if key.partition(".")[0] not in RESUME_FREE]
        if changed and set(training) <= set(RESUME_CHANGEABLE) and search.group.is_main:
            then = flat(saved["config"]) if edited else {}
            old, new = {**flat(previous), **{k: then[k] for k in edited}}, flat(cfg)
            rundir.record_resume(search.run_dir, cfg, {k: (old[k], new[k]) for k in changed}, state.epoch)
        search.log(f"resuming {search.run_dir} at epoch {state.epoch + 1}")
    search.writer.truncate()
    if saved is None and search.group.is_main:
        # the initial state: a last good state
        save_checkpoint(search.run_dir, {**state.state_dict(), "config": to_dict(cfg)})
    search.group.barrier()
    return saved is not None


def _edited_by_hand(saved: object, config: Config, payload: dict) -> list[str]:
    """Training keys whose value in ``config.json`` differs from the configuration the checkpoint was written
    with (keys both have; none for a config.json of an older format, whose values were translated)."""
    if not isinstance(saved, dict) or payload.get("format", 1) < rundir.CONFIG_FORMAT:
        return []
    now, then = flat(config), flat(saved)
    return [key for key in differences(saved, config) if key.partition(".")[0] not in RESUME_FREE
            and key in now and key in then]


def check_stale_parts(run_dir: Path, next_part: int, checkpoint_file: Path | None) -> None:
    """Refuse a resume that would delete record parts its checkpoint does not prove newer than itself: parts
    numbered ``next_part`` or later are dropped on resume, and each of them must have been written after the
    checkpoint file that was loaded (a counter that disagrees with the files, e.g. 0 in a crafted checkpoint,
    would delete them all)."""
    if checkpoint_file is None:
        return
    written = checkpoint_file.stat().st_mtime_ns
    older = [part for table in sorted(run_dir.iterdir()) for part in part_files(table)
             if part_number(part) >= next_part and part.stat().st_mtime_ns < written]
    if older:
        raise InputError(f"{checkpoint_file} says {next_part} record parts were written before it, but "
                         f"{older[0]} (part {part_number(older[0])}) is older than it ({len(older)} such parts); "
                         "resuming would delete records the checkpoint did not write: nothing was changed")


def _take_rates(state: SearchState, config: Config) -> None:
    """The learning rates of ``config`` in a restored state, where they differ from the checkpoint's (only on a
    change: exact resumes stay exact). A new weight lr restarts the schedule from the same step at the new base
    rate; the transition rate is read from the configuration at every move."""
    groups = state.optimizer.param_groups
    if any(group.get("initial_lr") != config.search.lr for group in groups):
        for group in groups:
            group["initial_lr"] = config.search.lr
        state.scheduler = torch.optim.lr_scheduler.LambdaLR(
            state.optimizer, lr_factor(config, state.steps_per_epoch), last_epoch=state.scheduler.last_epoch - 1)
    for group in state.reinforce.optimizer.param_groups:
        if group["lr"] != config.search.controller_lr:
            group["lr"] = config.search.controller_lr
