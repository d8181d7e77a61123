"""The model menu: labels that say what each model knows, grouped by dataset; the values stay the
names that events and the API take."""
from __future__ import annotations

from ccnet.app.exports import Exports
from ccnet.app.ui import ExplorerUI
from ccnet.weights import presets


def test_the_menu_labels_models_and_keeps_their_names(explorer, tmp_path):
    page = ExplorerUI(explorer, Exports(tmp_path))
    menu = page.menu()
    names = [name for _, name in menu]
    assert sorted(names) == sorted(page.models) and names[0] == explorer.default_model
    found = presets.presets()
    datasets = [found[name].dataset for name in names if name in found]
    assert datasets == sorted(datasets)  # grouped by dataset
    assert all(label == found[name].label for label, name in menu if name in found)
