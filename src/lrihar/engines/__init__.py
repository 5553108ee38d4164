"""Where ``annotate`` and ``classify`` do their heavy work.

The local engine is the pipelines themselves (:mod:`lrihar.annotate.pipeline`,
:mod:`lrihar.classify.pipeline`). ``--engine ray`` runs the detector and the encoder on Ray Data
actor pools (:mod:`.ray_annotate`, :mod:`.ray_classify`, cluster set-up in :mod:`.ray_cluster`)
and writes the same rows into the same project store. Ray is an optional extra: nothing here
imports it until a Ray engine runs.
"""
