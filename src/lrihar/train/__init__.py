"""Training the project's own detector (ultralytics YOLO, an optional extra) and choosing the
frames most worth a person's correction before the next training."""
