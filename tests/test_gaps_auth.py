"""Who may read metrics (apps/metrics/auth.py): the exact answers, and the edges of the rules."""

from __future__ import annotations

import pytest

from apps.metrics.auth import bearer_token, is_superadmin, token_matches
from tests.test_metrics_api import TOKEN, published  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db

REALM = 'Bearer realm="flowwatch metrics"'


def test_an_anonymous_request_is_told_how_to_get_in(client, published):  # noqa: F811
    response = client.get("/api/metrics/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == REALM
    assert response.json() == {
        "error": "authentication_required",
        "detail": "Sign in as a superadmin or send Authorization: Bearer <METRICS_API_TOKEN>."}


def test_a_wrong_token_is_told_so_with_the_realm(client, published, settings):  # noqa: F811
    settings.METRICS_API_TOKEN = TOKEN
    response = client.get("/api/metrics/", HTTP_AUTHORIZATION="Bearer nope")
    assert response["WWW-Authenticate"] == REALM
    assert response.json() == {"error": "invalid_token", "detail": "The bearer token is not valid."}


def test_a_signed_in_non_superadmin_is_forbidden_without_a_login_challenge(client, published, staff):  # noqa: F811
    client.force_login(staff)
    response = client.get("/api/metrics/")
    assert response.status_code == 403
    assert not response.has_header("WWW-Authenticate")
    assert response.json() == {"error": "forbidden", "detail": "Only superadmins may read metrics."}


@pytest.mark.parametrize("header", [f"bearer {TOKEN}", f"BEARER {TOKEN}", f"Bearer  {TOKEN} "])
def test_the_scheme_is_case_blind_and_spaces_around_the_token_do_not_count(client, published, settings,  # noqa: F811
                                                                             header):
    settings.METRICS_API_TOKEN = TOKEN
    assert client.get("/api/metrics/", HTTP_AUTHORIZATION=header).status_code == 200


def test_another_scheme_is_no_token_so_the_session_decides(client, published, superadmin, settings):  # noqa: F811
    settings.METRICS_API_TOKEN = TOKEN
    client.force_login(superadmin)
    assert client.get("/api/metrics/", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 200
    client.logout()
    assert client.get("/api/metrics/", HTTP_AUTHORIZATION=f"Token {TOKEN}").json()["error"] \
        == "authentication_required"


def test_the_header_is_split_into_scheme_and_token():
    class Request:
        def __init__(self, header: str | None) -> None:
            self.headers = {} if header is None else {"Authorization": header}

    assert bearer_token(Request(f"Bearer {TOKEN}")) == TOKEN
    assert bearer_token(Request("Bearer")) == ""
    assert bearer_token(Request("Bearerx abc")) is None
    assert bearer_token(Request(None)) is None


def test_an_empty_token_never_matches_even_an_empty_setting(settings):
    settings.METRICS_API_TOKEN = TOKEN
    assert token_matches(TOKEN) is True
    assert token_matches("") is False
    settings.METRICS_API_TOKEN = ""
    assert token_matches("") is False
    settings.METRICS_API_TOKEN = None
    assert token_matches("x") is False


def test_only_an_active_superuser_is_a_superadmin(django_user_model):
    boss = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw")
    assert is_superadmin(boss) is True
    boss.is_active = False
    assert is_superadmin(boss) is False
    assert is_superadmin(None) is False
    assert is_superadmin(django_user_model.objects.create_user("plain", "p@example.com", "pw", is_staff=True)) is False


def test_an_inactive_superuser_session_is_not_let_in(client, published, superadmin):  # noqa: F811
    client.force_login(superadmin)
    superadmin.is_active = False
    superadmin.save()
    assert client.get("/api/metrics/").status_code in (401, 403)


@pytest.mark.parametrize("given", ["XXXX", "None", "anything", " "])
def test_no_token_gets_in_while_the_setting_is_empty_or_absent(settings, given):
    settings.METRICS_API_TOKEN = ""
    assert token_matches(given) is False
    del settings.METRICS_API_TOKEN
    assert token_matches(given) is False
