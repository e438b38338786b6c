"""The customer 360° summary strip: money (balance, arrears, prepayment), recent bills and open
service applications, read from the apps that own them (web sits above all of them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django.urls import NoReverseMatch, reverse

from mmis.customers.models import Customer

ZERO = Decimal("0.00")


@dataclass
class AccountMoney:
    account_id: int
    account_no: str
    balance: Decimal
    prepayment: Decimal
    arrears: Decimal
    oldest_overdue_days: int
    pay_url: str = ""
    statement_url: str = ""


@dataclass
class Overview:
    accounts: list[AccountMoney] = field(default_factory=list)
    bills: list[dict] = field(default_factory=list)
    processes: list[dict] = field(default_factory=list)
    start_service_url: str = ""

    @property
    def arrears(self) -> Decimal:
        return sum((a.arrears for a in self.accounts), ZERO)

    @property
    def prepayment(self) -> Decimal:
        return sum((a.prepayment for a in self.accounts), ZERO)


def _url(name: str, *args) -> str:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


COLLECT_ROLES = ("cashier", "counter_staff", "manager", "administrator")


def customer_overview(customer: Customer, *, today: date, can_collect: bool, bills: int = 6) -> Overview:
    out = Overview(start_service_url=_url("services:index"))
    from mmis.accounts import queries as ledger

    for account in customer.accounts.order_by("pk"):
        items = ledger.open_items(account, on=today)
        overdue = [i for i in items if i.days_overdue > 0]
        out.accounts.append(
            AccountMoney(
                account_id=account.pk,
                account_no=account.account_no,
                balance=ledger.balance(account),
                prepayment=ledger.prepayment(account),
                arrears=sum((i.open for i in overdue), ZERO),
                oldest_overdue_days=max((i.days_overdue for i in overdue), default=0),
                pay_url=_url("accounts:pay", account.pk) if can_collect else "",
                statement_url=_url("accounts:statement", account.pk),
            )
        )
    from mmis.billing.models import Bill

    for bill in Bill.objects.filter(customer_id=customer.pk).order_by("-period_start", "-pk")[:bills]:
        out.bills.append(
            {
                "number": bill.number,
                "period_start": bill.period_start,
                "period_last": bill.period_end - timedelta(days=1),
                "kwh": bill.energy_kwh,
                "amount": bill.amount,
                "state": bill.get_state_display(),
                "url": _url("billing:bill", bill.pk),
            }
        )
    from mmis.workflow.models import ProcessInstance

    running = ProcessInstance.objects.filter(
        subject_type="customers.customer", subject_id=str(customer.pk), state=ProcessInstance.State.RUNNING
    ).order_by("-started_at")[:10]
    for p in running:
        out.processes.append(
            {
                "number": p.number,
                "title": p.title,
                "started_at": p.started_at,
                "due_at": p.due_at,
                "url": _url("workflow:order", p.pk),
            }
        )
    return out
