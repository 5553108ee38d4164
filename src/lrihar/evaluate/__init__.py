"""Evaluation: the paper's detection metrics (eq. 3, eq. 4) and, later, sweeps and reports."""
