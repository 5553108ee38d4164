"""``python -m lrihar.cli``: the same as the ``lrihar`` command."""

from lrihar.cli import console

console()
