"""``python -m dnspol`` and the ``dnspol`` command.

Signals are held (``dnspol.signals``) before anything heavy is imported, so a
SIGHUP or SIGTERM sent while the server starts is never fatal.
"""


def main() -> int:
    import sys

    if "serve" in sys.argv[1:]:  # other commands keep Ctrl-C's default
        from dnspol import signals

        signals.hold()
    from dnspol.cli import main as cli_main

    try:
        return cli_main()
    except BrokenPipeError:
        # the reader went away (``dnspol schema | head -1``): stop quietly, as cat does;
        # stdout goes to /dev/null so the interpreter's final flush cannot fail again
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
