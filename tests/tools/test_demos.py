"""The demo scenes' script writes the images, their labels and the README that describes them."""
from __future__ import annotations

from tools.demos import write_demos


def test_write_demos(tmp_path):
    written = write_demos(tmp_path)
    names = {p.name for p in written}
    assert len(names) >= 16 and {"street_seed1_car.png", "street_seed2_truck.png"} <= names
    readme = (tmp_path / "README.md").read_text()
    assert "street_seed8_truck.png" in readme and "blue" in readme
