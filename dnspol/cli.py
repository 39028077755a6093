"""Command line: ``dnspol serve | check | explain | schema | ctl``.

Every command reads the same configuration (a config file, or zone files given
directly), so what ``check`` accepts is exactly what ``serve`` will run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from dnspol import __version__, logs, signals
from dnspol.errors import ConfigError
from dnspol.handler import Clock
from dnspol.server import Server, ServerOptions, parse_listen
from dnspol.state import Snapshot

DEFAULT_LISTEN = "127.0.0.1:5353"
log = logging.getLogger("dnspol")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup(args.log_level, args.log_format)
    return args.func(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dnspol",
        description="A policy-driven authoritative DNS server.",
    )
    parser.add_argument("--version", action="version", version=f"dnspol {__version__}")
    _add_log_args(parser, "info", "text")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="answer queries", description="Answer DNS queries.")
    _add_source_args(serve)
    serve.add_argument(
        "--listen",
        action="append",
        metavar="ADDR:PORT",
        help=f"listen address for UDP and TCP, repeatable (default {DEFAULT_LISTEN} "
        "or the config's server.listen); port 0 picks a free port",
    )
    serve.add_argument(
        "--fake-time",
        metavar="ISO8601",
        help="start the clock at this time; test mode: 'dnspol ctl set-time/advance' move it, "
        "and CHAOS TXT clock and reload queries from loopback clients (docs/testing.md)",
    )
    serve.add_argument("--ready-file", metavar="PATH", help="write 'HOST PORT' here once listening")
    serve.add_argument("--no-watch", action="store_true", help="reload on SIGHUP only")
    serve.add_argument("--seed", type=int, help="seed weighted choices (repeatable answers)")
    serve.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="worker processes sharing the ports (default: one per usable core; "
        "1 with --fake-time or --seed, whose clock and draws live in one process)",
    )
    serve.add_argument(
        "--metrics-listen",
        type=_address_arg,
        metavar="ADDR:PORT",
        help="serve Prometheus /metrics, /health and /ready here, e.g. 127.0.0.1:9153 "
        "(default: the config's server.metrics; off when neither)",
    )
    serve.add_argument(
        "--query-log",
        metavar="PATH|-",
        help="log queries as JSON lines to this file (appended) or - for stdout; off by default",
    )
    serve.add_argument(
        "--query-log-sample",
        type=_rate_arg,
        default=1.0,
        metavar="RATE",
        help="fraction of queries logged, e.g. 0.01 (default 1: all)",
    )
    serve.add_argument(
        "--control",
        metavar="PATH|none",
        help="the control socket for 'dnspol ctl' (default: the config's server.control, "
        "else $RUNTIME_DIRECTORY/control.sock, /run/dnspol/control.sock for root, "
        "$XDG_RUNTIME_DIR/dnspol/control.sock); none: no control socket",
    )
    serve.add_argument("--metrics-file", help=argparse.SUPPRESS)  # a worker's totals
    serve.add_argument("--quiet-ready", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(func=_cmd_serve)

    check = sub.add_parser(
        "check", help="validate configuration and zones", description="Validate; exit 1 on errors."
    )
    _add_source_args(check)
    check.set_defaults(func=_cmd_check)

    explain = sub.add_parser(
        "explain",
        help="show which rule answers a query, and the answer",
        description="Evaluate the rules for one query without a running server: which rule "
        "matched, why the earlier ones did not, the scope, and the answer as dig shows it.",
    )
    _add_source_args(explain)
    explain.add_argument("--client", default="127.0.0.1", metavar="IP", help="source address")
    explain.add_argument("--ecs", metavar="NET", help="EDNS Client Subnet sent with the query")
    explain.add_argument("--server", default="127.0.0.1", metavar="IP", help="address asked")
    explain.add_argument("--time", metavar="ISO8601", help="the clock (default: now)")
    explain.add_argument("--tcp", action="store_true", help="as if over TCP")
    explain.add_argument("--seed", type=int, help="seed for weighted choices")
    explain.add_argument(
        "--health",
        action="append",
        default=[],
        metavar="CHECK=up|down",
        help="force a health check instead of probing it (repeatable)",
    )
    explain.add_argument("name")
    explain.add_argument("qtype", nargs="?", default="A")
    explain.set_defaults(func=_cmd_explain)

    dump = sub.add_parser(
        "dump",
        help="write a zone as served (signed, with dnssec:) as a master file",
        description="Write one zone of one scope, as the server answers from it (with its "
        "DNSKEY, RRSIG and NSEC/NSEC3 records when the zone has dnssec:), to stdout.",
    )
    _add_source_args(dump)
    dump.add_argument("origin", metavar="ZONE", help="the zone's name, e.g. example.com")
    dump.add_argument("--scope", default="default", help="the scope (default: default)")
    dump.set_defaults(func=_cmd_dump)

    schema = sub.add_parser("schema", help="print the JSON Schema of the configuration files")
    schema.set_defaults(func=_cmd_schema)

    ctl = sub.add_parser(
        "ctl",
        help="control a running server: status, reload, the test clock, health checks",
        description="Talk to a running 'dnspol serve' over its control socket. Exit 0: done; "
        "1: refused, or a reload rejected (its problems are printed, the old configuration "
        "keeps serving); 2: the server could not be reached.",
    )
    ctl.add_argument(
        "--control", metavar="PATH", help="the server's control socket (default as for serve)"
    )
    ctl.add_argument("--json", action="store_true", help="print the server's reply as JSON")
    ctl.add_argument("--timeout", type=float, metavar="SECONDS", help="wait this long at most")
    actions = ctl.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("status", help="version, uptime, configuration, workers, zones, listeners")
    actions.add_parser("reload", help="reload the configuration and wait for the outcome")
    set_time = actions.add_parser("set-time", help="set the clock (--fake-time servers)")
    set_time.add_argument("when", metavar="ISO8601|EPOCH")
    advance = actions.add_parser("advance", help="move the clock (--fake-time servers)")
    advance.add_argument("seconds", metavar="SECONDS", help="negative goes back")
    set_health = actions.add_parser(
        "set-health", help="force a health check up or down; auto: its probes decide again"
    )
    set_health.add_argument("check", metavar="CHECK")
    set_health.add_argument("state", choices=("up", "down", "auto"))
    ctl.set_defaults(func=_cmd_ctl)
    for command in sub.choices.values():  # before or after the command, as people type it
        _add_log_args(command, argparse.SUPPRESS, argparse.SUPPRESS)
    return parser


def _add_log_args(p: argparse.ArgumentParser, level: str, form: str) -> None:
    """``--log-level`` and ``--log-format``; a command's own copies default to SUPPRESS,
    so they do not undo the same option given before the command."""
    p.add_argument("--log-level", default=level, choices=logs.LEVELS, help="default info")
    p.add_argument(
        "--log-format",
        default=form,
        choices=logs.FORMATS,
        help="text (default) or json: one JSON object per line on stderr",
    )


def _add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="configuration file (YAML)")
    p.add_argument(
        "--zone",
        "-z",
        action="append",
        metavar="[ORIGIN=]FILE",
        help="serve this zone file, repeatable (origin from $ORIGIN or the file name)",
    )


def _address_arg(text: str) -> tuple[str, int]:
    try:
        return parse_listen(text)
    except (OSError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not ADDR:PORT, e.g. 127.0.0.1:9153"
        ) from None


def _rate_arg(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0 < rate <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate in (0, 1], e.g. 0.01")
    return rate


def _loader(args) -> Callable[[], Snapshot]:
    if args.config and args.zone:
        raise SystemExit("dnspol: use --config or --zone, not both")
    if not args.config and not args.zone:
        raise SystemExit("dnspol: nothing to serve: give --config FILE or --zone FILE")
    from dnspol.state import snapshot_loader

    return snapshot_loader(config=args.config, zone_args=args.zone or [])


def _cmd_serve(args) -> int:
    read = _loader(args)
    load = _warning_loader(read)  # for reloads; the first load is warned about below
    fake_time = _time_arg("serve", "--fake-time", args.fake_time)
    clock = Clock(fake_time)
    listen = [parse_listen(x) for x in args.listen] if args.listen else None
    try:
        with signals.interruptible():
            first = read()
    except signals.Stopped:
        return 0
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        return 1
    listen = listen or list(first.listen) or [parse_listen(DEFAULT_LISTEN)]
    # a worker reports to its supervisor, which serves the metrics port for all
    metrics_listen = None if args.metrics_file else args.metrics_listen or _config_metrics(first)
    seed = args.seed if args.seed is not None else first.seed
    workers = args.workers or _default_workers(args)
    # Held in a list and popped by whoever runs the server: a reference left in this
    # frame would keep the first configuration alive beside every reloaded one.
    preloaded = [first]
    del first
    control_path, control_default = _control_path(args, preloaded[0])
    fixed = _command_line_settings(args)
    tap = getattr(preloaded[0], "dnstap", None)  # start-only, as the listen addresses
    logs.set_origin("supervisor" if workers > 1 else "server", None if workers > 1 else 1)
    logs.config_warnings(log, preloaded[0].warnings)
    if workers > 1:
        from dnspol import supervisor

        def worker(start: supervisor.WorkerStart) -> int:
            options = _serve_options(
                args, start.listen, ready_file=start.ready_file, metrics_file=start.metrics_file
            )
            options.sockets, options.turn = start.sockets, start.turn
            options.print_ready = False
            options.seed, options.workers = seed, workers
            options.dnstap = tap
            return Server(load, options, clock).run(start.snapshot)

        return supervisor.run(
            worker,
            load,
            preloaded,
            listen,
            workers,
            args.ready_file,
            metrics_listen,
            watch=not args.no_watch,
            control_path=control_path,
            restart_fixed=fixed,
            control_default=control_default,
        )
    options = _serve_options(args, listen, ready_file=args.ready_file)
    options.metrics_listen = metrics_listen
    options.control, options.control_default = control_path, control_default
    options.restart_fixed = fixed
    options.dnstap = tap
    options.seed = seed
    return Server(load, options, clock).run(preloaded.pop())


def _warning_loader(load: Callable[[], Snapshot]) -> Callable[[], Snapshot]:
    """``load`` that logs what ``dnspol check`` warns about, on every reload."""

    def load_and_warn() -> Snapshot:
        snapshot = load()
        logs.config_warnings(log, snapshot.warnings)
        return snapshot

    return load_and_warn


def _control_path(args, snap: Snapshot) -> tuple[str | None, bool]:
    """The control socket's path (None: off), and whether it is only the default."""
    from dnspol import control

    chosen = control.parse_path(args.control) or getattr(snap, "control", None)
    if args.metrics_file:  # a worker of a supervisor: the supervisor has the socket
        return None, False
    if chosen == "none":
        return None, False
    if chosen:
        return os.path.abspath(chosen), False
    return control.default_path(), True


