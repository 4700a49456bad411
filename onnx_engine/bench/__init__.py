"""``onnx-engine bench``: the engine against bare ONNX Runtime, PyTorch, the pipeline and Optimum.

Modules, one job each: ``models`` (what to run on), ``workloads`` (texts of exact token length),
``contenders`` (one class per way of running the model), ``timing`` (alternating rounds),
``graph_cost`` and ``floor`` (FLOPs, bytes and machine peaks), ``coldstart`` (fresh-process start
and peak memory), ``agreement``, ``model_bench`` and ``runner`` (orchestration), ``report``,
``targets``, ``markdown`` and ``plot`` (output).

Deliberately import-free: the cold-start subprocess imports this package, and anything imported
here would be billed to every contender's start-up.
"""
