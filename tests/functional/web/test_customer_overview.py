"""The customer 360° page shows money owed, recent bills and open applications from their apps."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from mmis.accounts import services as ledger

pytestmark = pytest.mark.django_db


def test_overdue_charge_shows_as_arrears_with_a_pay_button(login, utility):
    customer = utility.customers["a"]
    account = customer.accounts.get()
    today = timezone.localdate()
    ledger.post_charge(
        account=account,
        amount=Decimal("123.45"),
        source_type="test.charge",
        source_id=1,
        document_no="T-1",
        due_date=today - timedelta(days=40),
        at=timezone.now(),
        actor=utility.users["admin"],
    )
    page = login(utility.users["counter_a"]).get(reverse("web:customer_detail", args=[customer.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "欠费 ¥123.45" in html
    assert "最长逾期 40 天" in html
    assert reverse("accounts:pay", args=[account.pk]) in html


def test_no_arrears_and_no_bills(login, utility):
    customer = utility.customers["a"]
    html = (
        login(utility.users["counter_a"])
        .get(reverse("web:customer_detail", args=[customer.pk]))
        .content.decode()
    )
    assert "无欠费" in html and "暂无账单" in html and "无在途业务" in html


def test_pay_button_only_for_roles_that_collect(login, utility):
    from mmis.org.services import create_user

    customer = utility.customers["a"]
    reader = create_user(
        username="rd1", password="Mmis@2026-test", org=utility.counties[0], roles=["meter_reader"]
    )
    html = login(reader).get(reverse("web:customer_detail", args=[customer.pk])).content.decode()
    assert reverse("accounts:pay", args=[customer.accounts.get().pk]) not in html
    assert reverse("accounts:statement", args=[customer.accounts.get().pk]) in html
