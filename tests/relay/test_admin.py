"""Read-only Django admin for Session and Connection history (relay/admin.py)."""

import pytest
from django.urls import reverse
from django.utils import timezone

from relay.models import Connection, Session


@pytest.fixture
def admin_client_logged(client, make_user):
    """A Django test client logged in as a superuser."""
    admin_user = make_user("admin@example.com", is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    return client


@pytest.fixture
def history(make_user, make_device):
    """Two users' sessions and connections: U1 (R1) has an ended and a live session, U2 (R2) one."""
    u1 = make_user("u1@example.com")
    u2 = make_user("u2@example.com")
    r1, _ = make_device("wimz_robot_01", owner=u1)
    r2, _ = make_device("wimz_robot_02", owner=u2)
    now = timezone.now()
    ended = Session.objects.create(
        user=u1,
        device=r1,
        app_channel="a1",
        robot_channel="r1",
        state="ended",
        end_reason="setup_timeout",
        ended_at=now,
    )
    live = Session.objects.create(user=u1, device=r1, app_channel="a2", robot_channel="r1", state="offered")
    other = Session.objects.create(user=u2, device=r2, app_channel="a3", robot_channel="r2")
    robot = Connection.objects.create(role="robot", device=r1, channel_name="chan.robot1", heartbeat_at=now)
    app = Connection.objects.create(
        role="app", user=u2, channel_name="chan.app2", heartbeat_at=now, disconnected_at=now, close_code=1000
    )
    return {"ended": ended, "live": live, "other": other, "robot": robot, "app": app}


def changelist(model):
    """URL of the admin changelist of `model`."""
    return reverse(f"admin:relay_{model._meta.model_name}_changelist")


def listed(response, *objects):
    """Which of `objects` the changelist response shows (by primary key in the result list)."""
    shown = {obj.pk for obj in response.context["cl"].result_list}
    return {obj.pk for obj in objects if obj.pk in shown}


def test_session_changelist_lists_all(admin_client_logged, history):
    """The session changelist renders and lists every user's sessions."""
    response = admin_client_logged.get(changelist(Session))
    assert response.status_code == 200
    assert listed(response, *[history[k] for k in ("ended", "live", "other")]) == {
        history[k].pk for k in ("ended", "live", "other")
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"state__exact": "ended"}, {"ended"}),
        ({"end_reason__exact": "setup_timeout"}, {"ended"}),
        ({"live": "yes"}, {"live", "other"}),
        ({"q": "u2@example.com"}, {"other"}),
        ({"q": "wimz_robot_01"}, {"ended", "live"}),
    ],
)
def test_session_filters_and_search(admin_client_logged, history, query, expected):
    """Sessions filter by state, end reason and liveness, and search by owner email or device_id."""
    response = admin_client_logged.get(changelist(Session), query)
    assert response.status_code == 200
    sessions = [history[k] for k in ("ended", "live", "other")]
    assert listed(response, *sessions) == {history[k].pk for k in expected}


def test_session_search_by_exact_uuid(admin_client_logged, history):
    """Searching a session UUID finds exactly that session."""
    response = admin_client_logged.get(changelist(Session), {"q": str(history["other"].pk)})
    sessions = [history[k] for k in ("ended", "live", "other")]
    assert listed(response, *sessions) == {history["other"].pk}


def test_session_date_hierarchy(admin_client_logged, history):
    """The date hierarchy drills down by creation date."""
    today = timezone.now()
    response = admin_client_logged.get(changelist(Session), {"created_at__year": today.year})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"role__exact": "robot"}, {"robot"}),
        ({"role__exact": "app"}, {"app"}),
        ({"open": "yes"}, {"robot"}),
        ({"q": "wimz_robot_01"}, {"robot"}),
        ({"q": "u2@example.com"}, {"app"}),
    ],
)
def test_connection_filters_and_search(admin_client_logged, history, query, expected):
    """Connections filter by role and open state, and search by device_id or user email."""
    response = admin_client_logged.get(changelist(Connection), query)
    assert response.status_code == 200
    assert listed(response, history["robot"], history["app"]) == {history[k].pk for k in expected}


@pytest.mark.parametrize("model", [Session, Connection])
def test_history_is_read_only(admin_client_logged, history, model):
    """No add, change or delete: the add page and delete are forbidden, a POST changes nothing, and
    the detail page renders as a read-only view."""
    obj = history["ended"] if model is Session else history["robot"]
    name = model._meta.model_name
    assert admin_client_logged.get(reverse(f"admin:relay_{name}_add")).status_code == 403
    assert admin_client_logged.get(reverse(f"admin:relay_{name}_delete", args=[obj.pk])).status_code == 403

    change_url = reverse(f"admin:relay_{name}_change", args=[obj.pk])
    view = admin_client_logged.get(change_url)
    assert view.status_code == 200
    assert b'name="_save"' not in view.content

    before = model.objects.filter(pk=obj.pk).values().get()
    assert admin_client_logged.post(change_url, {"state": "requested", "role": "app"}).status_code == 403
    assert model.objects.filter(pk=obj.pk).values().get() == before

    response = admin_client_logged.get(changelist(model))
    assert b"delete_selected" not in response.content


@pytest.mark.django_db
def test_admin_requires_staff(client, make_user):
    """A non-staff user is sent to the admin login page."""
    client.force_login(make_user("plain@example.com"))
    response = client.get(changelist(Session))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
