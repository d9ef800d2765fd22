"""What the site's build passes to each example (sphinx-gallery's ``reset_argv``)."""

from __future__ import annotations

import tempfile
from pathlib import Path


def example_argv(gallery_conf: dict, script_vars: dict) -> list[str]:
    """Command-line arguments of an example when the site runs it: no files written."""
    if Path(script_vars["src_file"]).name == "digits.py":
        return ["--plot", ""]  # the page shows the learning curves; no PNG beside the script
    if Path(script_vars["src_file"]).name == "regularization.py":
        return ["--plot", str(Path(tempfile.gettempdir()) / "mlp-regularization.png")]
    return []
