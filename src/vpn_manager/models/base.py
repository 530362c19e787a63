from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from vpn_manager.errors import InvalidInput, quoted

M = TypeVar("M", bound=BaseModel)


def validated(
    model: type[M], data: Any, *, where: str = "", context: dict[str, Any] | None = None
) -> M:
    """Validate `data` as `model`, turning the first problem into one InvalidInput sentence."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise invalid_input(exc, where=where) from None


def invalid_input(exc: ValidationError, *, where: str = "") -> InvalidInput:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "input"
    reason = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    shown = f" {quoted(value)}" if isinstance(value, str | int) and field != "input" else ""
    prefix = f"{where}: " if where else ""
    return InvalidInput(f"{prefix}invalid {field}{shown}: {reason}.")
