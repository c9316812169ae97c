"""Silent mode: every hook is computed and audited, but its card reaches only the pilot users.

A site runs the service silently before go-live and compares the would-be cards (the audit
trail) with what happened to the same patients (`picu-endotype report`, then `evaluate`).
"""

from __future__ import annotations

from cds_service.settings import SilentSettings


def shown(silent: SilentSettings, user_id: str | None) -> bool:
    """Whether the card goes back to this user: always outside silent mode, else pilots only."""
    if not silent.enabled:
        return True
    return user_id is not None and user_id in silent.pilot_users
