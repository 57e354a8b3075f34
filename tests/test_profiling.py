"""``config.log.profile_steps``: a jax.profiler trace of the chosen steps appears in the workdir
(for TensorBoard's profile plugin and Perfetto), and the run computes exactly what it computes
without it; a malformed range is one error line."""

import pytest

import jaxlab
from jaxlab.errors import UserError
from tests.conftest import read_jsonl

RUN = {"train.steps": 20, "train.log_every": 5, "train.eval_every": 10}


def test_a_trace_of_the_chosen_steps_appears_and_training_is_unchanged(tmp_path):
    plain = jaxlab.load_config("mlp_moons:smoke", RUN)
    traced = jaxlab.load_config("mlp_moons:smoke", {**RUN, "log.profile_steps": "5:10"})
    jaxlab.train(plain, tmp_path / "plain", quiet=True)
    jaxlab.train(traced, tmp_path / "traced", quiet=True)
    runs = list((tmp_path / "traced" / "profile" / "plugins" / "profile").iterdir())
    assert len(runs) == 1  # one trace, started and stopped once
    names = [path.name for path in runs[0].iterdir()]
    assert any(name.endswith(".xplane.pb") for name in names)  # TensorBoard's profile plugin
    assert "perfetto_trace.json.gz" in names
    assert read_jsonl(tmp_path / "traced" / "metrics.jsonl") == read_jsonl(
        tmp_path / "plain" / "metrics.jsonl"
    )
    assert not (tmp_path / "plain" / "profile").exists()


@pytest.mark.parametrize("text", ["10", "10:5", "5:25", "a:b", "-1:5"])
def test_a_malformed_range_is_refused(text):
    with pytest.raises(UserError, match="config.log.profile_steps must be"):
        jaxlab.load_config("mlp_moons:smoke", {**RUN, "log.profile_steps": text})
