"""The interactive API docs at /api/docs: swagger-ui from the `swagger-ui-bundle` package,
served by us under /api/docs/static (no CDN: these machines may have no internet, and a page
that loads scripts from elsewhere runs someone else's code next to the operator's keys).

The page has no inline script: swagger-ui is started by /api/docs/static/start.js, so the API's
Content-Security-Policy can allow scripts from 'self' alone.

The swagger-ui that package ships (4.x) reads OpenAPI 3.0, and FastAPI writes 3.1: the page is
given the same document said in 3.0 (`openapi_30`) at /api/docs/openapi.json, while
/api/openapi.json stays the 3.1 original that clients and generators read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC = "/api/docs/static"
PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vpn-manager API</title>
<link rel="stylesheet" href="{STATIC}/swagger-ui.css">
<link rel="icon" type="image/png" href="{STATIC}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{STATIC}/swagger-ui-bundle.js"></script>
<script src="{STATIC}/start.js"></script>
</body>
</html>
"""
START = """window.ui = SwaggerUIBundle({
  url: "/api/docs/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
});
"""


def openapi_30(document: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI 3.1 document as FastAPI writes it, said in OpenAPI 3.0: `null` among a
    schema's types becomes `nullable`, `const` a one-value `enum`, numeric exclusive bounds the
    3.0 boolean ones, and a schema's `examples` list its first `example`."""
    converted = _schema_30(document)
    assert isinstance(converted, dict)
    converted["openapi"] = "3.0.3"
    return converted


def _schema_30(node: Any) -> Any:
    if isinstance(node, list):
        return [_schema_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = dict(node)
    for choice in ("anyOf", "oneOf"):
        options = out.get(choice)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [option for option in options if option != {"type": "null"}]
            del out[choice]
            out["nullable"] = True
            if len(rest) == 1 and "$ref" in rest[0]:
                out["allOf"] = rest
            elif len(rest) == 1:
                out.update(rest[0])
            else:
                out[choice] = rest
    out = {key: _schema_30(value) for key, value in out.items()}
    if out.get("type") == "null":  # a field that can only be null
        del out["type"]
        out["nullable"] = True
    if "const" in out and isinstance(out.get("const"), str | int | float | bool):
        out["enum"] = [out.pop("const")]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = out.get(bound)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[plain] = value
            out[bound] = True
    examples = out.get("examples")
    if isinstance(examples, list) and "schema" not in out and "in" not in out:
        del out["examples"]
        if examples:
            out["example"] = examples[0]
    return out


def swagger_dir() -> Path:
    from swagger_ui_bundle import swagger_ui_path

    return Path(str(swagger_ui_path))


def mount(app: FastAPI) -> None:
    @app.get("/api/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get("/api/docs/openapi.json", include_in_schema=False)
    async def document_30() -> JSONResponse:
        return JSONResponse(openapi_30(app.openapi()))

    @app.get(f"{STATIC}/start.js", include_in_schema=False)
    async def start() -> Response:
        return Response(START, media_type="text/javascript")

    app.mount(STATIC, StaticFiles(directory=swagger_dir()), name="swagger-ui")
