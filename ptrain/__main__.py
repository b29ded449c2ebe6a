"""`python -m ptrain ...` is the same as the `ptrain` command."""

from ptrain.cli import main

raise SystemExit(main())
