"""``python -m sharing_lab.cli`` (what torchrun starts): the command line."""

from . import main

main()
