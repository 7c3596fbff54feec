"""Entry point for ``python -m sales_stream``."""

from sales_stream.cli import main

raise SystemExit(main())
