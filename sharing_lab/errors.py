"""Errors that the command line reports as one line with exit status 2, and the one-line forms of OS and memory
errors."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user: a path, a name, a value or a file that cannot be used."""


def describe_os_error(error: OSError) -> str:
    """``<reason>: <path>`` for an OS error (read-only directory, full disk, name too long, …)."""
    reason = error.strerror or (str(error.args[0]) if error.args else "") or type(error).__name__
    paths = [p for p in (error.filename, getattr(error, "filename2", None)) if p is not None]
    return f"{reason}: {' -> '.join(str(p) for p in paths)}" if paths else reason


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says that memory ran out (torch's ``OutOfMemoryError``, a failed CPU allocation,
    Python's ``MemoryError``)."""
    if isinstance(error, MemoryError):
        return True
    if type(error).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError / torch.cuda.OutOfMemoryError
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def describe_out_of_memory(error: BaseException) -> str:
    """One line for memory exhaustion: what ran out and what to change."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return (f"out of memory ({first}); use smaller model.widths, data.batch_size or data.eval_batch_size, "
            "or a device with more memory")
