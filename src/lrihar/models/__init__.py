"""Model backends, each behind a registry (detectors now; encoders and classifiers later)."""
