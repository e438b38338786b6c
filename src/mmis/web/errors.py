"""Show the services' field errors in the user's language.

Services speak English (`FieldError(path, "is required")`); the UI is Chinese first. Each known
message shape maps to a Chinese msgid (translated back to English by the en catalogue); an unknown
message is shown as the service wrote it.
"""

from __future__ import annotations

import re

from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from mmis.common.errors import FieldError

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), msg)
    for p, msg in (
        (r"^is required$", gettext_noop("必填")),
        (
            r"^is required: region and detail of the service address$",
            gettext_noop("请填写用电地址的省市区和详细地址"),
        ),
        (r"^must be text$", gettext_noop("必须是文本")),
        (
            r"^is too long: at most (?P<max>\d+) characters, got (?P<got>\d+)$",
            gettext_noop("过长：最多 %(max)s 个字符，当前 %(got)s 个"),
        ),
        (
            r"^unknown value .*; expected one of: (?P<values>.*)$",
            gettext_noop("无效的选项，可选：%(values)s"),
        ),
        (r"^an individual identifies with a personal document$", gettext_noop("个人客户须使用个人证件")),
        (
            r"^an organisation identifies with its unified social credit code$",
            gettext_noop("单位客户须使用统一社会信用代码"),
        ),
        (r"^must be 4 to 30 characters$", gettext_noop("须为 4 到 30 个字符")),
        (
            r"^a resident ID number has 18 characters, this one has (?P<n>\d+)$",
            gettext_noop("居民身份证号码应为 18 位，当前为 %(n)s 位"),
        ),
        (
            r"^a resident ID number is 17 digits followed by a digit or X$",
            gettext_noop("居民身份证号码应为 17 位数字加 1 位数字或 X"),
        ),
        (
            r"^the birth date (?P<d>\S+) inside the ID number is not a real date$",
            gettext_noop("证件号码中的出生日期 %(d)s 不是有效日期"),
        ),
        (
            r"^the birth date (?P<d>\S+) inside the ID number is not plausible$",
            gettext_noop("证件号码中的出生日期 %(d)s 不合理"),
        ),
        (
            r"^wrong check digit: the last character should be (?P<e>\S+), not (?P<g>\S+)$",
            gettext_noop("校验位错误：最后一位应为 %(e)s，而不是 %(g)s"),
        ),
        (
            r"^a unified social credit code has 18 characters, this one has (?P<n>\d+)$",
            gettext_noop("统一社会信用代码应为 18 位，当前为 %(n)s 位"),
        ),
        (
            r"^a unified social credit code cannot contain (?P<c>.+)$",
            gettext_noop("统一社会信用代码不能包含 %(c)s"),
        ),
        (
            r"^wrong check character: the last character should be (?P<e>\S+), not (?P<g>\S+)$",
            gettext_noop("校验码错误：最后一位应为 %(e)s，而不是 %(g)s"),
        ),
        (
            r"^not a mainland phone number",
            gettext_noop("不是有效的大陆电话号码：手机为 11 位（如 13912345678），固话为区号加号码"),
        ),
        (r"^a customer number is digits only$", gettext_noop("户号只能是数字")),
        (r"^customer number (?P<no>\S+) is already used$", gettext_noop("户号 %(no)s 已被使用")),
        (r"^is required for bank withholding$", gettext_noop("银行代扣须填写银行账号")),
        (r"^a bank account number is digits only$", gettext_noop("银行账号只能是数字")),
        (r"^a postcode is 6 digits$", gettext_noop("邮编为 6 位数字")),
        (
            r"^customers belong to a county, a station or a service hall$",
            gettext_noop("客户须归属县公司、供电所或营业厅"),
        ),
        (r"^cannot be changed here$", gettext_noop("此处不能修改")),
        (r"^a closed customer cannot be changed$", gettext_noop("已销户客户不能修改")),
        (r"^say why you need to see the full number$", gettext_noop("请说明查看完整号码的原因")),
    )
]


def translate_message(message: str) -> str:
    for pattern, msgid in _PATTERNS:
        m = pattern.match(message)
        if m:
            return _(msgid) % m.groupdict() if m.groupdict() else _(msgid)
    return message


def field_name(path: str) -> str:
    """`address.detail` → `address_detail` (the form field that shows the error)."""
    return path.replace(".", "_")


def add_errors(form, errors: list[FieldError]) -> None:
    """Put each service error next to its form field; errors of unknown paths go on top of the form."""
    for e in errors:
        name = field_name(e.path)
        text = translate_message(e.message)
        if name in form.fields:
            form.add_error(name, text)
        else:
            form.add_error(None, f"{e.path}: {text}" if e.path else text)
