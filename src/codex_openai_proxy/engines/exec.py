"""The exec engine: `codex exec --json`, the conversation as one prompt on stdin.

`codex exec` prints each agent message only once it is complete, so an answer arrives in whole
messages. It takes no client tools (see `choose_engine`). The argv is built from the flags the
installed build accepts, captured when the run is prepared: a Codex re-probed meanwhile does not
change a run that has started.

Never built here: approval or reasoning flags, which `codex exec` 0.169.0 rejects as unexpected
arguments (exec always runs with approval `never`; effort is `-c model_reasoning_effort=...`).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path

from ..chat_request import ChatRequest
from ..child import Child, ChildLaunch
from ..codex_cli import CodexCapabilities, config_args, login_overrides, toml_string
from ..codex_setup import CodexSetup
from ..exec_protocol import ExecJsonReader, PlainOutputReader
from ..prompt import check_prompt_length, number_images, render_prompt
from ..settings import EngineName, Settings
from .base import EventSink, Workspace


def exec_argv(
    codex_bin: str,
    caps: CodexCapabilities,
    *,
    model: str | None,
    reasoning_effort: str | None,
    login_method: str,
    scratch_dir: str,
    image_paths: Sequence[str] = (),
) -> list[str]:
    """`codex exec ... -`: the prompt always goes on stdin, so no message is ever read as a flag
    and no prompt size runs into the argv limit. `model` None lets Codex's config choose."""
    argv = [codex_bin, "exec"]
    if caps.json_events:
        argv.append("--json")
    for path in image_paths:
        argv += ["--image", path]
    if caps.has("--skip-git-repo-check"):
        argv.append("--skip-git-repo-check")
    if caps.has("--ephemeral"):
        argv.append("--ephemeral")
    if caps.has("--sandbox"):
        argv += ["--sandbox", "read-only"]
    if caps.has("--cd"):
        argv += ["-C", scratch_dir]
    if model is not None:
        argv += ["-m", model]
    if caps.has("--config"):
        overrides = login_overrides(login_method)
        if reasoning_effort is not None:
            overrides.insert(0, ("model_reasoning_effort", toml_string(reasoning_effort)))
        argv += config_args(overrides)
    # `--image` takes several values: `--` ends the options so that the final `-` (read the
    # prompt from stdin) can never be taken for one more image.
    argv += ["--", "-"]
    return argv


def write_images(request: ChatRequest, directory: Path) -> list[str]:
    """Write the request's inline images into Codex's working directory, named as the prompt
    names them; their paths, in order."""
    paths = []
    for numbered in number_images(request.messages):
        path = directory / numbered.filename
        path.write_bytes(numbered.image.data)
        paths.append(str(path))
    return paths


class ExecRun:
    engine: EngineName = "exec"
    spare_key: Hashable | None = None  # each run's argv is its own: no spares

    def __init__(self, request: ChatRequest, setup: CodexSetup, settings: Settings,
                 workspace: Workspace) -> None:
        install = setup.install
        self._env = setup.env
        self._capabilities = install.capabilities
        self.prompt = render_prompt(request.messages)
        # Before the images are written: a prompt too long for Codex is refused with nothing
        # written for it.
        check_prompt_length(self.prompt)
        self.argv = exec_argv(
            install.path or settings.codex_bin, install.capabilities,
            model=request.codex_model_arg, reasoning_effort=request.reasoning_effort,
            login_method=settings.codex_login_method, scratch_dir=str(workspace.directory),
            image_paths=write_images(request, workspace.directory),
        )

    def launch(self, workspace: Workspace) -> ChildLaunch:
        return ChildLaunch(tuple(self.argv), workspace.directory, self._env)

    def describe_input(self) -> str:
        return self.prompt

    def release(self) -> None:
        pass  # everything it made is in the workspace

    async def drive(self, child: Child, sink: EventSink) -> None:
        """Feed the prompt, then translate stdout until the answer ends or the output does."""
        await child.send(self.prompt.encode("utf-8"))
        await child.close_stdin()
        reader = ExecJsonReader() if self._capabilities.json_events else PlainOutputReader()
        while not sink.answered and (line := await child.read_line()) is not None:
            events = reader.feed(line)
            del line  # a long line is not kept while the client takes its time over it
            await sink.deliver(events)
        if not sink.answered:
            await sink.deliver(reader.finish(await child.wait_exit(), child.stderr_tail()))
