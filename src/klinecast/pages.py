"""What every HTML page of klinecast shares: plots inlined as PNG, so a page needs nothing
outside its own file."""

from __future__ import annotations

import base64
import io


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
