"""A table of periodic tasks and the small scheduler that runs them, driven by the caller's clock.

Each `Task` is a name, an interval and a function of `now`. `Scheduler.run(now)` runs, in table order,
every task whose interval has passed since it last ran (every task runs at the first call; an interval
of zero means every call). A task is marked as run before it is called, so one that raises waits its
interval like one that succeeded, and the exception goes to the caller (the tasks after it run at the
next call). A task that returns False did not do its work (e.g. the watchdog withheld): it is due again
at the next call. A clock that went back makes every task due, rather than none for as long as it went
back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

EVERY_CALL = timedelta(0)


@dataclass(frozen=True)
class Task:
    name: str
    every: timedelta
    run: Callable[[datetime], bool | None]


class Scheduler:
    """Runs the due tasks of a fixed table; `now` always comes from the caller."""

    def __init__(self, tasks: Iterable[Task]) -> None:
        self.tasks = tuple(tasks)
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique: {names}")
        self._last: dict[str, datetime] = {}

    def due(self, task: Task, now: datetime) -> bool:
        last = self._last.get(task.name)
        return last is None or now < last or now - last >= task.every

    def run(self, now: datetime) -> None:
        for task in self.tasks:
            if not self.due(task, now):
                continue
            self._last[task.name] = now
            if task.run(now) is False:
                del self._last[task.name]
