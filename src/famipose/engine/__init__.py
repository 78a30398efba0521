"""famipose.engine: training, evaluation, checkpoints, distributed execution and run logging.

Submodules are imported on use; the main entry points are
:func:`famipose.engine.train.train` and :func:`famipose.engine.evaluate.evaluate_model`.
"""
