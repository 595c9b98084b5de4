"""Loading a config file in a child process, for `upwatch serve`: the main process only takes in the result.

Parsing builds far more than it keeps (the YAML node tree, every value's position, pydantic's
working data): at 5,000 endpoints some 28 MB of which only the models remain, scattered among the
freed memory, which the allocator cannot hand back while a single object lives in each block. In a
child that memory goes back to the system when the child exits, and the main process grows only by
the unpickled config, laid out compactly (about 4 MB at 5,000 endpoints); a reload no longer leaves
its garbage behind, and a hostile file (deep nesting, aliases, a huge file) is parsed where it
cannot take the agent's memory with it.

The child is this interpreter running `python -m exporter.config.isolated FILE`; it inherits the
environment (for `${VAR}`) and the working directory, and writes back one pickle: the Config, or
the problems. Both ends are upwatch, so pickle is safe here. TLS material is checked in the child
(problems with their lines); the SSL contexts are built where they are used.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

from exporter.children import child_environment, python_module_command

from .loader import load_config
from .models import Config
from .problems import ConfigError, Problem

# Generous: a 20,000-endpoint file loads in about 5 s on a small machine.
LOAD_TIMEOUT_SECONDS = 120.0


def load_config_isolated(path: str | os.PathLike[str], timeout: float = LOAD_TIMEOUT_SECONDS) -> Config:
    """load_config(path), run in a child process; raises ConfigError as load_config does.

    A child that fails (killed, out of memory, too slow) is a problem with the file too: whatever
    made it fail, the file cannot be used, and the agent keeps its old config.
    """
    file = os.fspath(path)
    try:
        done = subprocess.run(
            [*python_module_command("exporter.config.isolated"), file],
            env=child_environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise _failed(file, f"loading it took more than {timeout:g} s") from None
    try:
        kind, value = pickle.loads(done.stdout)
    except Exception:
        detail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [_exit(done.returncode)]
        raise _failed(file, f"the process loading it failed: {detail[0]}") from None
    if kind == "config" and isinstance(value, Config):
        return value
    if kind == "problems":
        raise ConfigError(list(value))
    raise _failed(file, str(value))


def _failed(file: str, message: str) -> ConfigError:
    return ConfigError([Problem(file, 1, 1, "(file)", message)])


def _exit(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def main() -> None:
    """The child: load the file named in argv, write the outcome to stdout as one pickle."""
    file = sys.argv[1]
    outcome: tuple[str, object]
    try:
        outcome = ("config", load_config(file))
    except ConfigError as exc:
        outcome = ("problems", list(exc.problems))
    except Exception as exc:  # a bug: the parent says so, with the error's type
        outcome = ("error", f"internal error while reading the file: {exc!r}")
    sys.stdout.buffer.write(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
