"""Configuration layering and the checks that refuse unsafe settings."""

from __future__ import annotations

import pytest

from portal import create_app
from portal.settings import DEFAULTS
from portal.settings import DEV_SECRET_KEY
from portal.settings import ConfigError
from portal.settings import layered_config
from portal.settings import validate

GOOD_SECRET = "x" * 40


def test_defaults_then_file_then_environment_then_test_config(tmp_path):
    config_file = tmp_path / "portal.toml"
    config_file.write_text('imap_host = "file.example"\nimap_port = 993\nimap_security = "tls"\n')
    environ = {"PORTAL_CONFIG": str(config_file), "PORTAL_IMAP_PORT": "10993"}

    values = layered_config(environ=environ, test_config={"IMAP_SECURITY": "plain"})

    assert values["DATABASE_URL"] == DEFAULTS["DATABASE_URL"]  # default kept
    assert values["IMAP_HOST"] == "file.example"  # from the file
    assert values["IMAP_PORT"] == 10993  # environment wins over the file, as an int
    assert values["IMAP_SECURITY"] == "plain"  # test config wins over all


def test_environment_names_are_the_documented_ones():
    environ = {
        "PORTAL_DATABASE_URL": "postgresql://u:p@db.example:5432/mail",
        "PORTAL_SECRET_KEY": GOOD_SECRET,
        "PORTAL_IMAP_HOST": "imap.example",
        "PORTAL_IMAP_PORT": "143",
        "PORTAL_IMAP_SECURITY": "starttls",
    }
    values = layered_config(environ=environ)
    assert values["DATABASE_URL"] == "postgresql://u:p@db.example:5432/mail"
    assert values["SECRET_KEY"] == GOOD_SECRET
    assert values["IMAP_HOST"] == "imap.example"
    assert values["IMAP_PORT"] == 143
    assert values["IMAP_SECURITY"] == "starttls"


def test_every_setting_is_documented_in_the_example_file():
    import tomllib
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "config" / "portal.example.toml"
    documented = {key.upper() for key in tomllib.loads(example.read_text())}
    assert documented == set(DEFAULTS)


def test_unknown_key_in_file_is_refused(tmp_path):
    config_file = tmp_path / "portal.toml"
    config_file.write_text('imap_hots = "typo"\n')
    with pytest.raises(ConfigError, match="unknown setting 'imap_hots'"):
        layered_config(environ={"PORTAL_CONFIG": str(config_file)})


def test_missing_and_broken_files_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        layered_config(environ={"PORTAL_CONFIG": str(tmp_path / "nope.toml")})
    broken = tmp_path / "broken.toml"
    broken.write_text("imap_port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        layered_config(environ={"PORTAL_CONFIG": str(broken)})


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [("PORTAL_IMAP_PORT", "imap", "must be a number"), ("PORTAL_COOKIE_SECURE", "maybe", "true or false")],
)
def test_badly_typed_environment_values_are_refused(name, raw, message):
    with pytest.raises(ConfigError, match=message):
        layered_config(environ={name: raw})


def test_boolean_environment_values():
    assert layered_config(environ={"PORTAL_COOKIE_SECURE": "false"})["COOKIE_SECURE"] is False
    assert layered_config(environ={"PORTAL_COOKIE_SECURE": "1"})["COOKIE_SECURE"] is True


@pytest.mark.parametrize("secret", [None, "", DEV_SECRET_KEY])
def test_production_refuses_missing_or_default_secret(secret):
    values = dict(DEFAULTS, SECRET_KEY=secret)
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        validate(values, debug=False, testing=False)


def test_production_refuses_short_secret():
    with pytest.raises(ConfigError, match="too short"):
        validate(dict(DEFAULTS, SECRET_KEY="short"), debug=False, testing=False)


def test_debug_and_testing_accept_the_development_secret():
    validate(dict(DEFAULTS), debug=True, testing=False)
    validate(dict(DEFAULTS), debug=False, testing=True)


def test_imap_security_must_be_known():
    with pytest.raises(ConfigError, match="plain, starttls, tls"):
        validate(dict(DEFAULTS, IMAP_SECURITY="ssl"), debug=True, testing=False)


def test_database_url_must_be_a_libpq_url():
    with pytest.raises(ConfigError, match="libpq URL"):
        validate(dict(DEFAULTS, DATABASE_URL="mysql://x"), debug=True, testing=False)


def test_create_app_refuses_to_start_without_secret(monkeypatch):
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        create_app()


def test_create_app_reads_the_environment(monkeypatch):
    monkeypatch.setenv("PORTAL_SECRET_KEY", GOOD_SECRET)
    monkeypatch.setenv("PORTAL_IMAP_PORT", "10143")
    app = create_app()
    assert app.config["IMAP_PORT"] == 10143
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_create_app_opens_no_connection():
    # An unreachable database must not stop the app from being built: the pool
    # opens on the first request, in the worker process.
    app = create_app({"TESTING": True, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert app.extensions["portal_db"].pool is None


def test_unreadable_ca_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="IMAP_TLS_CA_FILE"):
        validate(dict(DEFAULTS, IMAP_TLS_CA_FILE=str(tmp_path / "missing.pem")), debug=True, testing=False)
