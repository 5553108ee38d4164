"""CSV files a spreadsheet opens safely: a text cell that a spreadsheet would run as a formula
(it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return: a class name, a source
name or a label someone typed) is written with a leading ``'`` (OWASP's advice), so it shows as
text. Numbers are written as they are.

Example:
    >>> safe_cell("=HYPERLINK(\\"http://x\\")"), safe_cell("-3"), safe_cell(-3.5), safe_cell("pick")
    ('\\'=HYPERLINK("http://x")', "'-3", -3.5, 'pick')
"""

from __future__ import annotations

import csv
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value``, or a text that would start a formula with ``'`` in front."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


class SafeDictWriter(csv.DictWriter):
    """:class:`csv.DictWriter` whose text cells are :func:`safe_cell`."""

    def writerow(self, rowdict):
        return super().writerow({k: safe_cell(v) for k, v in rowdict.items()})

    def writerows(self, rowdicts):
        for row in rowdicts:
            self.writerow(row)
