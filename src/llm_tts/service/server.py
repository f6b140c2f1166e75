"""``llm-tts serve``: flags, then uvicorn on the app built from them."""

from __future__ import annotations

import argparse
import os
import sys

from llm_tts.service.settings import DEFAULT_PORT, ServiceSettings, add_arguments


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``llm-tts serve``: where to listen, then one per setting (see
    :mod:`llm_tts.service.settings`), each overriding its environment variable."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=None, help=f"port (default: $PORT or {DEFAULT_PORT})")
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    add_arguments(parser)


def settings_from_args(args: argparse.Namespace) -> ServiceSettings:
    return ServiceSettings.from_args(args)


def resolve_port(port: int | None) -> int:
    if port is not None:
        return port
    raw = os.environ.get("PORT", "")
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        from llm_tts.errors import InvalidParameterError

        raise InvalidParameterError("PORT", raw, "must be an integer in [1, 65535]")
    return int(raw)


def run_serve(args: argparse.Namespace) -> int:
    """Build the app (the model loads at startup) and serve until interrupted."""
    import uvicorn

    from llm_tts.engine import TTSEngine
    from llm_tts.errors import LLMTTSError
    from llm_tts.service.application import create_app
    from llm_tts.service.request_context import serve_log_config
    from llm_tts.spans import configure_from_environment

    try:
        settings = settings_from_args(args)
        port = resolve_port(args.port)
        configure_from_environment()  # span exporters from OTEL_* (with the otel extra)
        # Load the model before binding, so a bad --model fails here with its own message.
        engine = TTSEngine.create(
            settings.model, settings.backend, prm_model=settings.prm_model, **settings.backend_options()
        )
    except LLMTTSError as e:
        print(f"llm-tts serve: {e}", file=sys.stderr)
        return 2
    app = create_app(engine, settings=settings, close_engine=True)
    # The access log shows request lines only; headers (and any keys in them) are never logged.
    # Every line carries its request's id.
    uvicorn.run(app, host=args.host, port=port, log_level=args.log_level, log_config=serve_log_config())
    return 0
