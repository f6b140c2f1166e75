"""``llm-tts serve``: flags, then uvicorn on the app built from them."""

from __future__ import annotations

import argparse
import os
import sys

from llm_tts.service.settings import DEFAULT_PORT, ServiceSettings


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``llm-tts serve``; each overrides its ``LLM_TTS_*`` environment variable."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=None, help=f"port (default: $PORT or {DEFAULT_PORT})")
    parser.add_argument("--model", default=None, help="model folder or hub id (default: embedded SmolLM2; $LLM_TTS_MODEL)")
    parser.add_argument("--backend", default=None, help="auto, vllm, transformers or openai ($LLM_TTS_BACKEND)")
    parser.add_argument("--prm-model", default=None, help="PRM model for tts_scorer=prm ($PRM_MODEL_PATH)")
    parser.add_argument(
        "--api-key", default=None,
        help="require 'Authorization: Bearer <key>' on /v1 routes (prefer $LLM_TTS_API_KEY: flags show in ps)",
    )
    parser.add_argument("--max-concurrency", type=int, default=None, help="requests run at once; more get 429 (default 4)")
    parser.add_argument("--deadline", type=float, default=None, help="seconds a request may run before 408 (default 600)")
    parser.add_argument("--max-body-bytes", type=int, default=None, help="largest request body (default 1 MiB)")
    parser.add_argument("--max-budget", type=int, default=None, help="largest strategy size per request (default 64)")
    parser.add_argument("--max-tokens", type=int, default=None, help="largest max_tokens a request may ask for")
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default info)")


def settings_from_args(args: argparse.Namespace) -> ServiceSettings:
    return ServiceSettings.from_env(
        model=args.model,
        backend=args.backend,
        prm_model=args.prm_model,
        api_key=args.api_key,
        max_concurrency=args.max_concurrency,
        deadline_s=args.deadline,
        max_body_bytes=args.max_body_bytes,
        max_budget=args.max_budget,
        max_tokens=args.max_tokens,
    )


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

    try:
        settings = settings_from_args(args)
        port = resolve_port(args.port)
        # Load the model before binding, so a bad --model fails here with its own message.
        engine = TTSEngine.create(settings.model, settings.backend, prm_model=settings.prm_model)
    except LLMTTSError as e:
        print(f"llm-tts serve: {e}", file=sys.stderr)
        return 2
    app = create_app(engine, settings=settings, close_engine=True)
    # The access log shows request lines only; headers (and any keys in them) are never logged.
    uvicorn.run(app, host=args.host, port=port, log_level=args.log_level)
    return 0
