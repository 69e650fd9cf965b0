"""``python -m execgym.server --env ID[,ID...]``: the env server (as ``execgym env-server``)."""

from execgym.server.cli import main

raise SystemExit(main())
