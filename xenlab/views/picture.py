"""Picture: the base of the drawn views (a Stepper panel that is a matplotlib picture).

A picture has three forms, all drawn from a Context (the replayed state after one step):

* ``text(ctx)``: the stable text form, what nbval compares and what a learner without
  matplotlib (JupyterLite) sees; it then ends with a line saying so;
* ``alt(ctx)``: one or two sentences saying what the picture shows, the image's alt text;
* ``png(ctx)``: the PNG bytes, byte-stable for the same step (fixed size, dpi and font,
  no Software/date metadata), or None without matplotlib.

matplotlib is imported only inside ``png`` (the Agg canvas; pyplot is never used, so no
global figure state and no backend switch). In a Stepper's widget the picture is an
``ipywidgets.Image`` under the step (``widgets()``) whose value is replaced in place on
every step, so nothing is re-created and the picture does not flicker; as static HTML it
is an ``<img>`` with its alt text. Rendered PNGs are cached per step.
"""

from __future__ import annotations

import base64
import io
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from xenlab.base.trace import Trace
from xenlab.views._html import box, esc
from xenlab.views.stepper import Context, TablePanel

NO_MATPLOTLIB = "(matplotlib is not installed here: this picture is shown as text only)"

#: Everything that could make two renderings of the same step differ, pinned.
RC: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.unicode_minus": False,
    "path.simplify": False,
    "svg.hashsalt": "xenlab",
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
}
DPI = 80
#: PNG text chunks: none (matplotlib writes "Software: matplotlib version..." by default).
PNG_METADATA: dict[str, Any] = {"Software": None}


_IMAGE: list[Any] = []  # the Image widget class, made on first use (ipywidgets is imported lazily)


def image_widget_class() -> Any:
    """ipywidgets.Image with a (hidden, empty) ``description``, so that its tooltip, the alt text, shows.

    ipywidgets 8's DOMWidgetView.updateTooltip reads ``description.length``; a plain Image has no
    description, so an Image with a tooltip fails to render in JupyterLab ("Failed to create view for
    'ImageView'... Cannot read properties of undefined (reading 'length')"). With it, the <img> gets the
    alt text as its title (its accessible name: the widget cannot set an ``alt`` attribute).
    """
    if not _IMAGE:
        import ipywidgets as W
        from traitlets import Unicode

        class PictureImage(W.Image):  # type: ignore[misc]
            """An Image whose tooltip renders (see image_widget_class)."""

            description = Unicode("").tag(sync=True)

        _IMAGE.append(PictureImage)
    return _IMAGE[0]


def have_matplotlib() -> bool:
    """True if matplotlib can be imported here (the JupyterLite build has none)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def render_png(draw: Callable[[Any], None], size: tuple[float, float], dpi: int = DPI) -> bytes:
    """Run *draw(figure)* on a fresh Agg figure of *size* inches and return the PNG bytes."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC):
        fig = Figure(figsize=size, dpi=dpi)
        FigureCanvasAgg(fig)
        draw(fig)
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=dpi, metadata=PNG_METADATA, pil_kwargs={"compress_level": 4})
    return out.getvalue()


class Picture(TablePanel):
    """A drawn panel: subclasses give ``describe``, ``alt`` and ``draw``; the rest is here."""

    title = "picture"
    size: tuple[float, float] = (6.0, 4.0)
    cache_size = 64

    def __init__(self) -> None:
        self._cache: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()
        self._image: Any = None  # the ipywidgets.Image once a Stepper built its widgets

    # -- what subclasses write -------------------------------------------------------------------
    def describe(self, ctx: Context) -> str:  # pragma: no cover - overridden
        """The picture as stable text."""
        raise NotImplementedError

    def alt(self, ctx: Context) -> str:  # pragma: no cover - overridden
        """What the picture shows, in a sentence or two (the image's alt text)."""
        raise NotImplementedError

    def draw(self, fig: Any, ctx: Context) -> None:  # pragma: no cover - overridden
        """Draw the picture of *ctx* on the matplotlib Figure *fig*."""
        raise NotImplementedError

    # -- the three forms -------------------------------------------------------------------------
    def text(self, ctx: Context) -> str:
        """The stable text form (with a note when matplotlib is missing, so no picture can be drawn)."""
        body = self.describe(ctx)
        return body if have_matplotlib() else f"{body}\n{NO_MATPLOTLIB}"

    def png(self, ctx: Context) -> bytes | None:
        """The picture as PNG bytes (the same bytes for the same step), None without matplotlib."""
        if not have_matplotlib():
            return None
        key = (id(ctx.trace), len(ctx.trace), ctx.index)
        hit = self._cache.get(key)
        if hit is None:
            hit = render_png(lambda fig: self.draw(fig, ctx), self.size)
            self._cache[key] = hit
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return hit

    def html(self, ctx: Context) -> str:
        """In a live Stepper: update the Image widget in place and show the alt text; else an <img>."""
        alt = self.alt(ctx)
        data = self.png(ctx)
        if data is None:
            return f"<div class='xl-muted'>{esc(NO_MATPLOTLIB)}</div><pre>{esc(self.describe(ctx))}</pre>"
        caption = f"<div class='xl-muted' role='note'>picture: {esc(alt)}</div>"
        if self._image is not None:
            self._image.value = data
            self._image.tooltip = alt
            return caption + "<div class='xl-muted'>(the picture is drawn below)</div>"
        b64 = base64.b64encode(data).decode("ascii")
        return f"<img alt='{esc(alt)}' title='{esc(alt)}' src='data:image/png;base64,{b64}'>" + caption

    def widgets(self) -> list[Any]:
        """The Image widget a Stepper places under its body; its value is replaced on each step."""
        import ipywidgets as W

        if self._image is None:
            # flex-start: the picture keeps its own size (a VBox would stretch it to the cell's width)
            layout = W.Layout(max_width="100%", align_self="flex-start")
            self._image = image_widget_class()(format="png", layout=layout)
            self._image.add_class("xenlab-picture")
        return [self._image]

    def at(self, trace: Trace, index: int = -1) -> PictureAt:
        """The picture after step *index* of *trace* (default: the last step), for display in a cell."""
        index = len(trace) - 1 if index == -1 else index
        return PictureAt(self, Context.at(trace, index))


class PictureAt:
    """One picture at one step: displays as PNG + text/plain (the text form is what nbval compares)."""

    def __init__(self, picture: Picture, ctx: Context) -> None:
        self.picture = picture
        self.ctx = ctx

    def text(self) -> str:
        """The picture's text form at this step."""
        return self.picture.text(self.ctx)

    def alt(self) -> str:
        """The picture's alt text at this step."""
        return self.picture.alt(self.ctx)

    def png(self) -> bytes | None:
        """The PNG bytes at this step (None without matplotlib)."""
        return self.picture.png(self.ctx)

    def html(self) -> str:
        """An <img> with its alt text (the PNG inline), or the text form without matplotlib."""
        saved, self.picture._image = self.picture._image, None
        try:
            return box(self.picture.html(self.ctx))
        finally:
            self.picture._image = saved

    def __repr__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """text/plain (what nbval compares) and text/html: the <img> carries the alt text, which a
        bare image/png output could not; notebooks/sanitize.cfg masks its base64 for nbval."""
        return {"text/plain": self.text(), "text/html": self.html()}
