"""How the proxy finds and sets Codex up for its runs: the install, the user's Codex home, a
Codex home per child, and the model catalog the proxy writes (I/O).

Each app-server child gets a Codex home of its own (`CODEX_HOME`), made of links to the
user's: `config.toml` (the model provider and its settings), `auth.json` (the login; Codex
writes a refreshed token through the link, in place), `models_cache.json` (so that a fresh
home does not fetch the model list before its first thread) and `installation_id`. Nothing
else of the user's home is seen: not their global `AGENTS.md`, memories, skills or plugins,
and the proxy's threads never show up among the user's sessions. The child's rollout file
(see `rollout.py`) is written into it, and the whole home goes with the run.

Credentials kept in the system keyring (`cli_auth_credentials_store = "keyring"`, or "auto"
without an `auth.json`) are found by the Codex home's path, so for them a child runs in the
user's own home instead; the rollout file is removed after the run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from .catalog import CatalogError, ModelCatalog, catalog_models, lean_catalog
from .child import Sentinel
from .codex_probe import CodexInstall, probe_codex, read_catalog
from .settings import Settings

log = logging.getLogger(__name__)

#: The user's files a child's own home links to.
LINKED_FILES = ("config.toml", "auth.json", "models_cache.json", "installation_id")


@dataclass(frozen=True)
class UserCodexHome:
    path: Path
    #: MCP servers the user configured: the proxy switches each off for its children.
    mcp_servers: tuple[str, ...] = ()
    #: The login is in the system keyring, which only a child in this very home can read.
    keyring_login: bool = False
    #: The `model` the user's Codex config chooses, if it chooses one.
    model: str | None = None
    #: The model provider it chooses (Codex's default: `openai`).
    model_provider: str = "openai"
    #: Why `config.toml` could not be read, if it could not.
    problem: str | None = None


def user_codex_home(env: Mapping[str, str]) -> UserCodexHome:
    """The Codex home the user's own `codex` uses, and what the proxy needs to know of it."""
    path = Path(env.get("CODEX_HOME") or Path(env.get("HOME", "~")).expanduser() / ".codex")
    config: dict[str, Any] = {}
    problem = None
    try:
        config = tomllib.loads((path / "config.toml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        problem = f"{path / 'config.toml'} could not be read: {error}"
    servers = config.get("mcp_servers")
    store = config.get("cli_auth_credentials_store", "file")
    keyring = store == "keyring" or (store == "auto" and not (path / "auth.json").exists())
    return UserCodexHome(
        path=path,
        mcp_servers=tuple(sorted(servers)) if isinstance(servers, dict) else (),
        keyring_login=keyring,
        model=config["model"] if isinstance(config.get("model"), str) else None,
        model_provider=config["model_provider"]
        if isinstance(config.get("model_provider"), str) else "openai",
        problem=problem,
    )


def make_child_home(user: UserCodexHome, directory: Path, seed: Path | None = None) -> Path:
    """A fresh Codex home for one child, linked to the user's login and settings, with the
    databases of `seed` (see `CodexLocator.seed_home`) if there is one."""
    directory.mkdir(mode=0o700)
    for name in LINKED_FILES:
        if (user.path / name).exists():
            (directory / name).symlink_to(user.path / name)
    if seed is not None:
        for source in seed.glob("*.sqlite*"):
            if source.is_file() and not source.is_symlink():
                shutil.copyfile(source, directory / source.name)
    return directory


def write_lean_catalog(raw_catalog: dict[str, Any], directory: Path) -> Path:
    """Write the catalog children run with (see `catalog.lean_catalog`); its path."""
    path = directory / "model-catalog.json"
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(lean_catalog(raw_catalog)), encoding="utf-8")
    partial.replace(path)  # a child starting meanwhile reads the old file or the new one
    return path


@dataclass(frozen=True)
class CodexSetup:
    """Everything a run needs to know of how Codex is installed and set up."""

    install: CodexInstall
    user_home: UserCodexHome
    #: The lean model catalog the proxy wrote, or None when Codex's could not be read.
    catalog_path: Path | None = None
    #: The environment every Codex child starts with.
    env: Mapping[str, str] = field(default_factory=dict)
    #: Counts the refreshes (SIGHUP): what was set up before one is not used after it.
    generation: int = 0
    #: A Codex home that went through `initialize` once, whose databases each child's home
    #: starts from (see `CodexLocator.seed_home`); None when there is none.
    seed_home: Path | None = None


#: Variables the child must not see: the proxy's own secret is none of Codex's business.
PRIVATE_ENV = ("PROXY_API_KEY",)
#: Set for every Codex process. codex-cli 0.169.0's app-server, without a ChatGPT login,
#: retries its remote control connection once a second for as long as it lives, and logs each
#: try to its SQLite log (~3 rows a second): idle work a proxy's children never need. The
#: variable is internal to Codex and may go; without it, that is all that is lost.
CODEX_ENV = {"CODEX_INTERNAL_APP_SERVER_REMOTE_CONTROL_DISABLED": "1"}
#: Commands Codex runs at start-up that a proxy does without: `initialize` runs
#: `lsb_release -a` twice (~40 ms, blocking) only to name the OS in its User-Agent, which it
#: then takes from /etc/os-release instead. A script of the same name that fails, first on the
#: child's PATH, saves that; the model never runs commands (Codex's shell tool is off).
SHIMMED_COMMANDS = ("lsb_release",)


class CodexLocator:
    """The Codex install and its setup, found at start-up, and again while Codex is missing.

    A proxy started before Codex was installed (or logged in) must start working once it is,
    without a restart, so a missing Codex is looked for again on each request. The model
    catalog and the user's Codex home are read at start-up and on SIGHUP (`refresh`).
    """

    def __init__(self, settings: Settings, env: Mapping[str, str], runtime_dir: Path,
                 sentinel: Sentinel | None = None) -> None:
        self._settings = settings
        self._runtime_dir = runtime_dir
        #: Told of every Codex process group (probes included), to kill should the proxy die.
        self.sentinel = sentinel
        #: The environment every Codex process gets (probes included): the proxy's own, less
        #: its secrets, with Codex's start-up shortcuts.
        shims = runtime_dir / "shims"
        shims.mkdir(exist_ok=True)
        for command in SHIMMED_COMMANDS:
            (shims / command).write_text("#!/bin/sh\nexit 1\n")
            (shims / command).chmod(0o755)
        self.env = {k: v for k, v in env.items() if k not in PRIVATE_ENV}
        self.env.update(CODEX_ENV)
        self.env["PATH"] = os.pathsep.join(filter(None, [str(shims), self.env.get("PATH")]))
        self.install: CodexInstall | None = None
        self.user_home = user_codex_home(self.env)
        self.catalog_path: Path | None = None
        #: Codex creates and migrates six SQLite databases the first time it starts in a home
        #: (~90 ms of CPU and of `initialize`'s time on codex-cli 0.169.0); a child's own
        #: home starts from copies of those a seed child made once (see
        #: `engines.app_server.seed_home`), which saves most of it.
        self.seed_home: Path | None = None
        #: Set once the children's setup (seed home, spares) follows the latest refresh.
        self.children_set_up = trio.Event()
        self.generation = 0
        self._lock = trio.Lock()

    async def get(self) -> CodexSetup:
        async with self._lock:
            if self.install is None or not self.install.found:
                self.install = await probe_codex(self._settings.codex_bin, self.env,
                                                 self.sentinel)
                if self.install.found:
                    log.info("using Codex %s at %s", self.install.capabilities.version,
                             self.install.path)
                else:
                    log.warning("%s", self.install.problem)
            return CodexSetup(self.install, self.user_home, self.catalog_path,
                              {**self.env, **self.install.env}, self.generation,
                              self.seed_home)

    def forget(self) -> None:
        self.install = None

    def install_path(self) -> str:
        """The Codex the proxy runs (for messages): the one found, else CODEX_BIN."""
        return (self.install.path if self.install else None) or self._settings.codex_bin

    async def refresh(self, catalog: ModelCatalog) -> None:
        """Read the user's Codex home and Codex's model catalog again; fill `catalog` (for
        /v1/models) and write the lean catalog children run with. If the catalog cannot be
        read, CODEX_MODEL stays alone in /v1/models, children run with Codex's own catalog,
        and the log says why."""
        self.generation += 1
        self.user_home = user_codex_home(self.env)
        if self.user_home.problem:
            log.warning("%s", self.user_home.problem)
        catalog.user_model = self.user_home.model
        setup = await self.get()
        install = setup.install
        if not install.found or install.path is None:
            catalog.models, catalog.problem = [], install.problem or "Codex not found"
        else:
            try:
                raw = await read_catalog(install.path, setup.env, self.sentinel)
                catalog.models, catalog.problem = catalog_models(raw), None
                self.catalog_path = write_lean_catalog(raw, self._runtime_dir)
            except (CatalogError, OSError) as error:
                catalog.models, catalog.problem = [], str(error)
        if catalog.problem:
            log.warning("Codex's model catalog could not be read, so /v1/models lists only %s: "
                        "%s", catalog.default_model, catalog.problem)
        else:
            log.info("Codex's model catalog: %d models, %d listed", len(catalog.models),
                     sum(model.listed for model in catalog.models))
        log.info("default model: %s", catalog.default_model)
