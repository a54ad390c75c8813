"""Datasets, preprocessing, face detection and splits."""
