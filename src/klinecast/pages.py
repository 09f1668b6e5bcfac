"""What every HTML page of klinecast shares: plots inlined as PNG, so a page needs nothing
outside its own file."""

from __future__ import annotations

import base64
import io

#: The stylesheet of the research pages (a symbol's report, the book's page).
REPORT_STYLE = """<style>
body { font-family: system-ui, sans-serif; max-width: 1150px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: 3px 9px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.model { background: #eef4ff; font-weight: bold; }
.pass { color: #17692b; } .fail { color: #a11; }
.warn { background: #fff4e0; border-left: 4px solid #e08a00; padding: 0.5em 1em; }
.note { background: #eef4fb; border-left: 4px solid #3b6fb6; padding: 0.5em 1em; }
.verdict { font-size: 1.1em; }
img { max-width: 100%; }
</style>"""


def png(fig) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def img(data: bytes) -> str:
    """An <img> element that carries the PNG inline."""
    return f"<img alt='plot' src='data:image/png;base64,{base64.b64encode(data).decode()}'>"
