"""The command line's subcommands, one module each (``main.py`` is only the parser around them).

Each module has ``add_parser(subparsers)`` and ``run(args) -> exit status``; :mod:`cli.common`
holds what several share (one-line errors, argument types, opening a checkpoint). Heavy imports
(torch) happen inside ``run``, so ``main.py --help`` stays quick. Nothing here imports Qt.
"""
