"""The program each sandbox runs (standard library only; never imported by llm_tts itself).

Started as ``python -I -c <this file's text> <control fd> <limits json> [extra sys.path ...]``
inside bubblewrap. It lowers its own resource limits first (hard and soft, so the code it runs
cannot raise them again), warms up, tells the parent it is ready, then waits for ONE request on
stdin: ``{"replay": [code, ...], "code": code}``. The replayed blocks rebuild the trajectory's
state with their output thrown away; then the new block runs with stdout and stderr going to
the parent, which caps and times them. Like a notebook cell, a final expression's value is
printed. The control fd carries one byte per event: R (ready), S (replay done, block starts),
O (block finished), E (block raised). The process is used once and then killed by the parent.
"""

import ast
import json
import os
import random
import resource
import sys
import traceback

_LIMITS = {
    "cpu_seconds": resource.RLIMIT_CPU,
    "memory_bytes": resource.RLIMIT_AS,
    "processes": resource.RLIMIT_NPROC,
    "file_bytes": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
}


def main() -> None:
    control = int(sys.argv[1])
    for name, value in json.loads(sys.argv[2]).items():
        resource.setrlimit(_LIMITS[name], (value, value))
    sys.path[:0] = sys.argv[3:]
    os.write(control, b"R")
    request = json.loads(sys.stdin.buffer.read() or b"{}")
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    random.seed(0)  # a replay must rebuild the same state: same seed in every sandbox
    keep_out, keep_err = os.dup(1), os.dup(2)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    for block in request.get("replay", []):
        run_block(block, namespace)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(keep_out, 1)
    os.dup2(keep_err, 2)
    os.write(control, b"S")
    ok = run_block(request.get("code", ""), namespace)
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(control, b"O" if ok else b"E")
    os._exit(0)


def run_block(code: str, namespace: dict) -> bool:
    """Run one block like a notebook cell; a traceback goes to stderr. False when it raised."""
    try:
        tree = ast.parse(code, "<tool_call>", "exec")
        last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        if last is not None:
            tree.body.pop()
        exec(compile(tree, "<tool_call>", "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<tool_call>", "eval"), namespace)
            if value is not None:
                print(repr(value))
        return True
    except BaseException:  # noqa: BLE001  the code's own error (SystemExit included) is its output, not ours
        kind, error, tb = sys.exc_info()
        sys.stderr.write("".join(traceback.format_exception(kind, error, tb.tb_next if tb else None)))
        return False


if __name__ == "__main__":
    main()
