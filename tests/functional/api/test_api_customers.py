import json

import pytest

from mmis.customers.models import Customer
from mmis.org.models import AuditLog
from mmis.org.services import issue_api_token

pytestmark = pytest.mark.django_db

NEW = {
    "org_id": None,
    "kind": "individual",
    "name": "王芳",
    "id_type": "resident_id",
    "id_number": "11010519491231002X",
    "phone": "13700137000",
    "address": {"region": "示范省第1市甲县", "detail": "建设路8号"},
}


def post(client, url, body, **headers):
    return client.post(url, data=json.dumps(body), content_type="application/json", **headers)


def test_anonymous_is_401_in_the_error_shape(client, utility):
    r = client.get("/api/v1/customers")
    assert r.status_code == 401
    assert r.json()["errors"][0]["path"] == ""


def test_token_auth_and_scope(client, utility):
    token = issue_api_token(user=utility.users["counter_a"], name="test")
    r = client.get("/api/v1/customers", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 1 and body["items"][0]["customer_no"] == utility.customers["a"].customer_no
    assert body["items"][0]["id_number_mask"] == "1101**********002X"
    r = client.get("/api/v1/customers", HTTP_AUTHORIZATION="Bearer mmis_wrong")
    assert r.status_code == 401


def test_out_of_scope_is_404_not_403(login, utility):
    c = login(utility.users["counter_a"])
    other = utility.customers["b"]
    for url in (
        f"/api/v1/customers/{other.pk}",
        f"/api/v1/customers/{other.pk}/history",
        "/api/v1/customers/999999",
    ):
        r = c.get(url)
        assert r.status_code == 404, url
        assert "errors" in r.json()
    r = c.get(f"/api/v1/customers?q={other.customer_no}")
    assert r.json()["count"] == 0


def test_detail_history_and_as_of(login, utility):
    c = login(utility.users["counter_a"])
    a = utility.customers["a"]
    r = c.get(f"/api/v1/customers/{a.pk}")
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "张伟" and body["addresses"][0]["detail"] == "人民路12号"
    assert body["accounts"][0]["account_no"].startswith("61")
    r = c.patch(
        f"/api/v1/customers/{a.pk}",
        data=json.dumps({"name": "张伟强", "reason": "更正"}),
        content_type="application/json",
    )
    assert r.status_code == 200 and r.json()["name"] == "张伟强"
    hist = c.get(f"/api/v1/customers/{a.pk}/history").json()
    assert any(["户名", "张伟", "张伟强"] in e["changes"] for e in hist)


def test_create_customer_and_bad_input(login, utility):
    c = login(utility.users["counter_a"])
    body = {**NEW, "org_id": utility.stations[0].pk}
    r = post(c, "/api/v1/customers", body)
    assert r.status_code == 201, r.content
    assert r.json()["metering_points"] == []
    assert AuditLog.objects.filter(action="customer.create", actor=utility.users["counter_a"]).exists()

    n = Customer.objects.count()
    bad = {**body, "id_number": "110105194912310021", "name": "x" * 101}
    r = post(c, "/api/v1/customers", bad)
    assert r.status_code == 422
    paths = {e["path"] for e in r.json()["errors"]}
    assert "name" in paths  # over-long string caught by the schema
    r = post(c, "/api/v1/customers", {**body, "id_number": "110105194912310021"})
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"path": "id_number", "message": "wrong check digit: the last character should be X, not 1"}
    ]
    r = post(c, "/api/v1/customers", {**body, "org_id": utility.stations[1].pk})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "org_id"
    r = post(c, "/api/v1/customers", {**body, "address": {"region": 5}})
    assert r.status_code == 422
    assert {"address.region", "address.detail"} <= {e["path"] for e in r.json()["errors"]}
    r = c.post("/api/v1/customers", data="{not json", content_type="application/json")
    assert r.status_code in (400, 422) and "errors" in r.json()
    assert Customer.objects.count() == n


def test_role_without_write_permission_gets_403(login, utility):
    from mmis.org.services import create_user

    reader = create_user(
        username="rd", password="Mmis@2026-test", org=utility.counties[0], roles=["meter_reader"]
    )
    c = login(reader)
    r = post(c, "/api/v1/customers", {**NEW, "org_id": utility.stations[0].pk})
    assert r.status_code == 403 and r.json()["errors"][0]["message"]


def test_pagination_and_org_filter(login, utility):
    c = login(utility.users["admin"])
    r = c.get("/api/v1/customers?page_size=1&page=2")
    body = r.json()
    assert body["count"] == 2 and len(body["items"]) == 1 and body["page"] == 2
    r = c.get(f"/api/v1/customers?org_id={utility.counties[1].pk}")
    assert [i["customer_no"] for i in r.json()["items"]] == [utility.customers["b"].customer_no]
    r = c.get("/api/v1/customers?page_size=1000")
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "page_size"


def test_orgs_and_me(login, utility):
    c = login(utility.users["counter_a"])
    me = c.get("/api/v1/me").json()
    assert me["roles"] == ["counter_staff"] and me["scope"][0]["code"] == utility.counties[0].code
    orgs = c.get("/api/v1/orgs").json()
    assert {o["code"] for o in orgs} == {utility.counties[0].code, utility.stations[0].code}
    assert c.get(f"/api/v1/orgs/{utility.counties[1].pk}").status_code == 404


def test_openapi_is_published(client, utility):
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    assert "/api/v1/customers" in r.json()["paths"]
