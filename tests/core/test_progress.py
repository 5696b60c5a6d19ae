"""``core.progress.TaskProgress``: a bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from core.progress import TaskProgress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_on_a_terminal_that_goes_away_at_the_end() -> None:
    out = Terminal()
    with TaskProgress("analytics", 200, out=out) as bar:
        bar.update(100)
        assert bar._progress is not None
        assert bar._progress.tasks[0].percentage == 50.0
    assert bar._progress is None
    assert "analytics" in out.getvalue()


def test_a_spinner_when_the_total_is_unknown() -> None:
    out = Terminal()
    with TaskProgress("simulating 6 h", out=out) as bar:
        assert bar._progress is not None and bar._progress.tasks[0].total is None
    assert "simulating 6 h" in out.getvalue()


def test_plain_lines_without_a_terminal() -> None:
    out = io.StringIO()
    with TaskProgress("analytics", 200, out=out, plain_every_s=0.0) as bar:
        bar.update(50)
        bar.update(150)
    assert out.getvalue().splitlines() == ["analytics  25%", "analytics  75%"]


def test_nothing_for_a_short_step_without_a_terminal() -> None:
    out = io.StringIO()
    with TaskProgress("analytics", 200, out=out) as bar:
        bar.update(199)
    assert out.getvalue() == ""
