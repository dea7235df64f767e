"""`ostinato serve`: parse the options, build the daemon, run it until it stops."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import importlib.util
import ipaddress
import logging
import os
import sys
from pathlib import Path

from ostinato.protocol.catalog import client_methods
from ostinato.protocol.codec import DEFAULT_MAX_FRAME_BYTES
from ostinato.protocol.home import DEFAULT_HOME, EXIT_HOME_SERVED, parse_tcp, resolve_home

from . import bridge, logs, services
from .access import (
    DEFAULT_AUTH_FAILURES,
    DEFAULT_AUTH_WINDOW,
    PRIVATE_UMASK,
    private_home,
    write_token_file,
)
from .engine.load import DEFAULT_MAX_PIPELINE_BYTES
from .home import HomeLock, HomeLocked
from .server import lifecycle, mcp
from .server.app import (
    DEFAULT_FRAME_TIMEOUT,
    DEFAULT_MAX_BUFFERED_BYTES,
    Daemon,
    DaemonOptions,
)
from .server.dispatch import Dispatcher
from .server.transports import StartupError
from .services import HandlerHook
from .store.db import DEFAULT_WAL_MAX_BYTES

log = logging.getLogger("ostinato.daemon")



EXECUTORS = ("inline", "processes", "ray")  # where runs execute (docs/scale-out.md)

def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `ostinato serve` (shared with `python -m ostinato.daemon`)."""
    where = parser.add_argument_group(
        "transports (besides the home's well-known socket, which every daemon listens on)")
    where.add_argument("--stdio", action="store_true", help="serve one client on stdin/stdout")
    where.add_argument("--socket", metavar="PATH", type=Path, help="listen on a unix socket")
    where.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP (port 0: any free)")
    parser.add_argument("--home", type=Path, default=None,
                        help=f"state directory (default $OSTINATO_HOME or ./{DEFAULT_HOME})")
    parser.add_argument("--token", default=None,
                        help="access token checked in initialize on every transport (default "
                             "$OSTINATO_TOKEN, which other local users cannot read in the "
                             "process list); required for a non-loopback TCP address. "
                             "Without it, loopback TCP needs a token the daemon generates "
                             "and writes to HOME/token (mode 0600)")
    access = parser.add_argument_group("access")
    access.add_argument("--auth-failures", type=int, default=DEFAULT_AUTH_FAILURES,
                        metavar="N", help="failed initialize attempts from one address "
                        f"within --auth-window before it is refused (default "
                        f"{DEFAULT_AUTH_FAILURES})")
    access.add_argument("--auth-window", type=float, default=DEFAULT_AUTH_WINDOW,
                        metavar="SECONDS", help="the window of --auth-failures (default "
                        f"{DEFAULT_AUTH_WINDOW:g})")
    access.add_argument("--allow-key-env", action="append", default=[], metavar="NAME",
                        help="an environment variable a client may name in a provider's "
                             "api_key_env, besides the documented OPENAI_API_KEY and "
                             "ANTHROPIC_API_KEY (repeatable; also $OSTINATO_ALLOWED_KEY_ENV, "
                             "comma-separated)")
    parser.add_argument("--max-frame-bytes", type=int, default=DEFAULT_MAX_FRAME_BYTES,
                        help="largest accepted message (default 64 MiB)")
    parser.add_argument("--max-pipeline-bytes", type=int, default=DEFAULT_MAX_PIPELINE_BYTES,
                        help="largest pipeline source loaded, from a file or inline "
                             "(default 1 MiB)")
    parser.add_argument("--max-buffered-bytes", type=int, default=DEFAULT_MAX_BUFFERED_BYTES,
                        help="budget of unfinished frames over all connections; the one "
                             "that passes it gets -32007 and is closed (default 256 MiB)")
    parser.add_argument("--frame-timeout", type=float, default=DEFAULT_FRAME_TIMEOUT,
                        metavar="SECONDS", help="close a socket connection whose unfinished "
                        "frame gets no bytes for this long (default 60)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-max-bytes", type=int, default=logs.DEFAULT_LOG_MAX_BYTES,
                        metavar="N", help="rotate daemon.log past this size (default 10 MiB)")
    parser.add_argument("--log-files", type=int, default=logs.DEFAULT_LOG_FILES, metavar="N",
                        help="rotated logs kept, daemon.log.1 (newest) to daemon.log.N "
                             f"(default {logs.DEFAULT_LOG_FILES})")
    parser.add_argument("--wal-max-bytes", type=int, default=DEFAULT_WAL_MAX_BYTES,
                        metavar="N", help="truncate the store's WAL once it passes this size "
                        "(default 64 MiB); it is also truncated when the daemon is idle")
    parser.add_argument("--extension", action="append", default=[], metavar="MODULE",
                        help="import MODULE (a dotted name or a .py file) and call its "
                             "register(dispatcher) to add methods, and its optional "
                             "register_handlers(registry) to add node handler types; "
                             "repeatable")
    parser.add_argument("--executor", choices=EXECUTORS,
                        default=os.environ.get("OSTINATO_EXECUTOR") or "inline",
                        help="where runs execute: in the daemon's process (default, or "
                             "$OSTINATO_EXECUTOR), on a pool of local worker processes, or "
                             "on actors of a Ray cluster (docs/scale-out.md)")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="workers of --executor processes or ray (default: one per core "
                             "of the machine, or of the Ray cluster)")
    parser.add_argument("--ray-address", default=os.environ.get("OSTINATO_RAY_ADDRESS") or None,
                        metavar="ADDRESS",
                        help="--executor ray: the cluster to join, as ray.init(address=...) "
                             "takes it (default $OSTINATO_RAY_ADDRESS, else $RAY_ADDRESS, "
                             "else a local cluster the daemon starts)")
    parser.add_argument("--no-uvloop", action="store_true", help="use asyncio's own loop")
    # How `ostinato daemon start` learns that the daemon it started in the background
    # listens: one line on this inherited pipe, then the daemon leaves stdio for /dev/null.
    parser.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def options_from_args(args: argparse.Namespace) -> DaemonOptions:
    """Validate the command line into daemon options; raises ValueError with the reason."""
    if args.stdio and (args.socket or args.tcp):
        raise ValueError("--stdio serves one client and cannot be combined with sockets")
    token = args.token or os.environ.get("OSTINATO_TOKEN") or None
    tcp = parse_tcp(args.tcp) if args.tcp else None
    if tcp is not None and not is_loopback(tcp[0]) and token is None:
        raise ValueError(f"refusing to listen on {tcp[0]} without --token: any host could "
                         "drive this daemon")
    if args.max_frame_bytes < 1024:
        raise ValueError("--max-frame-bytes must be at least 1024")
    if args.auth_failures < 1 or not args.auth_window > 0:
        raise ValueError("--auth-failures must be at least 1 and --auth-window above 0")
    if args.max_buffered_bytes < 1024:
        raise ValueError("--max-buffered-bytes must be at least 1024")
    if not args.frame_timeout > 0:
        raise ValueError("--frame-timeout must be more than 0 seconds")
    if args.max_pipeline_bytes < 1024:
        raise ValueError("--max-pipeline-bytes must be at least 1024")
    if args.log_max_bytes < 1024 or args.log_files < 1:
        raise ValueError("--log-max-bytes must be at least 1024 and --log-files at least 1")
    if args.wal_max_bytes < 65536:
        raise ValueError("--wal-max-bytes must be at least 65536")
    if args.workers < 0:
        raise ValueError("--workers must be 0 (one per core) or more")
    if args.executor not in EXECUTORS:  # a default from the environment is not checked
        raise ValueError(f"OSTINATO_EXECUTOR must be one of {', '.join(EXECUTORS)}")
    if args.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise ValueError("--executor ray needs Ray: pip install 'ostinato[ray]'")
    home = resolve_home(args.home)
    allowed = {name.strip() for name in [
        *args.allow_key_env, *os.environ.get("OSTINATO_ALLOWED_KEY_ENV", "").split(",")]}
    return DaemonOptions(home=home, stdio=args.stdio, socket=args.socket, tcp=tcp, token=token,
                         auth_failures=args.auth_failures, auth_window=args.auth_window,
                         allowed_key_env=frozenset(allowed - {""}),
                         max_frame_bytes=args.max_frame_bytes,
                         max_pipeline_bytes=args.max_pipeline_bytes,
                         wal_max_bytes=args.wal_max_bytes,
                         executor=args.executor, workers=args.workers,
                         ray_address=args.ray_address,
                         max_buffered_bytes=args.max_buffered_bytes,
                         frame_timeout=args.frame_timeout, extensions=args.extension,
                         ready_fd=args.ready_fd,
                         strict_results=os.environ.get("OSTINATO_STRICT_RESULTS") == "1")


