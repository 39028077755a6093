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

    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())
