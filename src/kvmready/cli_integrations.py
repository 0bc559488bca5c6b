"""Commands for the tools people already run: fleets of reports, Ansible facts.

`register(app)` adds them to the main CLI; keep this module's imports light,
it loads at start-up.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the integration commands to `app`."""
