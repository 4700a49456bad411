"""The engine classes, one module per task, on the shared base (engine.tasks.base)."""