def _command_line_settings(args) -> frozenset[str]:
    """Start-only settings the command line set: the configuration does not change them."""
    given = {
        "listen": args.listen,
        "metrics": args.metrics_listen,
        "seed": args.seed is not None,
        "control": args.control,
    }
    return frozenset(key for key, value in given.items() if value)


def _serve_options(args, listen, ready_file, metrics_file=None) -> ServerOptions:
    return ServerOptions(
        listen=listen,
        ready_file=ready_file,
        print_ready=not args.quiet_ready,
        watch=not args.no_watch,
        test_control=bool(args.fake_time),
        metrics_file=metrics_file or args.metrics_file,
        query_log=args.query_log,
        query_log_sample=args.query_log_sample,
    )


def _config_metrics(snap: Snapshot) -> tuple[str, int] | None:
    """The config's ``server.metrics`` address, when the snapshot carries it."""
    value = getattr(snap, "metrics", None)
    if isinstance(value, str):
        return parse_listen(value)
    return tuple(value) if value else None  # type: ignore[return-value]


def _default_workers(args) -> int:
    if args.fake_time or args.seed is not None:
        return 1
    return max(1, len(os.sched_getaffinity(0)))


def _cmd_check(args) -> int:
    load = _loader(args)
    try:
        snap = load()
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        print(f"{len(exc.problems)} problem(s) found", file=sys.stderr)
        return 1
    for warning in snap.warnings:
        print(warning)
    from dnspol.server import describe

    print(f"ok: {describe(snap)}")
    return 0


