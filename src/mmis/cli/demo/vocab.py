"""Vocabularies for synthetic names and addresses.

Faker's zh_CN word lists are read ONCE (class attributes of its providers, no Faker instance and
no per-row calls); rows are then drawn from these arrays with numpy, which is what keeps a
million-customer load fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# 字号 (trade names) of organisations; Faker's company prefixes are added after filtering.
TRADE_NAMES = (
    "华兴",
    "鲁信",
    "泰和",
    "宏达",
    "永盛",
    "金鼎",
    "恒通",
    "鑫源",
    "齐鲁",
    "泉城",
    "天成",
    "瑞丰",
    "盛世",
    "东方",
    "新星",
    "海川",
    "博远",
    "正大",
    "中兴",
    "长城",
    "万通",
    "三利",
    "福瑞",
    "汇丰",
    "隆昌",
    "宏图",
    "振华",
    "银河",
    "金桥",
    "凯达",
    "德隆",
    "弘毅",
    "信达",
    "佳和",
    "嘉禾",
    "联创",
    "明珠",
    "润泽",
    "圣泉",
    "银座",
    "鲁丰",
    "黄河",
    "泰山",
    "鸿运",
    "金穗",
    "宝利",
    "鼎盛",
    "恒源",
    "永泰",
    "创新",
    "合力",
    "巨能",
)

# (industry words, GB/T 4754 industry code) per kind of organisation.
INDUSTRY_GCI = (
    ("商贸", "F51"),
    ("超市", "F52"),
    ("餐饮", "H62"),
    ("酒店", "H61"),
    ("物流", "G59"),
    ("科技", "I65"),
    ("物业管理", "K70"),
    ("汽车销售服务", "F52"),
    ("建材", "F51"),
    ("医药连锁", "F52"),
    ("文化传媒", "R86"),
    ("印刷", "C23"),
    ("食品加工", "C14"),
    ("家具制造", "C21"),
    ("服装", "C18"),
    ("通信工程", "E48"),
)
INDUSTRY_LARGE = (
    ("钢铁", "C31"),
    ("化工", "C26"),
    ("水泥", "C30"),
    ("纺织", "C17"),
    ("机械制造", "C34"),
    ("造纸", "C22"),
    ("橡胶", "C29"),
    ("铝业", "C32"),
    ("玻璃", "C30"),
    ("制药", "C27"),
    ("食品", "C14"),
    ("汽车零部件", "C36"),
    ("重工", "C35"),
    ("新材料", "C26"),
    ("铸造", "C33"),
    ("电缆", "C38"),
)
INDUSTRY_AGR = (
    ("农业专业合作社", "A01"),
    ("家庭农场", "A01"),
    ("养殖场", "A03"),
    ("种植专业合作社", "A01"),
    ("灌溉站", "A05"),
    ("蔬菜大棚基地", "A01"),
)
COMPANY_SUFFIXES_GCI = ("有限公司", "有限责任公司", "股份有限公司")
COMPANY_SUFFIXES_LARGE = ("有限公司", "股份有限公司", "集团有限公司", "有限责任公司")

BANKS = (
    "中国工商银行",
    "中国农业银行",
    "中国银行",
    "中国建设银行",
    "交通银行",
    "中国邮政储蓄银行",
    "齐鲁银行",
    "招商银行",
    "兴业银行",
    "农村商业银行",
)
BANK_BIN = (
    "622202",
    "622848",
    "621661",
    "621700",
    "622260",
    "621098",
    "623116",
    "622588",
    "622909",
    "623059",
)

METER_MAKERS = (
    "烟台东方威思顿电气有限公司",
    "青岛鼎信通讯股份有限公司",
    "威胜集团有限公司",
    "宁波三星医疗电气股份有限公司",
    "江苏林洋能源股份有限公司",
    "杭州海兴电力科技股份有限公司",
    "浙江正泰仪器仪表有限责任公司",
    "深圳市科陆电子科技股份有限公司",
)
VILLAGE_SUFFIXES = ("家庄", "家村", "庄", "家洼", "官屯", "集", "家店", "家营", "家河", "家岭")
EXTRA_MALE = "志建国明文德正金永海春庆东志新卫长云兴宏俊峰家晓振子博浩宇泽轩"
EXTRA_FEMALE = "秀桂玉兰淑美春晓雪丽慧佳欣雨梦思婉怡琳"


@dataclass(frozen=True)
class Vocab:
    surnames: np.ndarray
    surname_p: np.ndarray
    male_chars: np.ndarray
    female_chars: np.ndarray
    male_given: np.ndarray
    female_given: np.ndarray
    trade_names: np.ndarray
    mobile_prefixes: np.ndarray


def _single_chars(names: list[str], extra: str) -> list[str]:
    out = []
    for c in [n for n in names if len(n) == 1] + list(extra):
        if c not in out:
            out.append(c)
    return out


@lru_cache(maxsize=1)
def vocab() -> Vocab:
    from faker.providers.company.zh_CN import Provider as Company
    from faker.providers.person.zh_CN import Provider as Person
    from faker.providers.phone_number.zh_CN import Provider as Phone

    last = dict(Person.last_names)
    surnames = [s for s in last if len(s) <= 2]
    weights = np.array([float(last[s]) for s in surnames])
    trade = list(TRADE_NAMES)
    for p in Company.company_prefixes:
        if len(p) == 2 and p not in trade and "公司" not in p:
            trade.append(p)
    return Vocab(
        surnames=np.array(surnames),
        surname_p=weights / weights.sum(),
        male_chars=np.array(_single_chars(list(Person.first_names_male), EXTRA_MALE)),
        female_chars=np.array(_single_chars(list(Person.first_names_female), EXTRA_FEMALE)),
        male_given=np.array(list(Person.first_names_male)),
        female_given=np.array(list(Person.first_names_female)),
        trade_names=np.array(trade),
        mobile_prefixes=np.array([str(p) for p in Phone.phonenumber_prefixes] + ["177", "178", "199", "166"]),
    )


def person_names(rng: np.random.Generator, n: int, male: np.ndarray) -> list[str]:
    """Surname by frequency; given name either one of Faker's given names or two characters."""
    v = vocab()
    sur = rng.choice(v.surnames, size=n, p=v.surname_p)
    known = np.where(male, rng.choice(v.male_given, size=n), rng.choice(v.female_given, size=n))
    c1 = np.where(male, rng.choice(v.male_chars, size=n), rng.choice(v.female_chars, size=n))
    c2 = np.where(male, rng.choice(v.male_chars, size=n), rng.choice(v.female_chars, size=n))
    two = rng.random(n) < 0.55
    given = np.where(two, np.char.add(c1, c2), known)
    return np.char.add(sur, given).tolist()
