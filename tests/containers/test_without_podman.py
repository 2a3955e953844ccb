"""``python -m core image`` where podman is missing, or asked for nothing: one clear line, exit 2."""

from __future__ import annotations

import pytest

from tests.conftest import cli_on


def test_no_podman_names_the_command_that_installs_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no podman on it
    with cli_on(monkeypatch, tmp_path / "ws") as cli:
        assert cli.main(["image", "--model", "kobe"]) == 2
    err = capsys.readouterr().err
    assert "podman is not installed" in err
    assert "scripts/ensure-containers" in err
    assert "Traceback" not in err


def test_image_needs_a_model_or_the_studio(monkeypatch, tmp_path, capsys):
    with cli_on(monkeypatch, tmp_path / "ws") as cli:
        assert cli.main(["image"]) == 2
    assert "--model NAME[@ALIAS]" in capsys.readouterr().err


@pytest.mark.parametrize("tag", ["Upper/Case:1", "with space", ""])
def test_an_unusable_image_name_is_refused(tag):
    from core import images
    from core.errors import BadInputError

    with pytest.raises(BadInputError, match="cannot be an image name"):
        images.check_tag(tag)
