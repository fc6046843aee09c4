"""The `souk` console script: `souk search ...` runs without building the typer app (see `souk.cli.quick`);
every other command line goes to `souk.cli.main.main`."""
from __future__ import annotations

import os
import sys
import warnings


def main() -> None:
    """Run the command line in sys.argv; errors end as `souk.cli.main.main` ends them."""
    from souk.cli.quick import parse_search

    quick = parse_search(sys.argv[1:])
    if quick is None:
        import souk.cli
        from souk.cli.main import main as full

        souk.cli.main = main  # importing the submodule rebound the package's `main` to the module
        full()
        return
    from souk.errors import SoukError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    warnings.showwarning = _show_warning
    try:
        from souk.cli.quick import run_search

        run_search(**quick)
    except SoukError as e:
        from souk.cli.main import _problems, fail

        fail(str(e), type(e).__name__, quick["as_json"], _problems(e))
    except KeyboardInterrupt:
        from souk.cli.main import fail

        fail("interrupted", "Interrupted", quick["as_json"], code=130)
    sys.exit(0)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Python warnings as one `warning: ...` line (no source excerpt), as `souk.cli.main` shows them."""
    sys.stderr.write(f"warning: {message}\n")
