"""Errors that the command line reports as one line with exit status 2."""


class InputError(ValueError):
    """Bad input from the user: a path, a name, a value or a file that cannot be used."""
