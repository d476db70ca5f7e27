"""Pulumi entry point (``pulumi up`` in deploy/cloud): the program itself is deploy/infra.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: deploy/ and resources/

from deploy import infra

infra.export(infra.build())
