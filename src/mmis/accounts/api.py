"""API of payments and receivables: /api/v1/payments (Idempotency-Key), /api/v1/callbacks/payments
(HMAC-signed, no user), agency collection files, balances, statements, arrears. Rows outside the
caller's scope are 404."""

from __future__ import annotations

import hashlib
import json
from datetime import date

from django.utils import timezone
from ninja import Field, Header, Query, Router, Schema, Status
from ninja.errors import AuthenticationError, HttpError
from ninja.security import APIKeyHeader, HttpBearer, SessionAuth

from mmis.accounts import agency, channels, counter, queries, services
from mmis.accounts.models import COUNTER_CHANNELS, AgencyFile, CashierSession, LedgerEntry, Payment
from mmis.common.errors import InvalidInput, NotFound
from mmis.common.money import money_str
from mmis.org import services as org_services
from mmis.org.models import Org
from mmis.org.scope import DataScope

router = Router(tags=["accounts"])

PAYMENT_ROLES = ("cashier", "counter_staff", "manager", "administrator")
API_CHANNELS = ("cash", "pos", "cheque", "online", "agency")


def _require(request, roles=PAYMENT_ROLES) -> None:
    if not (request.user.is_superuser or request.user.has_role(*roles)):
        raise HttpError(403, "your roles do not allow taking payments")


