"""Establishing the dataset (paper 3.1.3): seeded splits by source and YOLO / ImageFolder / COCO export."""
