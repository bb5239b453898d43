"""The commands on the fake engine: ``predict`` and ``track`` build their Detector in one place
(:func:`yolo_ov.cli._options.open_detector`); :func:`use_fake_detector` puts a fake-engine Detector there."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tests.fakes import fake_detector
from yolo_ov.cli import _options, app

runner = CliRunner()


def use_fake_detector(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> list[dict[str, Any]]:
    """Make ``predict``/``track`` run on :func:`tests.fakes.fake_detector`; returns the calls made
    (``model``, ``runtime``, ``detect`` each), so a test can tell whether a model was loaded at all."""
    calls: list[dict[str, Any]] = []

    def open_detector(model: Any, *, runtime: Any, detect: Any) -> Any:
        calls.append({"model": model, "runtime": runtime, "detect": detect})
        return fake_detector(mode=runtime.mode.value, detect=detect, **kwargs)

    monkeypatch.setattr(_options, "open_detector", open_detector)
    return calls


def invoke(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