def load_extension(name: str, dispatcher: Dispatcher,
                   handler_hooks: list[HandlerHook] | None = None) -> None:
    """Import an extension module and let it register its methods.

    A module may also define `register_handlers(registry)`: it is collected into
    `handler_hooks`, and the daemon calls it once its services have started, with the
    runner's `HandlerRegistry`, so that the module can add node handler types
    (`registry.register("my.type", handler)`, attractor §4.12) that every run, and the
    `type_known` lint rule of pipeline.validate, then know.
    """
    if name.endswith(".py"):
        spec = importlib.util.spec_from_file_location(Path(name).stem, name)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {name}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(name)
    module.register(dispatcher)
    hook = getattr(module, "register_handlers", None)
    if callable(hook) and handler_hooks is not None:
        handler_hooks.append(hook)


def build_dispatcher(extensions: list[str],
                     handler_hooks: list[HandlerHook] | None = None) -> Dispatcher:
    """Every family's handlers, plus the extensions' (their handler hooks go to
    `handler_hooks`)."""
    dispatcher = Dispatcher()
    dispatcher.mount(client_methods(), [lifecycle.table, *mcp.tables(), *services.tables()])
    for name in extensions:
        load_extension(name, dispatcher, handler_hooks)
    return dispatcher


def run(options: DaemonOptions, lock: HomeLock, use_uvloop: bool = True) -> int:
    """Run the daemon to the end; returns the process exit code."""
    handler_hooks: list[HandlerHook] = []
    try:
        dispatcher = build_dispatcher(options.extensions, handler_hooks)
    except Exception as exc:  # an extension that does not load is a startup error
        log.error("cannot load extensions %s: %s", options.extensions, exc)
        return 2
    daemon = Daemon(options, dispatcher, handler_hooks, lock)
    # What is loaded by now lives as long as the process: full collections leave it out
    # (they walk every tracked object, and modules, classes and schemas are some 75,000).
    gc.freeze()

    async def main() -> int:
        try:
            return await daemon.serve()
        except StartupError as exc:
            log.error("%s", exc)
            return 2

    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main())
    return asyncio.run(main())


