"""Where a sweep's study lives: in memory, a journal file on one machine, or a database for many.

A path (no ``://``) is an Optuna journal file guarded by a file lock: no server, safe for several
processes on one machine. ``sqlite:///`` works for one worker only. Any other SQLAlchemy URL
(``postgresql://``, ``mysql://``) is shared by workers on many machines, with heartbeats so that a
killed worker's trial is failed and retried with the same parameters. Passwords never leave this
module unmasked.
"""

from __future__ import annotations

import importlib.util
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from lrkit import checks

Kind = Literal["memory", "journal", "sqlite", "database"]
DATABASE_SCHEMES = ("postgresql", "mysql", "mariadb", "oracle", "mssql")
RETRIES = 2  # how many times a heartbeat-stale trial is run again before it stays failed


@dataclass(frozen=True)
class StorageSpec:
    """A parsed ``storage`` argument: its kind and the path or URL it names."""

    kind: Kind
    target: str = ""

    def __repr__(self) -> str:
        return f"StorageSpec({self.kind!r}, {self.shown!r})"

    @property
    def shown(self) -> str:
        """The storage as it may be printed or logged (password masked)."""
        return "memory" if self.kind == "memory" else mask_url(self.target)

    @property
    def shared(self) -> bool:
        """Whether several processes can work on one study in it."""
        return self.kind in ("journal", "database")


def mask_url(url: str) -> str:
    """``url`` with its passwords replaced by ``***``: the one in ``user:password@`` and any
    ``password=`` query parameter (libpq's); every other character as given.

    The URL is edited in place, not parsed and rebuilt: rebuilding drops the empty host of
    ``sqlite:///sweep.db`` (``sqlite:/sweep.db``) and re-quotes the query, so what is shown (and
    what ``optuna-dashboard`` is told to open) would no longer be the URL the sweep used.
    """
    if "://" not in url:
        return url
    scheme, _, rest = url.partition("://")
    netloc = urlsplit(url).netloc  # ``rest`` starts with it
    user, at, host = netloc.rpartition("@")
    if at and ":" in user:
        rest = f"{user.split(':', 1)[0]}:***@{host}{rest[len(netloc):]}"
    head, mark, query = rest.partition("?")
    query, hash_mark, fragment = query.partition("#")
    query = _QUERY_PASSWORD.sub(r"\1***", query)
    return f"{scheme}://{head}{mark}{query}{hash_mark}{fragment}"


_QUERY_PASSWORD = re.compile(r"(?i)((?:^|&)password=)[^&]*")


def _passwords(url: str) -> list[str]:
    if "://" not in url:
        return []
    parts = urlsplit(url)
    found = [value for key, value in parse_qsl(parts.query) if key.lower() == "password"]
    return [password for password in (parts.password, *found) if password]


def scrub(text: str, url: str) -> str:
    """``text`` with every occurrence of ``url``'s passwords masked (for driver error messages)."""
    text = text.replace(url, mask_url(url))
    for password in _passwords(url):
        text = text.replace(password, "***")
    return text


def parse_storage(storage: str | Path | None) -> StorageSpec:
    """Classify a ``storage`` argument (``None``, a file path, or a database URL)."""
    if storage is None:
        return StorageSpec("memory")
    if isinstance(storage, Path):
        return StorageSpec("journal", str(storage))
    if not isinstance(storage, str) or not storage.strip():
        raise TypeError(f"storage must be a file path or a database URL, got {storage!r}")
    if "://" not in storage:
        return StorageSpec("journal", storage)
    scheme = urlsplit(storage).scheme.split("+", 1)[0].lower()
    if scheme == "sqlite":
        return StorageSpec("sqlite", storage)
    if scheme in DATABASE_SCHEMES:
        return StorageSpec("database", storage)
    allowed = ", ".join(f"{name}://" for name in ("sqlite", *DATABASE_SCHEMES))
    raise ValueError(
        f"storage must be a file path or a database URL ({allowed}), got {mask_url(storage)!r}"
    )


def check_workers(spec: StorageSpec, workers: int) -> None:
    """Refuse a storage that cannot be shared by ``workers`` processes, saying why."""
    if workers <= 1:
        return
    if spec.kind == "sqlite":
        raise ValueError(
            f"storage {spec.shown} cannot be shared by workers={workers}: SQLite locks the whole "
            "file on every write, so parallel workers fail with 'database is locked' and lose "
            "trials; use a journal file (a plain path such as sweep.journal) on one machine, or a "
            "PostgreSQL URL for many"
        )
    if spec.kind == "memory":
        raise ValueError(
            f"workers={workers} needs a storage that processes share: pass a journal file path "
            "(such as sweep.journal) or a PostgreSQL URL"
        )


def open_storage(spec: StorageSpec, *, heartbeat_seconds: int = 60):
    """The Optuna storage for ``spec`` (raises ``ConnectionError`` with the password masked)."""
    import optuna

    if spec.kind == "memory":
        return optuna.storages.InMemoryStorage()
    if spec.kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        path = Path(spec.target).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        # the same lock file optuna-dashboard uses, so both can open the study at once
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return optuna.storages.JournalStorage(backend)
    return _open_database(spec.target, checks.integer("heartbeat_seconds", heartbeat_seconds, minimum=1))


def with_driver(url: str) -> str:
    """``postgresql://`` pinned to psycopg2 when psycopg 3 (SQLAlchemy's default) is missing."""
    if not url.startswith("postgresql://") or importlib.util.find_spec("psycopg") is not None:
        return url
    return "postgresql+psycopg2://" + url.removeprefix("postgresql://")


def _driver_hint(url: str) -> str:
    """What to install for ``url``'s database driver: ``lrkit[sweep]`` brings PostgreSQL's only."""
    if url.startswith("postgresql"):
        return "pip install 'lrkit[sweep]'"
    scheme = urlsplit(url).scheme
    return (
        f"lrkit[sweep] installs the PostgreSQL driver only: install a driver SQLAlchemy knows for "
        f"{scheme}:// and name it in the URL, such as pymysql in mysql+pymysql://"
    )


def _open_database(url: str, heartbeat_seconds: int):
    import optuna
    import sqlalchemy.exc

    shown, url = mask_url(url), with_driver(url)
    connect_args = {"connect_timeout": 10} if url.startswith("postgresql") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=RETRIES)
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs={"connect_args": connect_args, "pool_pre_ping": True},
                    heartbeat_interval=heartbeat_seconds,
                    grace_period=2 * heartbeat_seconds,
                    heartbeat_stale_trial_callback=retry,
                )
        except ImportError as error:
            raise ConnectionError(f"cannot open storage {shown}: {error} ({_driver_hint(url)})") from None
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            # workers starting together race to create the tables (a duplicate key, or "relation
            # ... already exists"); the loser retries once the winner's tables are there
            racing = isinstance(error, sqlalchemy.exc.IntegrityError) or "already exists" in reason
            if not racing:
                raise ConnectionError(f"cannot open storage {shown}: {scrub(reason, url)}") from None
            time.sleep(0.2 * (attempt + 1))
    raise ConnectionError(f"cannot open storage {shown}: tables could not be created")
