"""Backend registry: names, versions, self-description, errors."""

from __future__ import annotations

import logging

import pytest

from dalp_moo import backends
from dalp_moo.backends import myriadx
from dalp_moo.errors import BackendError


def test_available_lists_all_backends_with_versions() -> None:
    av = backends.available()
    assert {"analytic", "openvino", "myriadx"} <= set(av)
    assert all(isinstance(v, str) and v for v in av.values())


def test_unknown_backend_is_a_one_line_error_with_hint() -> None:
    with pytest.raises(BackendError) as exc:
        backends.get("openvin")
    msg = str(exc.value)
    assert "'openvino'" in msg and "available" in msg and "\n" not in msg


@pytest.mark.parametrize("name,emulated", [("analytic", True), ("openvino", False), ("myriadx", True)])
def test_info_states_device_versions_and_emulation(name: str, emulated: bool) -> None:
    b = backends.get(name)
    info = b.info()
    assert info.name == name and info.version == backends.available()[name]
    assert info.device
    assert info.emulated is emulated  # no Myriad X device on the test hosts
    if name != "analytic":
        assert info.details["openvino_version"]
        assert info.details["torch_version"]


def test_openvino_info_has_device_properties() -> None:
    d = backends.get("openvino").info().details
    assert d["FULL_DEVICE_NAME"] and d["INFERENCE_PRECISION_HINT"]
    assert d["streams"] == 1 and "CPU" in d["available_devices"]


def test_myriadx_warns_once_per_process_that_it_is_emulated(caplog: pytest.LogCaptureFixture) -> None:
    myriadx._warned_emulated = False
    with caplog.at_level(logging.WARNING, logger="dalp_moo"):
        backends.get("myriadx")
        backends.get("myriadx")
    hits = [r for r in caplog.records if "EMULATED" in r.getMessage()]
    assert len(hits) == 1


def test_myriadx_rejects_unknown_option_and_forced_real_device() -> None:
    with pytest.raises(BackendError, match="has no option .turbo."):
        backends.get("myriadx", turbo=True)
    with pytest.raises(BackendError, match="no MYRIAD device"):
        backends.get("myriadx", emulate=False)


@pytest.mark.parametrize("name", sorted(backends.available()))
def test_every_backend_option_is_documented(name: str) -> None:
    from dalp_moo.backends.registry import options

    opts = options(name)
    assert opts, name
    assert not [o.name for o in opts if not o.doc.strip()], name


def test_options_lists_constructor_and_dataclass_options_with_defaults() -> None:
    from dalp_moo.backends.registry import options

    ov = {o.name: o for o in options("openvino")}
    assert ov["passes"].default == 1 and ov["precision"].default == "f32"
    assert "device" not in ov  # that is backend.device
    mx = {o.name: o for o in options("myriadx")}
    assert mx["streams"].default == 2 and "executor streams" in mx["streams"].doc
    assert mx["post_op_shaves"].doc.startswith("SHAVEs of an activation")
    with pytest.raises(BackendError, match="unknown backend"):
        options("tpu9000")
