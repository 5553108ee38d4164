"""Cut an exported YOLO graph before its box decoding (see :mod:`lrihar.models.detectors.yolo_head`).

ultralytics' ONNX detector returns ``(N, 4 + classes, anchors)``: boxes decoded from the DFL
bins of every anchor, then the sigmoid class scores. The cut graph returns the bins
(``box_bins``, ``(N, 4 * reg_max, anchors)``) and the scores (``scores``, ``(N, classes,
anchors)``); the strides and ``reg_max`` the decoding needs go into the file's metadata, so the
file stays self-contained. A graph of another shape (no DFL) is left as it is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from lrihar.models.detectors.yolo_head import HEAD_KEY, OUTPUT_NAMES, REG_MAX_KEY, STRIDES_KEY


def cut_before_decoding(path: Path, strides: Sequence[float]) -> bool:
    """Rewrite ``path`` to end at the DFL bins and the class scores; False if it has no such head."""
    import onnx
    from onnx import numpy_helper
    from onnx.utils import Extractor

    model = onnx.load(str(path))
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    final = producers.get(graph.output[0].name) if len(graph.output) == 1 else None
    dfl_in = next((n for n in graph.node if n.op_type == "Reshape" and "/dfl/" in n.name), None)
    dfl_conv = next((n for n in graph.node if n.op_type == "Conv" and "/dfl/" in n.name), None)
    if final is None or final.op_type != "Concat" or len(final.input) != 2 or not dfl_in or not dfl_conv:
        return False
    sigmoid = producers.get(final.input[1])
    weights = {t.name: t for t in graph.initializer}
    if sigmoid is None or sigmoid.op_type != "Sigmoid" or dfl_conv.input[1] not in weights:
        return False
    reg_max = int(numpy_helper.to_array(weights[dfl_conv.input[1]]).shape[1])
    cut = Extractor(model).extract_model([graph.input[0].name], [dfl_in.input[0], sigmoid.output[0]])
    for old, new in zip((dfl_in.input[0], sigmoid.output[0]), OUTPUT_NAMES, strict=True):
        for node in cut.graph.node:
            node.output[:] = [new if o == old else o for o in node.output]
        for out in cut.graph.output:
            out.name = new if out.name == old else out.name
    cut.graph.name = graph.name
    cut.producer_name, cut.producer_version = model.producer_name, model.producer_version
    cut.metadata_props.extend(model.metadata_props)
    for key, value in ((HEAD_KEY, "dfl"), (STRIDES_KEY, [float(s) for s in strides]), (REG_MAX_KEY, reg_max)):
        cut.metadata_props.add(key=key, value=json.dumps(value))
    onnx.checker.check_model(cut)
    onnx.save(cut, str(path))
    return True