def serve(args: argparse.Namespace) -> int:
    """Entry of `ostinato serve`."""
    try:
        options = options_from_args(args)
    except ValueError as exc:
        print(f"ostinato serve: {exc}", file=sys.stderr)
        return 2
    # Every file and directory the daemon (and a tool it runs) creates is its user's alone.
    os.umask(PRIVATE_UMASK)
    try:
        made_private = private_home(options.home)
        lock = HomeLock.acquire(options.home)
    except HomeLocked as exc:
        if options.stdio:  # an editor or agent host spawned us: share the home's daemon
            if ignored := _options_given(args):
                print(f"ostinato serve: {exc}; bridging to it, so these options do not "
                      f"apply: {', '.join(ignored)}", file=sys.stderr)
            return bridge.run(options.home)
        print(f"ostinato serve: {exc}; connect to it (every `ostinato` command does), or "
              f"stop it first with `ostinato daemon stop --home {options.home}`",
              file=sys.stderr)
        return EXIT_HOME_SERVED
    except OSError as exc:
        print(f"ostinato serve: cannot use home {options.home}: {exc}", file=sys.stderr)
        return 2
    try:
        logs.configure(options.home, args.log_level, args.log_max_bytes, args.log_files)
        if options.tcp is not None and options.token is None:
            options.tcp_token, token_file = write_token_file(options.home)
    except OSError as exc:
        lock.release()
        print(f"ostinato serve: cannot use home {options.home}: {exc}", file=sys.stderr)
        return 2
    if made_private:
        log.warning("home %s was open to other users: it is now private (0700)",
                    options.home)
    if options.tcp_token is not None:
        log.info("TCP clients authenticate with the token in %s", token_file)
    try:
        code = run(options, lock, use_uvloop=not args.no_uvloop)
    finally:
        lock.release()
    if "ray" in sys.modules:
        # Ray's C++ core can abort the interpreter's teardown (SIGABRT after a clean stop,
        # seen with --executor ray): everything the daemon owns is closed, so it leaves.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


# What a bridged `serve --stdio` still honours (or that only says how it was started).
_BRIDGED_OPTIONS = {"stdio", "home", "log_level", "no_uvloop", "ready_fd"}


def _options_given(args: argparse.Namespace) -> list[str]:
    """The serve options given other than their defaults, as `--name`, except those a bridge
    honours: the daemon it bridges to was started with its own."""
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    defaults = vars(parser.parse_args([]))
    return [f"--{name.replace('_', '-')}" for name, default in defaults.items()
            if name not in _BRIDGED_OPTIONS and getattr(args, name, default) != default]


def main(argv: list[str] | None = None) -> int:
    """`python -m ostinato.daemon`: the same options as `ostinato serve`."""
    parser = argparse.ArgumentParser(prog="ostinato serve", description="Run the daemon.")
    add_serve_arguments(parser)
    return serve(parser.parse_args(argv))
