"""Manual correction (paper 3.1.3): review actions, the review page, tool round trips."""
