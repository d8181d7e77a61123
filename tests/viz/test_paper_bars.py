"""The paper-size bars carry the values and the ratio written on the non-local bar."""
from __future__ import annotations

from ccnet.viz.charts import paper_bars


def test_each_non_local_bar_says_its_ratio():
    figure = paper_bars({"training_mib": {"rcca2": 84.6, "nonlocal": 1054.5},
                         "gflops": {"rcca2": 16.5, "nonlocal": 108}})
    memory, flops = figure.data
    assert list(memory.x) == [84.6, 1054.5] and memory.text == ("84.6", "1,054 (12.5×)")
    assert flops.text == ("16.5", "108 (6.5×)")
