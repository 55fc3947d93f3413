"""``python -m perceptual_ext.cli`` (what torchrun runs for distributed training)."""
import sys

from . import main

sys.exit(main())
