"""How the studio writes moments for people: one format on every page and in every label."""

from __future__ import annotations

from datetime import datetime

FORMAT = "%Y-%m-%d %H:%M"


def when(stamp: float | int | str | datetime | None) -> str:
    """``2026-12-01 23:15`` in the server's local time, from epoch seconds, an ISO 8601 text (UTC when
    it names no zone) or a datetime; blank for None or text that is not a moment."""
    if stamp is None or stamp == "":
        return ""
    try:
        if isinstance(stamp, datetime):
            moment = stamp
        elif isinstance(stamp, int | float):
            moment = datetime.fromtimestamp(stamp).astimezone()
        else:
            moment = datetime.fromisoformat(str(stamp))
        if moment.tzinfo is None:
            from datetime import UTC

            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone().strftime(FORMAT)
    except (ValueError, OverflowError, OSError):
        return str(stamp)
