"""What every host sub-collector shares: its spec, the per-scrape read cache, family builders, name filters."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from .proc import ParseError
from .system import System, read_file

if TYPE_CHECKING:
    from exporter.config.host import HostConfig

T = TypeVar("T")


class Scrape:
    """One scrape's view of the host: each /proc file is read and parsed at most once per scrape."""

    def __init__(self, system: System) -> None:
        self.system = system
        # The paths as text, once: joining Path objects costs more than the reads they lead to.
        self.procfs = str(system.procfs)
        self.sysfs = str(system.sysfs)
        self.rootfs = str(system.rootfs)
        self._parsed: dict[str, object] = {}

    def proc(self, name: str, parse: Callable[[str], T]) -> T:
        """The file <procfs>/<name> parsed; a failed read or parse raises again for the next reader."""
        if name not in self._parsed:
            try:
                self._parsed[name] = parse(read_file(f"{self.procfs}/{name}"))
            except (OSError, ParseError) as exc:
                self._parsed[name] = exc
        value = self._parsed[name]
        if isinstance(value, Exception):
            raise value
        return cast(T, value)  # each file name has one parser, so one type


class SubCollector(Protocol):
    """One of node_exporter's collectors (cpu, meminfo, ...): its families for one scrape."""

    def collect(self, scrape: Scrape) -> list[Metric]:
        """Its families; raises when its source cannot be read."""
        ...


class Platforms(StrEnum):
    """Where a collector can run; the value is how the docs say it."""

    EVERYWHERE = "everywhere"
    LINUX_OR_PSUTIL = "Linux, elsewhere through psutil"
    LINUX = "Linux only"
    NOT_WINDOWS = "not on Windows"

    def include(self, system: System) -> bool:
        """Whether a collector of these platforms runs on `system` (else it is left out, success series included)."""
        if self is Platforms.LINUX:
            return system.linux
        if self is Platforms.LINUX_OR_PSUTIL:
            return system.linux or system.psutil is not None
        if self is Platforms.NOT_WINDOWS:
            return system.platform != "win32"
        return True

    @property
    def note(self) -> str:
        """What the docs add to a collector's name: nothing where upwatch runs at all (it loads psutil off Linux)."""
        return "" if self in (Platforms.EVERYWHERE, Platforms.LINUX_OR_PSUTIL) else self.value


@dataclass(frozen=True, slots=True)
class CollectorContext:
    """What a collector's factory is given: the host config, the system, and a debug logger bound to its name."""

    config: HostConfig
    system: System
    debug: Callable[..., None] | None


@dataclass(frozen=True, slots=True)
class CollectorSpec:
    """One host collector, declared once beside its class: node_exporter's registerCollector(name, default, factory)."""

    name: str
    default_enabled: bool
    platforms: Platforms
    factory: Callable[[CollectorContext], SubCollector]

    def markdown(self) -> str:
        """Its name as the docs list it, with where it runs and that it is off by default when either narrows it."""
        notes = [n for n in (self.platforms.note, "" if self.default_enabled else "off by default") if n]
        return f"`{self.name}`" + (f" ({', '.join(notes)})" if notes else "")


def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    """An empty gauge family."""
    return GaugeMetricFamily(name, doc, labels=labels)


def counter(name: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    """An empty counter family; `name` ends in _total as exposed."""
    return CounterMetricFamily(name, doc, labels=labels)


def single(name: str, doc: str, value: float, typ: str = "gauge") -> Metric:
    """A family with one unlabelled sample; `typ` is gauge, counter (name ending in _total) or untyped.

    Built directly rather than through the *MetricFamily helpers, which cost twice as much, and
    meminfo, netstat and vmstat make a hundred of these per scrape.
    """
    family = Metric(name.removesuffix("_total") if typ == "counter" else name, doc, typ)
    family.samples.append(Sample(name, {}, value, None))
    return family


@dataclass(frozen=True, slots=True)
class NameFilter:
    """node_exporter's device filter: a name is ignored when it misses the include or matches the exclude."""

    include: re.Pattern[str] | None
    exclude: re.Pattern[str] | None

    def ignored(self, name: str) -> bool:
        """Whether `name` (a device, mount point or filesystem type) is left out."""
        if self.include is not None and not self.include.search(name):
            return True
        return self.exclude is not None and self.exclude.search(name) is not None


class Refreshing(Generic[T]):
    """A value that rarely changes (uname, os-release, boot time), loaded again at most every `max_age` s."""

    def __init__(self, load: Callable[[], T], max_age: float = 60.0) -> None:
        self._load = load
        self._max_age = max_age
        self._lock = threading.Lock()
        self._value: tuple[float, T] | None = None

    def get(self) -> T:
        """The cached value, or a fresh one when it is older than max_age; a failing load raises."""
        now = time.monotonic()
        with self._lock:
            if self._value is not None and now - self._value[0] < self._max_age:
                return self._value[1]
        value = self._load()
        with self._lock:
            self._value = (now, value)
        return value


def attr(obj: Any, name: str) -> float | None:
    """A numeric attribute of a psutil record, None when this OS's record has no such field."""
    value = getattr(obj, name, None)
    return None if value is None else float(value)
