"""``onnx-engine bench``: the engine against bare ONNX Runtime, PyTorch, the pipeline and Optimum.

Modules, one job each: ``models`` (what to run on), ``workloads`` (texts of exact token length),
``contenders`` (one class per way of running the model), ``timing`` (alternating rounds),
``graph_cost`` and ``floor`` (FLOPs, bytes and machine peaks), ``coldstart`` (fresh-process start
and peak memory), ``agreement``, ``model_bench`` and ``runner`` (orchestration), ``report``,
``targets``, ``markdown`` and ``plot`` (output). For ``benchmarks/gpu_check.sh``: ``gpu_prereqs``
(what a GPU run needs), ``gpu_bench`` (engine vs PyTorch on CUDA), ``gpu_report`` (its files) and
``transfers`` (host<->device copies counted at ONNX Runtime's API).

Deliberately import-free: the cold-start subprocess imports this package, and anything imported
here would be billed to every contender's start-up.
"""
