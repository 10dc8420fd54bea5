"""Watching a run: progress, status/list/compare, TensorBoard, Ray metrics."""
