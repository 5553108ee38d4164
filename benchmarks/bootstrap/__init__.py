"""The phases of ``benchmarks/detector_bootstrap.py`` (its docstring tells the whole story):

* :mod:`bootstrap.plan`: the constants, the split, ``prepare`` (each arm's labels, the plan);
* :mod:`bootstrap.training`: ``train`` (every arm, in parallel processes if asked), ONNX export,
  weights carried in and out (``--collect``, ``--weights``);
* :mod:`bootstrap.polars_stand_in`: the csv stand-in for polars on a GPU machine without it;
* :mod:`bootstrap.relabel`: round 2, each arm's own YOLO re-annotates the train half;
* :mod:`bootstrap.scoring`: ``score`` (the operating points, the cross-validated one, the targets);
* :mod:`bootstrap.report`: the Markdown tables and the results JSON written elsewhere.
"""
