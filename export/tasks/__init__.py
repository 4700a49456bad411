"""What exporting and gating a model means per task: one module (or package) per task."""
