"""node_filesystem_*: mounts and their statvfs, on a few worker threads so a hung mount cannot hang a scrape."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from .base import CollectorSpec, NameFilter, Platforms, Scrape, gauge
from .proc import Mount, parse_mounts
from .system import StatvfsResult, System, label_text

if TYPE_CHECKING:
    from exporter.config.host import FilesystemOptions

# node_exporter's defaults (upstream's, not a distribution's patched ones), so that the same
# filesystems appear as under a stock node_exporter.
NODE_MOUNT_POINTS_EXCLUDE = r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
NODE_FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|"
    r"overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$"
)

# As node_exporter's --collector.filesystem.stat-workers default.
STAT_WORKERS = 4
_LABELS = ("device", "mountpoint", "fstype")


class StatfsCall:
    """One statvfs call handed to the pool; its outcome once `done` is set."""

    __slots__ = ("abandoned", "cancelled", "done", "error", "key", "path", "result", "started")

    def __init__(self, key: str, path: str) -> None:
        self.key = key
        self.path = path
        self.done = threading.Event()
        self.result: StatvfsResult | None = None
        self.error: Exception | None = None
        self.started = False
        self.cancelled = False  # given up before a worker took it: never run
        self.abandoned = False  # given up while running: its worker retires when (if ever) it returns


class StatfsPool:
    """statvfs on `workers` threads; a call that overruns is abandoned and its worker replaced.

    A mount whose abandoned call is still running is "stuck" (node_exporter's stuckMounts): it is
    not called again until that call returns, so a dead NFS server costs one thread, not one per scrape.
    """

    def __init__(self, statvfs: Callable[[str], StatvfsResult], workers: int = STAT_WORKERS) -> None:
        self._statvfs = statvfs
        self._size = workers
        self._queue: queue.SimpleQueue[StatfsCall | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._stuck: dict[str, StatfsCall] = {}
        self._closed = False

    def stuck(self, key: str) -> bool:
        """Whether an abandoned call for this mount is still running."""
        with self._lock:
            return key in self._stuck

    def submit(self, key: str, path: str) -> StatfsCall:
        """Queue statvfs(path) for the mount `key`."""
        call = StatfsCall(key, path)
        with self._lock:
            if self._closed:
                raise RuntimeError("statfs pool is closed")
            while self._threads < self._size:
                self._start_worker()
        self._queue.put(call)
        return call

    def give_up(self, calls: list[StatfsCall]) -> None:
        """Stop waiting for calls that missed their deadline; a running one marks its mount stuck.

        Queued calls are cancelled before any worker is replaced, so that a replacement does not
        pick up one of them only to hang on it too.
        """
        with self._lock:
            late = [c for c in calls if not c.done.is_set()]
            for call in late:
                if not call.started:
                    call.cancelled = True
            for call in late:
                if call.started:
                    call.abandoned = True
                    self._stuck[call.key] = call
                    if not self._closed:
                        self._start_worker()  # keep `workers` threads free for the other mounts

    def close(self) -> None:
        """Stop the idle workers; stuck ones end when their call returns (they are daemon threads)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            count = self._threads
        for _ in range(count):
            self._queue.put(None)

    def _start_worker(self) -> None:
        self._threads += 1
        threading.Thread(target=self._work, name="upwatch-statfs", daemon=True).start()

    def _work(self) -> None:
        while True:
            call = self._queue.get()
            if call is None:
                with self._lock:
                    self._threads -= 1
                return
            with self._lock:
                if call.cancelled:
                    continue
                call.started = True
            result: StatvfsResult | None = None
            error: Exception | None = None
            try:
                result = self._statvfs(call.path)
            except Exception as exc:  # OSError mostly; any failure is that mount's device error
                error = exc
            with self._lock:
                call.result, call.error = result, error
                call.done.set()
                if self._stuck.get(call.key) is call:
                    del self._stuck[call.key]
                if call.abandoned:  # a replacement took this thread's place
                    self._threads -= 1
                    return


@dataclass(frozen=True, slots=True)
class _Usage:
    size: float
    free: float
    avail: float
    files: float
    files_free: float


class Filesystem:
    """Size, free and available bytes, inodes and read-only state per mount, as node_exporter."""

    def __init__(self, options: FilesystemOptions, system: System, *, log: Callable[..., None] | None = None) -> None:
        self._timeout = options.mount_timeout
        self._mount_points = NameFilter(options.mount_points_include, options.mount_points_exclude)
        self._fs_types = NameFilter(options.fs_types_include, options.fs_types_exclude)
        self._pool = StatfsPool(system.statvfs)
        self._log = log

    def close(self) -> None:
        """Stop the statvfs workers."""
        self._pool.close()

    def collect(self, scrape: Scrape) -> list[Metric]:
        """One scrape: statvfs of every selected mount, waiting at most mount_timeout in all."""
        system = scrape.system
        mounts = self._select(self._mounts(scrape))
        deadline = time.monotonic() + self._timeout
        calls: list[tuple[Mount, StatfsCall | None]] = []
        for mount in mounts:
            if self._pool.stuck(mount.mountpoint):
                self._debug("mount point still unresponsive, not called again", mountpoint=mount.mountpoint)
                calls.append((mount, None))
            else:
                calls.append((mount, self._pool.submit(mount.mountpoint, self._stat_path(mount, scrape))))

        families = {
            "size": gauge("node_filesystem_size_bytes", "Filesystem size in bytes.", _LABELS),
            "free": gauge("node_filesystem_free_bytes", "Filesystem free space in bytes.", _LABELS),
            "avail": gauge(
                "node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.", _LABELS
            ),
            "files": gauge("node_filesystem_files", "Filesystem total file nodes.", _LABELS),
            "files_free": gauge("node_filesystem_files_free", "Filesystem total free file nodes.", _LABELS),
            "readonly": gauge("node_filesystem_readonly", "Filesystem read-only status.", _LABELS),
            "device_error": gauge(
                "node_filesystem_device_error",
                "Whether an error occurred while getting statistics for the given device.",
                _LABELS,
            ),
        }
        late = [c for _, c in calls if c is not None and not c.done.wait(max(0.0, deadline - time.monotonic()))]
        if late:
            self._pool.give_up(late)
            for overdue in late:
                self._debug("mount point timed out, labelled stuck until its call returns", mountpoint=overdue.key)
        with_files = system.platform != "win32"  # psutil's disk_usage has no inode counts
        for mount, call in calls:
            labels = [label_text(mount.device), label_text(mount.mountpoint), label_text(mount.fstype)]
            usage = self._usage(call) if call is not None else None
            families["device_error"].add_metric(labels, 0.0 if usage is not None else 1.0)
            if usage is None:
                continue  # as node_exporter: no size series for a mount it could not stat
            families["size"].add_metric(labels, usage.size)
            families["free"].add_metric(labels, usage.free)
            families["avail"].add_metric(labels, usage.avail)
            if with_files:
                families["files"].add_metric(labels, usage.files)
                families["files_free"].add_metric(labels, usage.files_free)
            families["readonly"].add_metric(labels, 1.0 if mount.readonly else 0.0)
        return list(families.values())

    def _usage(self, call: StatfsCall) -> _Usage | None:
        """What a finished call found; None when it failed or did not finish in time."""
        if not call.done.is_set():
            return None
        if call.error is not None or call.result is None:
            self._debug("statvfs failed", mountpoint=call.key, error=str(call.error))
            return None
        st = call.result
        # f_bsize, not f_frsize, and float products: node_exporter's arithmetic, for equal numbers.
        bsize = float(st.f_bsize)
        return _Usage(
            size=float(st.f_blocks) * bsize,
            free=float(st.f_bfree) * bsize,
            avail=float(st.f_bavail) * bsize,
            files=float(st.f_files),
            files_free=float(st.f_ffree),
        )

    def _mounts(self, scrape: Scrape) -> list[Mount]:
        system = scrape.system
        if system.linux:
            try:
                mounts = scrape.proc("1/mounts", parse_mounts)
            except (FileNotFoundError, PermissionError):  # /proc mounted with hidepid
                mounts = scrape.proc("self/mounts", parse_mounts)
            return [self._strip_rootfs(m, scrape.rootfs) for m in mounts]
        assert system.psutil is not None
        # Windows lists empty card readers and DVD drives with all=True; elsewhere the excludes filter.
        parts = system.psutil.disk_partitions(all=system.platform != "win32")
        return [Mount(str(p.device), str(p.mountpoint), str(p.fstype), str(p.opts)) for p in parts]

    @staticmethod
    def _strip_rootfs(mount: Mount, root: str) -> Mount:
        """A mount point under rootfs as the host sees it (node_exporter's --path.rootfs)."""
        if root == "/" or not (mount.mountpoint == root or mount.mountpoint.startswith(root + "/")):
            return mount
        return Mount(mount.device, mount.mountpoint[len(root) :] or "/", mount.fstype, mount.options)

    @staticmethod
    def _stat_path(mount: Mount, scrape: Scrape) -> str:
        root = scrape.rootfs
        if root == "/" or scrape.system.platform == "win32":
            return mount.mountpoint
        return os.path.normpath(os.path.join(root, mount.mountpoint.lstrip("/")))  # as Go's filepath.Join

    def _select(self, mounts: list[Mount]) -> list[Mount]:
        """Mounts passing the filters, each (device, mount point, type) once, as node_exporter."""
        seen: set[tuple[str, str, str]] = set()
        out: list[Mount] = []
        for m in mounts:
            if self._mount_points.ignored(m.mountpoint) or self._fs_types.ignored(m.fstype):
                continue
            key = (m.device, m.mountpoint, m.fstype)
            if key not in seen:
                seen.add(key)
                out.append(m)
        return out

    def _debug(self, event: str, **kw: object) -> None:
        if self._log is not None:
            self._log(event, **kw)


FILESYSTEM = CollectorSpec(
    name="filesystem",
    default_enabled=True,
    platforms=Platforms.LINUX_OR_PSUTIL,
    factory=lambda c: Filesystem(c.config.filesystem, c.system, log=c.debug),
)