class TokenCaller:
    """An API token not looked up yet: the lean payment path checks it (active user, not revoked,
    not expired) in the very statement that locks the account; any other path looks it up first."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token


def _token_caller(request, token: str):
    if counter.available():
        return TokenCaller(token)
    user = org_services.user_for_token(token)
    if user is not None:
        request.user = user
    return user


class PaymentBearer(HttpBearer):
    def authenticate(self, request, token):
        return _token_caller(request, token) if token else None


class PaymentTokenHeader(APIKeyHeader):
    param_name = "X-API-Token"

    def authenticate(self, request, key):
        return _token_caller(request, key) if key else None


class PaymentSession(SessionAuth):
    def authenticate(self, request, key):
        user = super().authenticate(request, key)
        return user if user is not None and user.is_active else None


def _caller_user(request):
    """The signed-in user of the request; a deferred API token is looked up now (401 if bad)."""
    caller = request.auth
    if isinstance(caller, TokenCaller):
        user = org_services.user_for_token(caller.token)
        if user is None:
            raise AuthenticationError()
        request.user = user
    return request.user


class PaymentIn(Schema):
    account_no: str = Field(..., max_length=20)
    amount: str = Field(..., description='yuan, at most two decimals, as a string ("120.50")')
    channel: str = Field("cash", description="cash | pos | cheque | online | agency")
    bill_document_no: str | None = Field(None, description="pay this bill first (designated debt)")
    require_open: bool = False
    reference: str = Field("", max_length=64)
    channel_txn_id: str = Field("", max_length=64)


def _payment_out(p: Payment) -> dict:
    # a payment posted by this very request cannot have been reversed yet
    reversed_ = (
        False
        if getattr(p, "was_created", False)
        else LedgerEntry.objects.filter(reverses_id=p.entry_id).exists()
    )
    return {
        "id": p.pk,
        "receipt_no": p.receipt_no,
        "account_no": p.account.account_no,
        "amount": money_str(p.amount),
        "channel": p.channel,
        "paid_at": p.paid_at.isoformat(),
        "business_date": p.business_date.isoformat(),
        "balance": money_str(queries.balance(p.account_id)),
        "reversed": reversed_,
    }


@router.post(
    "/payments",
    response={201: dict, 200: dict},
    auth=[PaymentBearer(), PaymentTokenHeader(), PaymentSession()],
)
def create_payment(request, payload: PaymentIn, idempotency_key: str = Header(..., alias="Idempotency-Key")):
    """Take a payment. The `Idempotency-Key` header is required: the same key with the same body
    returns the payment already posted (200); with another body it is refused (422)."""
    key = idempotency_key.strip()
    lean = (
        counter.available()
        and 0 < len(key) <= 100
        and payload.channel in COUNTER_CHANNELS
        and not payload.bill_document_no
        and not payload.channel_txn_id
    )
    if lean:
        # an ordinary counter payment: the lean path (PostgreSQL); anything it declines, and every
        # error, is answered by the general path below
        try:
            amount = services.parse_amount(payload.amount)
        except InvalidInput:
            amount = None
        caller = request.auth
        if amount is not None:
            out = counter.take_counter_payment(
                token=caller.token if isinstance(caller, TokenCaller) else None,
                user_id=None if isinstance(caller, TokenCaller) else caller.pk,
                account_no=payload.account_no.strip(),
                amount=amount,
                channel=payload.channel,
                roles=PAYMENT_ROLES,
                idempotency_key=key,
                body=payload.dict(),
                at=timezone.now(),
                reference=payload.reference,
            )
            if out is not None:
                return Status(201, out)
    _caller_user(request)
    _require(request)
    if payload.channel not in API_CHANNELS:
        # bank withholding and IC-card vends are posted by their own documents (batch line, card
        # purchase record), never as a bare payment
        raise InvalidInput(path="channel", errors=f"is one of {', '.join(API_CHANNELS)}")
    if not key or len(key) > 100:
        raise InvalidInput(path="Idempotency-Key", errors="is required (at most 100 characters)")
    body = payload.dict()
    request_hash = hashlib.sha256(
        json.dumps({"u": request.user.pk, **body}, sort_keys=True).encode()
    ).hexdigest()
    existing = services._existing_payment("", "", key, request_hash)
    if existing is not None:
        return Status(200, _payment_out(existing))
    account = queries.get_account_by_no(request.user, payload.account_no)
    at = timezone.now()
    session = None
    if payload.channel in COUNTER_CHANNELS:
        session = CashierSession.objects.filter(cashier=request.user, state=CashierSession.State.OPEN).first()
        if session is None:
            session = services.open_session(cashier=request.user, at=at)
    designated = None
    if payload.bill_document_no:
        designated = LedgerEntry.objects.filter(account=account, document_no=payload.bill_document_no).first()
        if designated is None:
            raise InvalidInput(path="bill_document_no", errors="no such bill on this account")
    p = services.take_payment(
        account=account,
        amount=payload.amount,
        channel=payload.channel,
        at=at,
        actor=request.user,
        session=session,
        idempotency_key=key,
        request_hash=request_hash,
        designated=designated,
        require_open=payload.require_open,
        reference=payload.reference,
        channel_txn_id=payload.channel_txn_id,
    )
    return Status(201, _payment_out(p))


@router.get("/payments/{payment_id}", response=dict)
def get_payment(request, payment_id: int):
    return _payment_out(queries.get_payment(request.user, payment_id))


class ReversalIn(Schema):
    reason: str = Field(..., min_length=2, max_length=200)


@router.post("/payments/{payment_id}/reversal-requests", response={201: dict})
def request_reversal(request, payment_id: int, payload: ReversalIn):
    _require(request)
    p = queries.get_payment(request.user, payment_id)
    ap = services.request_approval(
        kind="reversal",
        account=p.account,
        actor=request.user,
        at=timezone.now(),
        reason=payload.reason,
        target=p.entry,
    )
    return Status(201, {"approval_id": ap.pk, "state": ap.state})


@router.post("/callbacks/payments", auth=None, response={200: dict, 401: dict, 409: dict, 422: dict})
def payment_callback(request, x_mmis_signature: str = Header("", alias="X-MMIS-Signature")):
    """Online payment / agency collection callback. The raw body is signed with HMAC-SHA256
    (`X-MMIS-Signature`, hex; key MMIS_CALLBACK_SECRET). A wrong signature (401), a replay or a
    stale timestamp (409), a bad body (422) are rejected and logged; nothing is posted."""
    try:
        p = channels.handle_callback(body=request.body, signature=x_mmis_signature, at=timezone.now())
    except channels.CallbackRejected as exc:
        return Status(exc.status, exc.as_dict())
    return Status(200, {"status": "posted", "receipt_no": p.receipt_no, "amount": money_str(p.amount)})


@router.get("/balances/{account_no}", response=dict)
def get_balance(request, account_no: str):
    acc = queries.get_account_by_no(request.user, account_no)
    on = timezone.localdate()
    items = queries.open_items(acc, on=on)
    return {
        "account_no": acc.account_no,
        "name": acc.name,
        "balance": money_str(queries.balance(acc)),
        "prepayment": money_str(queries.prepayment(acc)),
        "open_items": [
            {
                "document_no": i.entry.document_no,
                "kind": i.entry.kind,
                "due_date": i.entry.due_date.isoformat() if i.entry.due_date else None,
                "open": money_str(i.open),
                "days_overdue": i.days_overdue,
                "late_fee_if_paid_today": money_str(i.accrued_fee),
            }
            for i in items
        ],
    }


class StatementQuery(Schema):
    start: date | None = None
    end: date | None = None


@router.get("/statements/{account_no}", response=dict)
def get_statement(request, account_no: str, q: Query[StatementQuery]):
    acc = queries.get_account_by_no(request.user, account_no)
    st = queries.statement(acc, start=q.start, end=q.end)
    return {
        "account_no": acc.account_no,
        "opening": money_str(st["opening"]),
        "closing": money_str(st["closing"]),
        "lines": [
            {
                "document_no": ln.entry.document_no,
                "kind": ln.entry.kind,
                "business_date": ln.entry.business_date.isoformat(),
                "debit": money_str(ln.debit),
                "credit": money_str(ln.credit),
                "balance": money_str(ln.running),
            }
            for ln in st["lines"]
        ],
    }


class ArrearsQuery(Schema):
    on: date | None = None
    org: int | None = Field(None, description="org id within your scope (its subtree); default your own org")
    search: str = Field("", max_length=50, description="account number prefix, or account/customer name")
    min_days: int = Field(1, ge=0)
    min_amount: str = Field("", description="minimum total per account, a decimal string like 100.00")
    bucket: str = Field("", description="ageing bucket of the account's oldest overdue debt: 1-30, 31-90, …")
    order: str = Field("amount", description="amount (largest first), days (oldest first) or account_no")
    offset: int = Field(0, ge=0)
    limit: int = Field(100, ge=1, le=1000)


def _money_param(text: str, path: str):
    from decimal import Decimal, InvalidOperation

    text = (text or "").strip()
    if not text:
        return services.ZERO
    try:
        value = Decimal(text)
        if not value.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        raise InvalidInput(f"not a decimal amount: {text[:20]!r}", path=path) from None
    if value < 0:
        raise InvalidInput("must not be negative", path=path)
    return value


def _ageing(ageing: dict) -> dict:
    return {k: money_str(v) for k, v in ageing.items()}


@router.get("/arrears", response=dict)
def get_arrears(request, q: Query[ArrearsQuery]):
    """Accounts in arrears under the filters, a page of them (`offset`, `limit`), their count,
    total and ageing (all of them, not the page), and the ageing by direct child org (`by_org`)."""
    from mmis.org.scope import chosen_org

    on = q.on or timezone.localdate()
    org = chosen_org(
        queries.arrears_orgs(request.user),
        str(q.org) if q.org is not None else "",
        home_id=request.user.org_id,
    )
    if org is None:
        raise NotFound("no org in your data scope")
    filters = {
        "org": org,
        "min_days": q.min_days,
        "min_amount": _money_param(q.min_amount, "min_amount"),
        "search": q.search,
        "bucket": q.bucket,
    }
    totals = queries.arrears_totals(request.user, on=on, **filters)
    rows = queries.arrears(request.user, on=on, order=q.order, offset=q.offset, limit=q.limit, **filters)
    by_org, by_org_totals = queries.ageing_by_org(request.user, on=on, **filters)
    return {
        "on": on.isoformat(),
        "org": {"id": org.pk, "code": org.code, "name": org.name},
        "accounts": totals.accounts,
        "total": money_str(totals.total),
        "ageing": _ageing(totals.ageing),
        "offset": q.offset,
        "limit": q.limit,
        "rows": [
            {
                "account_no": r.account_no,
                "name": r.name,
                "org_id": r.org_id,
                "total": money_str(r.total),
                "items": r.items,
                "oldest_due": r.oldest_due.isoformat() if r.oldest_due else None,
                "days": r.days,
                "bucket": r.bucket,
                "ageing": _ageing(r.buckets),
                "on_plan": r.on_plan,
            }
            for r in rows
        ],
        "by_org": {
            "rows": [
                {
                    "org": {"id": x.org.pk, "code": x.org.code, "name": x.org.name},
                    "own": x.own,
                    "accounts": x.accounts,
                    "total": money_str(x.total),
                    "ageing": _ageing(x.ageing),
                }
                for x in by_org
            ],
            "totals": {
                "accounts": by_org_totals.accounts,
                "total": money_str(by_org_totals.total),
                "ageing": _ageing(by_org_totals.ageing),
            },
        },
    }


__all__ = ["NotFound", "router"]


# --- agency collection files (代收对账) --------------------------------------------------------------
AGENCY_ROLES = ("cashier", "manager", "administrator")


class AgencyFileIn(Schema):
    agency: str = Field(..., description="the collecting agency, e.g. 邮储银行代收")
    content: str = Field(..., description="the file: txn_id,account_no,amount,paid_at per line (UTF-8 CSV)")
    org_id: int | None = Field(None, description="whose accounts the file pays (default: the caller's org)")


def _agency_file_out(f) -> dict:
    return {"id": f.pk, "org_id": f.org_id, "imported_at": f.imported_at.isoformat(), **f.report}


@router.post("/agency-files", response={200: dict, 201: dict})
def import_agency_file(request, payload: AgencyFileIn):
    """Post an agency collection file for the accounts of an org in the caller's scope. A bad file
    is refused whole (422, every bad line named `lines[N].field`); the same file again answers
    200 with the first import's report and posts nothing."""

    _require(request, AGENCY_ROLES)
    scope = DataScope.for_user(request.user)
    org = Org.objects.filter(pk=payload.org_id).first() if payload.org_id is not None else request.user.org
    if org is None or not scope.contains_org(org):
        raise NotFound("org: no such org in your data scope")
    report = agency.import_file(
        org=org, agency=payload.agency, content=payload.content, actor=request.user, at=timezone.now()
    )
    f = AgencyFile.objects.get(sha256=hashlib.sha256(payload.content.encode()).hexdigest())
    return Status(200 if report.get("already_imported") else 201, _agency_file_out(f) | report)


@router.get("/agency-files", response=dict)
def list_agency_files(request, limit: int = Query(50, ge=1, le=500)):

    files = DataScope.for_user(request.user).filter(AgencyFile.objects.all()).order_by("-imported_at", "-pk")
    return {"files": [_agency_file_out(f) for f in files[:limit]]}
