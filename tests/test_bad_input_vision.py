"""Vision bad input through the CLI: one ``error:`` line naming the file, exit status 2, no run directory left."""

from __future__ import annotations

import numpy as np
from PIL import Image


def test_corrupt_image_in_class_folder(run_cli, tmp_path):
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8), "L").save(tmp_path / "imgs" / c / f"{i}.png")
    (tmp_path / "imgs" / "b" / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "run"
    proc = run_cli(
        "train", "digits_cnn", "data.name=image_folder", f"data.path={tmp_path / 'imgs'}", "--out", out, cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot read image ")
    assert "bad.jpg" in lines[0] and "data.on_bad_image=skip" in lines[0]
    assert not out.exists()
