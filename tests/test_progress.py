"""What a run shows off a terminal (a file, a pipe, a batch job): a line at each evaluation and
every $JAXLAB_PROGRESS_SECONDS seconds, where it resumes, that it had finished; nothing if quiet."""

import re

import jax
import pytest

import jaxlab
from jaxlab.loop.train import summary_line

LINE = re.compile(
    r"^jaxlab: step (\d+)/(\d+) \((\d+)%\) \d+\.\d steps/s( ETA \S+)? "
    r"train/loss=\S+( eval/accuracy=\S+ eval/loss=\S+)?$"
)


def _train(workdir, quiet=False, **overrides):
    config = jaxlab.load_config("mlp_moons:smoke", {"train.log_every": 10, **overrides})
    return jaxlab.train(
        config, workdir, quiet=quiet, devices=jax.devices()[:1], allow_config_change=True
    )


def _progress_lines(err):
    lines = [line for line in err.splitlines() if line.startswith("jaxlab: step ")]
    assert all(LINE.match(line) for line in lines), lines
    return [LINE.match(line) for line in lines]


def test_off_a_terminal_a_line_at_each_evaluation_then_where_it_resumes(tmp_path, capsys):
    _train(tmp_path / "run")  # 40 steps, evaluated at 20 and 40
    lines = _progress_lines(capsys.readouterr().err)
    assert [(m[1], m[2], m[3]) for m in lines] == [("20", "40", "50"), ("40", "40", "100")]
    assert all(m[5] for m in lines)  # with the evaluation's metrics
    assert lines[0][4] and not lines[1][4]  # time left, until the end

    with pytest.warns(UserWarning, match="with a changed config"):
        _train(tmp_path / "run", **{"train.steps": 60})
    err = capsys.readouterr().err
    assert f"jaxlab: resuming {tmp_path / 'run'} from step 40 of 60\n" in err
    assert [m[1] for m in _progress_lines(err)] == ["60"]

    final = _train(tmp_path / "run", **{"train.steps": 60})
    err = capsys.readouterr().err
    assert (
        f"jaxlab: {tmp_path / 'run'} had already finished (step 60 of 60); nothing to train" in err
    )
    assert _progress_lines(err) == []
    assert final["step"] == 60 and "wall_time_s" not in final  # it did not train
    line = summary_line("mlp_moons:smoke", final)
    assert line.startswith("jaxlab: mlp_moons:smoke step=60 train/accuracy=")
    assert line.endswith(" (finished before)")


def test_every_n_seconds_between_evaluations_and_nothing_when_quiet(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("JAXLAB_PROGRESS_SECONDS", "0")
    _train(tmp_path / "often")
    lines = _progress_lines(capsys.readouterr().err)
    assert [m[1] for m in lines] == ["10", "20", "30", "40"]
    assert [bool(m[5]) for m in lines] == [False, True, True, True]  # the latest evaluation kept
    _train(tmp_path / "quiet", quiet=True)
    assert capsys.readouterr().err == ""


def test_a_bad_interval_is_one_warning_and_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXLAB_PROGRESS_SECONDS", "soon")
    with pytest.warns(UserWarning, match="JAXLAB_PROGRESS_SECONDS='soon' is not a number"):
        _train(tmp_path / "run")


def test_the_bar_shows_the_latest_evaluation_beside_the_loss(monkeypatch, capsys):
    from jaxlab.loop import progress

    monkeypatch.setattr(progress, "in_notebook", lambda: True)  # a bar without a terminal
    with progress.Progress(10, 0, shown=True) as shows:
        shows.update(5, {"loss": 0.5}, {"eval/accuracy": 0.75, "eval/spectrum": [1.0, 0.5]})
        shows.update(10, {"loss": 0.25}, {})
    err = capsys.readouterr().err
    assert "10/10" in err and "loss=0.25, eval/accuracy=0.75" in err
    assert "jaxlab: step" not in err and "spectrum" not in err  # the bar; numbers only
