"""The live page of ``lrihar run --serve``: per source the latest frame with its overlays, per post
the checklist of the current cycle, the last alerts, recent events and a cycle-time chart.

:class:`LivePage` is both a frame observer and a sink of the pipeline; it serves a read-only
FastAPI app (:mod:`.app`) from a background thread. The pipeline thread only stores references
(:mod:`.state`); pictures are drawn and encoded on request, at most ``fps_cap`` per source per
second (:mod:`.pictures`).
"""

from lrihar.runtime.live.page import LivePage

__all__ = ["LivePage"]
