"""compose.yaml (README "Running several replicas"): PostgreSQL, the schema migrated once,
then two replicas of one image on one database and one files volume. Docker cannot run
here; this reads the file as Compose does (YAML with anchors and merge keys)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def load(text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def test_compose_runs_two_replicas_on_one_postgresql_database() -> None:
    compose = load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "genrelay-1", "genrelay-2"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    replicas = [services["genrelay-1"], services["genrelay-2"]]
    for replica in replicas:
        assert replica["command"] == ["run"]
        assert replica["build"] == "."
        env = replica["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["DATA_DIR"] == "/data/files"
        assert "files:/data/files" in replica["volumes"]
        assert replica["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    assert replicas[0]["environment"] == replicas[1]["environment"]  # the same settings
    ports = [replica["ports"][0].split(":")[0] for replica in replicas]
    assert len(set(ports)) == 2  # each replica's /readyz and /metrics reachable
    assert set(compose["volumes"]) == {"pgdata", "files"}


def test_the_readme_shows_the_same_shape() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Running several replicas") :]
    block = section[section.index("```yaml") + len("```yaml") : section.index("```\n\n")]
    shown = load(block)
    assert set(shown["services"]) == set(load((ROOT / "compose.yaml").read_text())["services"])
    assert shown["services"]["genrelay-2"]["environment"]["DATABASE_URL"].startswith(
        "postgresql://"
    )
