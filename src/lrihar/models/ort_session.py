"""ONNX Runtime session options shared by the deployed detector and classifier."""

from __future__ import annotations


def session_options(threads: int | None, spin: bool):
    """``threads`` intra-op threads (None: one per core); with ``spin`` the idle threads
    busy-wait between operators during a call and stop as soon as it returns
    (``session.force_spinning_stop``), so they take no CPU between frames."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or 0
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if spin:
        opts.add_session_config_entry("session.force_spinning_stop", "1")
    return opts
