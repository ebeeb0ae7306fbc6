import pytest

from selfnas.config import apply_override, build_config
from selfnas.errors import ConfigError
from selfnas.training.schedule import warmup_cosine


def test_warmup_then_cosine():
    lrs = [warmup_cosine(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.5, abs=1e-9)
    assert lrs[-1] < 0.001
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_config_overrides_and_files(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[optim]\nepochs = 3\n[method]\nname = "moco"\n')
    cfg = build_config(toml, ["optim.batch_size=64", "method.hparams={queue_size: 128}"])
    assert cfg.optim.epochs == 3 and cfg.method.name == "moco" and cfg.optim.batch_size == 64
    assert cfg.method.hparams == {"queue_size": 128}
    yml = tmp_path / "c.yaml"
    yml.write_text("run:\n  seed: 7\n")
    assert build_config(yml).run.seed == 7


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("optim.batch_size=0", "optim.batch_size"),
        ("optim.lr=-1", "optim.lr"),
        ("method.name=dino", "method.name"),
        ("optim.nonsense=1", "optim.nonsense"),
        ("data.val_fraction=1.5", "data.val_fraction"),
    ],
)
def test_bad_values_give_one_line(override, fragment):
    with pytest.raises(ConfigError) as err:
        build_config(overrides=[override])
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        build_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim\n")
    with pytest.raises(ConfigError, match="not valid"):
        build_config(bad)
    with pytest.raises(ConfigError):
        apply_override({}, "novalue")