def _cmd_explain(args) -> int:
    from dnspol.explain import explain

    try:
        snap = _loader(args)()
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        return 1
    when = _time_arg("explain", "--time", args.time)
    try:
        print(
            explain(
                snap,
                args.name,
                args.qtype,
                args.client,
                args.server,
                args.ecs,
                when,
                args.tcp,
                args.seed,
                _health_args(args.health),
            )
        )
    except ValueError as exc:
        print(f"dnspol explain: {exc}", file=sys.stderr)
        return 2
    return 0


def _health_args(items: list[str]) -> dict[str, bool]:
    """``--health web=down`` → {"web": False}."""
    out = {}
    for item in items:
        name, _, state = item.partition("=")
        if state not in ("up", "down"):
            raise ValueError(f"--health {item!r}: write CHECK=up or CHECK=down")
        out[name] = state == "up"
    return out


def _cmd_dump(args) -> int:
    from dnspol.dnssec.sign import write_zone
    from dnspol.names import from_text

    try:
        snap = _loader(args)()
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    origin = from_text(args.origin if args.origin.endswith(".") else args.origin + ".")
    zone = snap.variants.get((origin, args.scope))
    if zone is None and args.scope == "default":
        zone = snap.zones.get(origin)
    if zone is None:
        print(f"dnspol dump: no zone {args.origin} with scope {args.scope!r}", file=sys.stderr)
        return 1
    write_zone(zone, sys.stdout)
    return 0


def _cmd_schema(args) -> int:
    import json

    from dnspol.config import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _cmd_ctl(args) -> int:
    import json

    from dnspol import control

    path = os.path.abspath(args.control) if args.control else control.default_path()
    argument = getattr(args, "when", None) or getattr(args, "seconds", None)
    if args.action == "set-health":
        argument = f"{args.check} {args.state}"
    try:
        code, reply = control.run_command(path, args.action, argument, args.timeout)
    except ValueError as exc:
        print(f"dnspol ctl {args.action}: {exc}", file=sys.stderr)
        return 2
    except control.ControlError as exc:
        print(f"dnspol ctl: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(reply, indent=2))
        return code
    out, err = control.format_reply(args.action, reply)
    for line in out:
        print(line)
    for line in err:
        print(line, file=sys.stderr)
    return code


def _time_arg(command: str, option: str, text: str | None) -> float | None:
    """``--time`` / ``--fake-time`` as epoch seconds (None when not given): ISO 8601 with a
    UTC offset, or epoch seconds, as ``dnspol ctl set-time`` takes them. A value the clock
    cannot take ends the command with one line and exit 2, as a usage error does."""
    if text is None:
        return None
    from dnspol.control import parse_time

    try:
        return parse_time(text)
    except ValueError as exc:
        print(f"dnspol {command}: {option}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
