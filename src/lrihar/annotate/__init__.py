"""Auto-annotation: sifting frames, detecting hand actions, storing them (paper 3.1.1)."""
