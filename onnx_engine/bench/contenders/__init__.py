"""One class per contender and task; ``onnx_engine.bench.registry`` finds them by name.

Deliberately empty: a cold-start subprocess imports one contender module, and everything imported
here would be billed to every contender's start-up time and memory.
"""
