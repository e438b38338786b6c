"""Forms of the web pages. They only collect and redisplay what was typed: every rule lives in the
services, whose `InvalidInput` errors are put back next to the fields (see `errors.add_errors`)."""

from __future__ import annotations

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mmis.customers.models import Account, Customer


class BootstrapMixin:
    """Bootstrap classes on every widget, `is-invalid` on the fields with errors."""

    # required by the service (the form itself accepts blanks so the service can say why)
    service_required: tuple[str, ...] = ()

    def _style(self) -> None:
        for name, field in self.fields.items():
            field.mmis_required = name in self.service_required
            widget = field.widget
            is_select = isinstance(widget, forms.Select)
            css = ["form-select form-select-sm" if is_select else "form-control form-control-sm"]
            if self.is_bound and name in self.errors:
                css.append("is-invalid")
            widget.attrs["class"] = " ".join(css)

    def add_error(self, field, error):
        super().add_error(field, error)
        self._style()


def _blank(choices) -> list[tuple[str, str]]:
    return [("", "—"), *choices]


class CustomerCreateForm(BootstrapMixin, forms.Form):
    service_required = (
        "org",
        "kind",
        "name",
        "id_type",
        "id_number",
        "phone",
        "address_region",
        "address_detail",
    )
    org = forms.ChoiceField(label=_("供电单位"), required=False)
    kind = forms.ChoiceField(label=_("客户类型"), required=False, choices=_blank(Customer.Kind.choices))
    name = forms.CharField(label=_("户名"), required=False, max_length=200)
    id_type = forms.ChoiceField(label=_("证件类型"), required=False, choices=_blank(Customer.IdType.choices))
    id_number = forms.CharField(label=_("证件号码"), required=False, max_length=60)
    phone = forms.CharField(label=_("联系电话"), required=False, max_length=40)
    contact_name = forms.CharField(label=_("联系人"), required=False, max_length=100)
    industry_code = forms.CharField(label=_("行业分类"), required=False, max_length=20)
    address_region = forms.CharField(label=_("省市区"), required=False, max_length=200)
    address_street = forms.CharField(label=_("街道/乡镇"), required=False, max_length=200)
    address_detail = forms.CharField(label=_("详细地址"), required=False, max_length=400)
    address_postcode = forms.CharField(label=_("邮编"), required=False, max_length=12)
    payment_method = forms.ChoiceField(
        label=_("缴费方式"), required=False, choices=Account.PaymentMethod.choices, initial="counter"
    )
    bank_name = forms.CharField(label=_("开户银行"), required=False, max_length=120)
    bank_account = forms.CharField(label=_("银行账号"), required=False, max_length=60)
    opened_on = forms.DateField(
        label=_("立户日期"), required=True, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )

    def __init__(self, *args, org_choices: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["org"].choices = _blank(org_choices)
        self.fields["opened_on"].initial = timezone.localdate()
        self._style()

    def payload(self) -> dict:
        d = self.cleaned_data
        return {
            "kind": d["kind"],
            "name": d["name"],
            "id_type": d["id_type"],
            "id_number": d["id_number"],
            "phone": d["phone"],
            "contact_name": d["contact_name"],
            "industry_code": d["industry_code"],
            "address": {
                "region": d["address_region"],
                "street": d["address_street"],
                "detail": d["address_detail"],
                "postcode": d["address_postcode"],
            },
            "payment_method": d["payment_method"],
            "bank_name": d["bank_name"],
            "bank_account": d["bank_account"],
        }


class CustomerEditForm(BootstrapMixin, forms.Form):
    service_required = ("name",)
    name = forms.CharField(label=_("户名"), required=False, max_length=200)
    contact_name = forms.CharField(label=_("联系人"), required=False, max_length=100)
    industry_code = forms.CharField(label=_("行业分类"), required=False, max_length=20)
    phone = forms.CharField(label=_("联系电话"), required=False, max_length=40, help_text=_("留空表示不修改"))
    id_type = forms.ChoiceField(label=_("证件类型"), required=False, choices=Customer.IdType.choices)
    id_number = forms.CharField(
        label=_("证件号码"), required=False, max_length=60, help_text=_("留空表示不修改")
    )
    reason = forms.CharField(
        label=_("变更原因"), required=True, max_length=200, error_messages={"required": _("请填写变更原因")}
    )

    def __init__(self, *args, customer: Customer, **kwargs):
        self.customer = customer
        kwargs.setdefault(
            "initial",
            {
                "name": customer.name,
                "contact_name": customer.contact_name,
                "industry_code": customer.industry_code,
                "id_type": customer.id_type,
            },
        )
        super().__init__(*args, **kwargs)
        self.fields["phone"].widget.attrs["placeholder"] = customer.phone_mask
        self.fields["id_number"].widget.attrs["placeholder"] = customer.id_number_mask
        self._style()

    def changes(self) -> dict:
        """Only what differs from the file; blank phone / ID number means "keep"."""
        d = self.cleaned_data
        c = self.customer
        out: dict = {}
        for key in ("name", "contact_name", "industry_code"):
            if d[key].strip() != getattr(c, key):
                out[key] = d[key]
        if d["phone"].strip():
            out["phone"] = d["phone"]
        if d["id_number"].strip() or d["id_type"] != c.id_type:
            out["id_type"] = d["id_type"]
            out["id_number"] = d["id_number"]
        return out


class RevealForm(forms.Form):
    reason = forms.CharField(label=_("查看原因"), required=False, max_length=200)
