"""The package's shape: a sans-I/O core that never touches the event loop or the web stack, and
modules that read top to bottom (app -> runs -> engines -> protocol -> wire format), each
importing only what is below it and nothing private of another."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import codex_openai_proxy

PACKAGE = Path(codex_openai_proxy.__file__).parent

#: Every module, from the top (the command line) to the bottom (the error shape). A module may
#: import only modules below it.
LAYERS = [
    "cli", "server", "app", "lifetime", "connections", "metrics", "runs", "spares",
    "engines", "engines.exec", "engines.app_server", "engines.base",
    "codex_setup", "codex_probe", "child", "sentinel", "scratch",
    "openai_format", "responses_format", "answer", "plan_limits", "app_server_protocol",
    "exec_protocol", "rollout", "native_history", "prompt", "catalog", "responses_request",
    "chat_request", "image_header", "codex_cli", "codex_events", "settings", "log_text", "errors",
]

#: The sans-I/O core: validation, prompt, protocol sessions, answer policy, wire formats.
PURE = ["errors", "log_text", "settings", "codex_events", "codex_cli", "chat_request",
        "image_header", "catalog", "prompt", "native_history", "rollout", "exec_protocol",
        "app_server_protocol", "answer", "responses_request", "responses_format",
        "openai_format", "plan_limits"]
IO_LIBRARIES = ["trio", "quart", "quart_trio", "hypercorn", "werkzeug", "httpx",
                "prometheus_client"]


def module_files() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and parts != ("__main__",):
            found[".".join(parts)] = path
    return found


def internal_imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) for each import of one of the package's modules."""
    package_parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package_parts[: len(package_parts) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            names = [alias.name for alias in node.names]
            if not node.module:  # `from . import errors`: the names are modules
                found += [(".".join([*base, n]).strip("."), []) for n in names]
            else:
                found.append((target, names))
    return found


def test_every_module_has_its_place() -> None:
    assert sorted(module_files()) == sorted(LAYERS)


@pytest.mark.parametrize("name", LAYERS)
def test_modules_import_only_what_is_below_them(name: str) -> None:
    path = module_files()[name]
    for target, names in internal_imports(name, path):
        if target in ("", "__version__") or target not in LAYERS:
            assert target in ("", "__version__") or names == ["__version__"], target
            continue
        assert LAYERS.index(target) > LAYERS.index(name), f"{name} imports {target}, above it"
        private = [n for n in names if n.startswith("_")]
        assert not private, f"{name} reaches into {target}'s privates: {private}"


@pytest.mark.parametrize("name", PURE)
def test_the_core_never_imports_io_libraries(name: str) -> None:
    code = (f"import sys, codex_openai_proxy.{name}; "
            f"print(sorted(m for m in {IO_LIBRARIES!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]", f"{name} pulls in {result.stdout.strip()}"
