"""Keep third-party chatter off the user's terminal.

MediaPipe, TensorFlow Lite and absl log from C++ straight to file descriptor 2 (``INFO: Created
TensorFlow Lite XNNPACK delegate``, ``W0000 ... inference_feedback_manager.cc``), before any
Python logging setting or environment variable can reach them. :func:`silence_native_logs` puts a
filter between descriptor 2 and the terminal that drops exactly those lines and passes everything
else through; Python's own ``sys.stderr`` keeps writing to the terminal directly, so progress bars
are untouched. ``lrihar --verbose`` (or ``LRIHAR_VERBOSE=1``) leaves everything as it was.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading

# glog/absl lines ("W0000 00:00:1795.66  994 file.cc:114] ...") and TFLite's own INFO/WARNING lines.
NATIVE_NOISE = re.compile(
    rb"^(?:[IWEF]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] "
    rb"|INFO: (?:Created|Initialized|Replacing) TensorFlow Lite"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called)"
)
_NOISY_LOGGERS = ("absl", "tensorflow", "jax", "jax._src", "h5py", "matplotlib", "PIL")
_ENV = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2", "TRANSFORMERS_VERBOSITY": "error",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


def keep_line(line: bytes) -> bool:
    """False for a line of known native-library noise."""
    return NATIVE_NOISE.match(line) is None


def silence_python_logs() -> None:
    """Environment and logger levels that quiet the Python side of third-party libraries."""
    for key, value in _ENV.items():
        os.environ.setdefault(key, value)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def silence_native_logs() -> None:
    """Filter native-library noise out of file descriptor 2 for the rest of the process.

    Call once, early, in a command-line process (never inside a library or a test run: it
    rewires the process's stderr).
    """
    silence_python_logs()
    try:
        sys.stderr.flush()
        terminal = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
    except OSError:  # no descriptor 2 (a daemon): nothing to filter
        return
    sys.stderr = open(terminal, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",  # noqa: SIM115
                      errors="backslashreplace", closefd=False)

    def pump() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if keep_line(line))
            if kept:
                os.write(terminal, kept)
        if pending and keep_line(pending):
            os.write(terminal, pending)

    worker = threading.Thread(target=pump, name="lrihar-stderr-filter", daemon=True)
    worker.start()

    def restore() -> None:
        # Putting the terminal back on descriptor 2 closes the pipe's last write end: the pump
        # reads to the end, forwards what is left, and stops.
        sys.stderr.flush()
        os.dup2(terminal, 2)
        worker.join(timeout=2)

    atexit.register(restore)


def verbose_requested(argv: list[str]) -> bool:
    """``--verbose`` before the command, or ``LRIHAR_VERBOSE`` set to a true value."""
    env = os.environ.get("LRIHAR_VERBOSE", "").strip().lower()
    return env in ("1", "true", "yes", "on") or "--verbose" in argv[: _command_position(argv)]


def _command_position(argv: list[str]) -> int:
    for i, arg in enumerate(argv):
        if not arg.startswith("-"):
            return i
    return len(argv)
