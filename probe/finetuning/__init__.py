"""probe.finetuning: end-to-end fine-tuning with DLFA (moved from probe/finetuning.py)."""
from .run import *  # noqa: F401,F403
from .run import __all__  # noqa: F401
