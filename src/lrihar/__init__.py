"""lrihar: low-cost, real-time industrial human action recognition.

The package imports nothing heavy; backends load torch, transformers or mediapipe when built.
"""

from __future__ import annotations

from lrihar.config import ProjectConfig, load_project_config
from lrihar.errors import BadInputError, LriharError, ModelLoadError
from lrihar.project import Project, init_project
from lrihar.sources import Frame, open_source

__version__ = "0.1.0"

__all__ = [
    "BadInputError",
    "Frame",
    "LriharError",
    "ModelLoadError",
    "Project",
    "ProjectConfig",
    "__version__",
    "init_project",
    "load_project_config",
    "open_source",
]
