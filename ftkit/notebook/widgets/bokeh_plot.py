"""The Bokeh plot widget the notebook's views share: new views start from what was drawn so far."""

from __future__ import annotations

from typing import Any

from bokeh.core.json_encoder import serialize_json
from jupyter_bokeh import BokehModel


class BokehPlot(BokehModel):
    """A BokehModel whose new views start from the points streamed so far, and that closes twice safely."""

    def get_state(self, key: Any = None, drop_defaults: bool = False) -> dict[str, Any]:
        # The render bundle is a snapshot taken when the widget was made; a view made later (a
        # reloaded page, a second display, the refreshed output) would otherwise start empty.
        state = super().get_state(key, drop_defaults)
        if "render_bundle" in state:
            state["render_bundle"] = serialize_json(_auto_ranges(self._model_to_traits(self._model)))
        return state

    def close(self) -> None:
        if self.comm is not None:  # BokehModel.close fails the second time
            super().close()


def _auto_ranges(bundle: Any) -> Any:
    """``bundle`` with every DataRange1d's start and end left to the view: a view writes the bounds it
    computed back to the kernel, and a view made from them would keep them fixed (`_initial_start` in
    BokehJS), its axis ending at the step it had when the first view drew, the last points off the plot."""
    if isinstance(bundle, dict):
        if bundle.get("name") == "DataRange1d" and isinstance(bundle.get("attributes"), dict):
            bundle["attributes"] = {k: v for k, v in bundle["attributes"].items() if k not in ("start", "end")}
        for item in bundle.values():
            _auto_ranges(item)
    elif isinstance(bundle, list):
        for item in bundle:
            _auto_ranges(item)
    return bundle
