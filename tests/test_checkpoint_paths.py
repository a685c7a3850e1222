"""Checkpoints under a relative output directory (what `--out runs/x` gives)."""

import jax.numpy as jnp
import numpy as np

from scaling.checkpoint import Checkpointer


def test_relative_directory_saves_and_restores(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = {"w": jnp.arange(6.0).reshape(2, 3)}
    ckpt = Checkpointer("runs/relative/checkpoints", keep=1)
    ckpt.save(3, state, {"step": 3})
    ckpt.close()
    assert (tmp_path / "runs" / "relative" / "checkpoints" / "3").is_dir()
    again = Checkpointer("runs/relative/checkpoints", keep=1)
    restored, meta = again.restore(again.latest_step(), state)
    again.close()
    np.testing.assert_array_equal(np.asarray(restored["w"]), np.asarray(state["w"]))
    assert meta == {"step": 3}
