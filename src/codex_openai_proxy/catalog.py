"""Codex's own model catalog (`codex debug models`), as the models and efforts clients see (pure).

The installed Codex knows which models it offers and which reasoning efforts each takes; a
client listing models, or asking for the newest effort levels, must see exactly that. The
catalog is JSON: `{"models": [{slug, display_name, description, visibility ("list" or
"hide"), default_reasoning_level, supported_reasoning_levels: [{effort, description}]}]}`.

`ModelCatalog` answers three questions: what `/v1/models` lists, which Codex model and effort
a requested model id means (with `PROXY_EFFORT_MODELS`, ids like `gpt-5.5:high` carry both),
and whether an effort is one the model takes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .chat_request import KNOWN_EFFORTS
from .errors import ApiError, invalid


@dataclass(frozen=True)
class CatalogModel:
    slug: str
    display_name: str
    description: str = ""
    efforts: tuple[str, ...] = ()
    default_effort: str | None = None
    listed: bool = True
    priority: int = 0  # Codex lists (and defaults to) models in this order


class CatalogError(ValueError):
    """The catalog could not be read; the message says why."""


def load_catalog_json(text: str) -> dict[str, Any]:
    """The catalog `codex debug models` printed, as JSON; raises CatalogError if it is not."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise CatalogError(f"`codex debug models` did not print JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise CatalogError("`codex debug models` printed no `models` list")
    return data


def parse_catalog(text: str) -> list[CatalogModel]:
    return catalog_models(load_catalog_json(text))


def catalog_models(data: dict[str, Any]) -> list[CatalogModel]:
    entries = data.get("models") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise CatalogError("`codex debug models` printed no `models` list")
    models = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("slug"), str):
            continue  # an entry this proxy cannot use is left out, not fatal
        levels = entry.get("supported_reasoning_levels")
        efforts = tuple(
            level["effort"] for level in (levels if isinstance(levels, list) else [])
            if isinstance(level, dict) and isinstance(level.get("effort"), str)
        )
        models.append(CatalogModel(
            slug=entry["slug"],
            display_name=str(entry.get("display_name") or entry["slug"]),
            description=str(entry.get("description") or ""),
            efforts=efforts,
            default_effort=entry.get("default_reasoning_level")
            if isinstance(entry.get("default_reasoning_level"), str) else None,
            listed=entry.get("visibility") == "list",
            priority=entry["priority"] if isinstance(entry.get("priority"), int) else 0,
        ))
    return models


#: Catalog keys that bring Codex's own agent harness back, whatever the flags say: its
#: JavaScript "code mode" (every client tool reachable only through Codex's `exec` tool), its
#: multi-agent tools and instructions, and its apply_patch tool. Checked on codex-cli 0.169.0:
#: each one, left in, puts its tools or messages back into the model's request.
HARNESS_KEYS = ("tool_mode", "multi_agent_version", "apply_patch_tool_type")


def lean_catalog(data: dict[str, Any]) -> dict[str, Any]:
    """The catalog the proxy runs Codex with: Codex's own, each model without its harness
    keys and with no experimental tools (Codex's clock and the like), everything else as is
    (instructions templates, context windows, efforts, reasoning and verbosity settings)."""
    models = []
    for entry in data.get("models") or []:
        if isinstance(entry, dict):
            entry = {key: value for key, value in entry.items() if key not in HARNESS_KEYS}
            entry["experimental_supported_tools"] = []
            models.append(entry)
    return {**data, "models": models}


#: The model codex-cli 0.169.0 runs when nothing says which (its catalog's first): the default
#: when neither CODEX_MODEL, the user's Codex config nor a readable catalog names one.
PINNED_DEFAULT_MODEL = "gpt-6.1-sol"
#: CODEX_MODEL values that mean "whatever Codex itself would run".
CODEX_OWN_DEFAULT = ("", "default")


@dataclass(frozen=True)
class ModelChoice:
    """What a requested model id means for Codex."""

    codex_model: str
    effort_from_id: str | None = None  # from an id such as gpt-5.5:high


@dataclass
class ModelCatalog:
    configured_model: str  # CODEX_MODEL: a model id, or "" (or "default") for Codex's own
    effort_models: bool = False  # PROXY_EFFORT_MODELS
    models: list[CatalogModel] = field(default_factory=list)
    problem: str | None = None  # why the catalog is missing, if it is
    user_model: str | None = None  # `model` in the user's Codex config.toml

    @property
    def default_model(self) -> str:
        """The model of requests that name none (and of the id `default`), listed first:
        CODEX_MODEL; else what Codex itself would run: the user's Codex config's `model`, or
        the catalog's first listed model (Codex's own default), or the pinned version's."""
        if self.configured_model not in CODEX_OWN_DEFAULT:
            return self.configured_model
        if self.user_model:
            return self.user_model
        listed = sorted((m for m in self.models if m.listed), key=lambda m: m.priority)
        return listed[0].slug if listed else PINNED_DEFAULT_MODEL

    def _by_slug(self) -> dict[str, CatalogModel]:
        return {model.slug: model for model in self.models}

    def listed(self) -> list[tuple[str, CatalogModel | None, str | None]]:
        """(id, its catalog entry, effort) for /v1/models: CODEX_MODEL first, then the catalog's
        listed models in catalog order, then (if enabled) their effort variants."""
        by_slug = self._by_slug()
        first = by_slug.get(self.default_model)
        rows: list[tuple[str, CatalogModel | None, str | None]] = [
            (self.default_model, first, None)]
        shown = [m for m in self.models if m.listed and m.slug != self.default_model]
        rows += [(model.slug, model, None) for model in shown]
        if self.effort_models:
            for model in ([first] if first else []) + shown:
                rows += [(f"{model.slug}:{effort}", model, effort) for effort in model.efforts]
        return rows

    def resolve(self, model_id: str) -> ModelChoice:
        if model_id == "default":
            return ModelChoice(self.default_model)
        if self.effort_models and ":" in model_id:
            slug, _, effort = model_id.rpartition(":")
            if effort in KNOWN_EFFORTS and slug:
                return ModelChoice(slug, effort)
        return ModelChoice(model_id)

    def check_effort(self, codex_model: str, effort: str | None, param: str) -> None:
        """A 400 listing the model's efforts when it does not take `effort`.

        A model the catalog does not know gets any known level: Codex decides.
        """
        model = self._by_slug().get(codex_model)
        if effort is None or model is None or not model.efforts or effort in model.efforts:
            return
        raise _effort_error(model, effort, param)


def _effort_error(model: CatalogModel, effort: str, param: str) -> ApiError:
    return invalid(
        f"Model '{model.slug}' does not support reasoning effort '{effort}'; supported: "
        f"{', '.join(model.efforts)}.",
        param,
        "invalid_reasoning_effort",
    )


def model_object(model_id: str, entry: CatalogModel | None, effort: str | None,
                 created: int) -> dict[str, Any]:
    """OpenAI's model object, plus what Codex's catalog says about it."""
    body: dict[str, Any] = {"id": model_id, "object": "model", "created": created,
                            "owned_by": "codex-openai-proxy"}
    if entry is not None:
        body["display_name"] = entry.display_name + (f" ({effort})" if effort else "")
        body["description"] = entry.description
        body["supported_reasoning_efforts"] = [effort] if effort else list(entry.efforts)
        body["default_reasoning_effort"] = effort or entry.default_effort
    return body
