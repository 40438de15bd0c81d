"""Bad agent configs as data: each file maps to its exact error, naming the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main as agent_main
from agent.config import ConfigError, load_config

DATA = Path(__file__).parent / "testdata" / "agent-config"
REPO = Path(__file__).parent.parent

EXPECTED = {
    "unknown-key.yaml": "probes[0].prot: not a key here (remove it or check its spelling)",
    "bad-port.yaml": "probes[0].port: expected `int` <= 65535, got 70000 (correct the value)",
    "unknown-kind.yaml": "probes[0].kind: invalid value 'smokeping' (use one of: icmp, tcp, dns, http, traceroute, "
                         "throughput)",
    "missing-kind.yaml": "probes[0].kind: missing (add it: one of icmp, tcp, dns, http, traceroute, throughput)",
    "bad-clinic-id.yaml": "clinic_id: expected `str` matching regex '^[a-z0-9][a-z0-9_-]{0,62}$', got 'Clinic 42' "
                          "(correct the value)",
    "duplicate-name.yaml": "(top level): two icmp probes are named 'gw'; give each its own name",
    "throughput-no-url.yaml": "probes[0]: set download_url, upload_url or both",
    "not-yaml.yaml": "not valid YAML at line 4, column 4",
    "not-a-mapping.yaml": "the configuration must be a mapping",
    "zero-interval.yaml": "probes[0].interval_s: expected `float` >= 1.0, got 0 (correct the value)",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_config_is_refused_with_file_key_and_fix(name: str) -> None:
    path = DATA / name
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert EXPECTED[name] in message


def test_every_bad_config_file_has_an_expected_error() -> None:
    assert sorted(p.name for p in DATA.glob("*.yaml")) == sorted(EXPECTED)


def test_the_shipped_sample_config_is_valid() -> None:
    config = load_config(REPO / "firmware_configs" / "agent.yaml")
    assert config.clinic_id == "es-ib-0042"
    assert {spec.kind for spec in config.probes} == {"icmp", "dns", "http", "traceroute", "throughput"}


def test_check_config_command_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert agent_main(["check-config", "--config", str(REPO / "firmware_configs" / "agent.yaml")]) == 0
    assert "valid; clinic es-ib-0042, 6 probe(s)" in capsys.readouterr().out
    assert agent_main(["check-config", "--config", str(DATA / "bad-port.yaml")]) == 2
    assert "bad-port.yaml: probes[0].port" in capsys.readouterr().err


def test_probe_docs_are_rendered_from_the_registry() -> None:
    from agent.probes.docs import render

    assert (REPO / "docs" / "probes.md").read_text() == render(), "run: python -m agent.probes.docs > docs/probes.md"


def test_the_collector_sample_config_and_registry_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    from collector.cli import main as collector_main

    assert collector_main(["check-config", "--config", str(REPO / "collector" / "collector.sample.yaml")]) == 0
    assert "valid; store influx_v2, 2 clinics" in capsys.readouterr().out


def test_the_sample_registry_as_csv_is_the_same_registry() -> None:
    from collector.registry import load_registry

    csv = load_registry(REPO / "collector" / "clinics.sample.csv")
    assert csv == load_registry(REPO / "collector" / "clinics.sample.yaml")
