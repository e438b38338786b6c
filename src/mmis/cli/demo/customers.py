"""Step: the customer file in bulk, vectorised with numpy.

Per customer: customer, service address, account, metering point, installed meter, CT/PT where
the connection needs them, supply contract, and a simple-history "+" row of each dated the day the
customer was opened. Chunks of CHUNK customers are generated from their own random stream
(`default_rng([seed, 7, chunk])`), so the data depend only on the seed and the customer count.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from dataclasses import dataclass

import numpy as np

from mmis.cli.demo import geo
from mmis.cli.demo.context import OPENED_FROM, OPENED_UNTIL, DemoContext
from mmis.cli.demo.loader import Loader
from mmis.cli.demo.vocab import (
    BANK_BIN,
    BANKS,
    COMPANY_SUFFIXES_GCI,
    COMPANY_SUFFIXES_LARGE,
    INDUSTRY_AGR,
    INDUSTRY_GCI,
    INDUSTRY_LARGE,
    METER_MAKERS,
    VILLAGE_SUFFIXES,
    person_names,
    vocab,
)

CHUNK = 50_000
RES, GCI, LI, AGR = 0, 1, 2, 3
CATEGORY = np.array(["residential", "general_ci", "large_industry", "agricultural"])
CATEGORY_P = (0.85, 0.09, 0.015, 0.045)
LV_BOOK_SIZE = 300
HV_BOOK_SIZE = 100
# CT primaries (secondary 5 A) for low-voltage and high-voltage metering
LV_CT = np.array([50, 75, 100, 150, 200, 300, 400, 500, 600, 800, 1000])
HV_CT = np.array([5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300, 400, 500, 600, 800, 1000])

_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
_ID_CHECK = np.array(list("10X98765432"))
_USCC = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_ARR = np.array(list(_USCC))
_USCC_WEIGHTS = np.array([1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28])
# GB 11714 organisation code: body characters and their values (letters A=10 … Z=35)
_ORG_BODY = np.array([c for c in _USCC if c not in "XY"])
_ORG_VALUE = np.array([int(c) if c.isdigit() else ord(c) - 55 for c in _ORG_BODY])
_ORG_WEIGHTS = np.array([3, 7, 9, 10, 5, 8, 4, 2])
_ORG_USCC_INDEX = np.array([_USCC.index(c) for c in _ORG_BODY])


class FastCipher:
    """FieldCipher output (same format, same key) without per-call set-up: nonces drawn in bulk and
    the HMAC inner/outer states precomputed. Checked against FieldCipher on construction."""

    def __init__(self) -> None:
        from mmis.customers.crypto import cipher

        self.reference = cipher()
        self._aead = getattr(self.reference, "_aead", None)
        key = getattr(self.reference, "_index_key", None)
        self._fast = self._aead is not None and key is not None
        if self._fast:
            block = key.ljust(64, b"\0")
            self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
            self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
            probe = "370102198001011234"
            ok = self.blind_index([probe])[0] == self.reference.blind_index(probe)
            ok = ok and self.reference.decrypt(self.encrypt([probe])[0]) == probe
            self._fast = ok

    def encrypt(self, values: list[str]) -> list[str]:
        if not self._fast:
            return [self.reference.encrypt(v) for v in values]
        nonces = os.urandom(12 * len(values))
        enc = self._aead.encrypt
        b64 = base64.b64encode
        out = []
        for i, v in enumerate(values):
            if not v:
                out.append("")
                continue
            nonce = nonces[12 * i : 12 * i + 12]
            out.append(b64(b"\x01" + nonce + enc(nonce, v.encode(), None)).decode())
        return out

    def blind_index(self, values: list[str]) -> list[str]:
        if not self._fast:
            return [self.reference.blind_index(v) for v in values]
        inner, outer = self._inner, self._outer
        out = []
        for v in values:
            if not v:
                out.append("")
                continue
            i = inner.copy()
            i.update(v.strip().upper().encode())
            o = outer.copy()
            o.update(i.digest())
            out.append(o.hexdigest()[:32])
        return out


@dataclass
class Bases:
    """First primary keys and running numbers reserved for the load."""

    ids: dict[str, int]
    numbers: dict[str, int]
    next_ct: int = 0
    next_ct_history: int = 0


def _pick(rng: np.random.Generator, values, p, n: int) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return np.asarray(values)[rng.choice(len(values), size=n, p=p / p.sum())]


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) array of the decimal digits of non-negative integers."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values.astype(np.int64)[:, None] // powers) % 10


def _running_rank(station: np.ndarray, mask: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """For rows in `mask`: their running number within their station across chunks (from 0)."""
    s = station[mask]
    rank = np.zeros(len(s), dtype=np.int64)
    if len(s):
        order = np.argsort(s, kind="stable")
        ss = s[order]
        starts = np.r_[0, np.flatnonzero(ss[1:] != ss[:-1]) + 1]
        group_start = np.repeat(starts, np.diff(np.r_[starts, len(ss)]))
        rank[order] = np.arange(len(ss)) - group_start + counts[ss]
        counts += np.bincount(s, minlength=len(counts))
    return rank


class CustomerGenerator:
    def __init__(self, ctx: DemoContext, loader: Loader, bases: Bases) -> None:
        self.ctx = ctx
        self.loader = loader
        self.bases = bases
        self.null = loader.null
        self.cipher = FastCipher()
        n_st = len(ctx.stations)
        rng = np.random.default_rng([ctx.seed, 2])
        weights = rng.gamma(3.0, size=n_st) * np.where([s.urban for s in ctx.stations], 1.6, 1.0)
        self.station_p = weights / weights.sum()
        self.lv_counts = np.zeros(n_st, dtype=np.int64)
        self.hv_counts = np.zeros(n_st, dtype=np.int64)
        self.span = (OPENED_UNTIL - OPENED_FROM).days
        self.start = np.datetime64(OPENED_FROM.isoformat(), "D")
        st = ctx.stations
        self.st_code = np.array([s.org.code for s in st])
        self.st_org = np.array([str(s.org.pk) for s in st])
        self.st_region_code = np.array([s.region_code for s in st])
        self.st_region = np.array([s.region for s in st])
        self.st_street = np.array([s.street for s in st])
        self.st_stem = np.array([s.stem for s in st])
        self.st_urban = np.array([s.urban for s in st])
        self.st_city = np.array([geo.CITIES[s.city_index].name for s in st])
        self.st_area = np.array([geo.CITIES[s.city_index].area_code for s in st])
        self.st_county_short = np.array(
            [
                s.region[len(geo.PROVINCE_REGION) + len(geo.CITIES[s.city_index].name) + 1 :].rstrip("区县市")
                or s.stem
                for s in st
            ]
        )
        self.st_postcode = np.array(
            [
                f"{geo.CITIES[s.city_index].postcode[:3]}{(s.county_index * 13 + 1) % 100:02d}{i % 10}"
                for i, s in enumerate(st)
            ]
        )
        self.other_regions = np.array(
            list(geo.MIGRANT_REGIONS) + [c for city in geo.CITIES for c, _ in city.counties]
        )
        tz_pg = loader.vendor == "postgresql"
        # history_date / created_at: 09:00 Beijing time of the opening day
        self._ts = (
            (lambda d: np.char.add(d, " 09:00:00+08")) if tz_pg else (lambda d: np.char.add(d, " 01:00:00"))
        )
        self._ts_meter = (
            (lambda d: np.char.add(d, " 10:30:00+08")) if tz_pg else (lambda d: np.char.add(d, " 02:30:00"))
        )

    # ------------------------------------------------------------------------------------
    def chunk(self, chunk_no: int, i0: int, i1: int) -> list[tuple]:
        """Rows of customers [i0, i1) as a write batch for the loader."""
        ctx, null = self.ctx, self.null
        n = i1 - i0
        rng = np.random.default_rng([ctx.seed, 7, chunk_no])
        idx = np.arange(i0, i1, dtype=np.int64)
        cat = rng.choice(4, size=n, p=CATEGORY_P)
        res, gci, li, agr = (cat == RES), (cat == GCI), (cat == LI), (cat == AGR)
        st = rng.choice(len(self.station_p), size=n, p=self.station_p)

        # opening dates grow with the customer number (numbers are issued as customers open)
        q = (idx + 0.5) / max(ctx.customers, 1)
        days = np.clip(np.round(q**0.75 * self.span + rng.normal(0, 25, n)), 0, self.span).astype(np.int64)
        opened = self.start + days
        opened_s = np.datetime_as_string(opened, unit="D")

        # --- connection: voltage, capacity, metering ----------------------------------------
        v_gci_hv = gci & (rng.random(n) < 0.15)
        v_li_35 = li & (rng.random(n) < 0.2)
        voltage = np.select(
            [res, agr, gci & ~v_gci_hv, v_gci_hv, li & ~v_li_35],
            ["220V", "380V", "380V", "10kV", "10kV"],
            "35kV",
        )
        cap = np.select(
            [res, gci & ~v_gci_hv, v_gci_hv, li & ~v_li_35, v_li_35],
            [
                _pick(rng, [4, 6, 8, 10], [20, 40, 25, 15], n),
                _pick(
                    rng,
                    [20, 25, 30, 40, 50, 63, 80, 100, 125, 160, 200],
                    [14, 12, 12, 12, 10, 9, 8, 8, 6, 5, 4],
                    n,
                ),
                _pick(rng, [250, 315, 400, 500, 630, 800], [15, 25, 20, 15, 15, 10], n),
                _pick(
                    rng,
                    [315, 400, 500, 630, 800, 1000, 1250, 1600, 2000, 2500, 3150, 4000],
                    [12, 12, 12, 12, 10, 9, 8, 7, 6, 5, 4, 3],
                    n,
                ),
                _pick(rng, [4000, 5000, 6300, 8000, 10000], [30, 25, 20, 15, 10], n),
            ],
            _pick(rng, [10, 16, 20, 30, 40, 50, 63, 80, 100], [8, 10, 12, 14, 14, 12, 10, 8, 12], n),
        ).astype(np.int64)
        hv = (voltage == "10kV") | (voltage == "35kV")
        hv_lv = hv & (voltage == "10kV") & (cap <= 630) & (rng.random(n) < np.where(gci, 0.6, 0.5))
        lv_metered = ~hv | hv_lv  # metered at 380 V (or 220 V)
        three_phase = voltage != "220V"
        lv_ct = three_phase & lv_metered & (cap >= 40)
        hv_ct = hv & ~hv_lv
        amps_lv = cap * 1.5194
        amps_hv = cap / (np.sqrt(3) * np.where(voltage == "35kV", 35.0, 10.0))
        ct_primary = np.where(
            lv_ct,
            LV_CT[np.minimum(np.searchsorted(LV_CT, amps_lv), len(LV_CT) - 1)],
            np.where(hv_ct, HV_CT[np.minimum(np.searchsorted(HV_CT, amps_hv), len(HV_CT) - 1)], 0),
        )
        has_ct = lv_ct | hv_ct
        pt_ratio = np.where(hv_ct, np.where(voltage == "35kV", 350, 100), 1)
        multiplier = np.where(has_ct, ct_primary // 5, 1) * pt_ratio

        big = cap >= 100
        tariff = np.select(
            [res, gci & hv, gci & big & (rng.random(n) < 0.5), gci, li],
            ["RES-TIER", "GCI-TOU", "GCI-TOU", "GCI-FLAT", "LI-2P"],
            "AGR",
        )
        tou = (tariff == "GCI-TOU") | li
        pf = np.select(
            [li, gci & hv & (cap >= 160), gci & big, agr & big], ["0.90", "0.90", "0.85", "0.80"], ""
        )
        demand_mode = li & (rng.random(n) < 0.4)
        basic_mode = np.select([demand_mode, li], ["demand_contract", "capacity"], "")
        demand = np.ceil(cap * rng.uniform(0.4, 0.85, n)).astype(np.int64)
        persons = np.where(res, _pick(rng, [1, 2, 3, 4, 5, 6], [10, 25, 30, 20, 10, 5], n), 0)
        prepaid = res & (rng.random(n) < 0.05)

        # --- party ------------------------------------------------------------------------
        org_kind = li | (gci & (rng.random(n) < 0.7)) | (agr & (rng.random(n) < 0.3))
        male = rng.random(n) < 0.62
        people = np.array(person_names(rng, n, male))
        contacts = np.array(person_names(rng, n, rng.random(n) < 0.6))
        v = vocab()
        trade = rng.choice(v.trade_names, size=n)
        city = self.st_city[st]
        gi = rng.integers(0, len(INDUSTRY_GCI), n)
        lii = rng.integers(0, len(INDUSTRY_LARGE), n)
        ai = rng.integers(0, len(INDUSTRY_AGR), n)
        gci_word = np.array([w for w, _ in INDUSTRY_GCI])[gi]
        li_word = np.array([w for w, _ in INDUSTRY_LARGE])[lii]
        agr_word = np.array([w for w, _ in INDUSTRY_AGR])[ai]
        gci_suffix = rng.choice(np.array(COMPANY_SUFFIXES_GCI), size=n, p=[0.8, 0.15, 0.05])
        li_suffix = rng.choice(np.array(COMPANY_SUFFIXES_LARGE), size=n, p=[0.5, 0.25, 0.15, 0.1])
        county_short = self.st_county_short[st]
        org_name = np.where(
            li,
            _cat(city, trade, li_word, li_suffix),
            np.where(gci, _cat(city, trade, gci_word, gci_suffix), _cat(county_short, trade, agr_word)),
        )
        name = np.where(org_kind, org_name, people)
        contact = np.where(org_kind, contacts, "")
        industry = np.select(
            [li, gci & org_kind, gci, agr & org_kind, agr],
            [
                np.array([c for _, c in INDUSTRY_LARGE])[lii],
                np.array([c for _, c in INDUSTRY_GCI])[gi],
                "F52",
                np.array([c for _, c in INDUSTRY_AGR])[ai],
                "A01",
            ],
            "",
        )

        # --- identity documents -----------------------------------------------------------
        local = rng.random(n) < 0.85
        region = np.where(local, self.st_region_code[st], rng.choice(self.other_regions, size=n)).astype("U6")
        region_int = region.astype(np.int64)
        age_days = (rng.integers(22, 66, n) * 365.25 + rng.integers(0, 365, n)).astype(np.int64)
        birth = opened - age_days
        birth = np.clip(birth, np.datetime64("1935-01-01"), np.datetime64("2006-12-31"))
        birth_s = np.char.replace(np.datetime_as_string(birth, unit="D"), "-", "")
        seq = rng.integers(0, 500, n) * 2 + np.where(male, 1, 0)
        body = np.concatenate(
            [_digits(region_int, 6), _digits(birth_s.astype(np.int64), 8), _digits(seq, 3)], axis=1
        )
        check = _ID_CHECK[(body @ _ID_WEIGHTS) % 11]
        rid = np.char.add(
            np.char.add(np.char.add(region, birth_s), np.char.zfill(seq.astype("U3"), 3)), check
        )
        # unified social credit code: 9 1 (enterprise) or 9 3 (farmers' cooperative) + region + org code
        org_body = rng.integers(0, len(_ORG_BODY), size=(n, 8))
        org_check_v = (11 - (_ORG_VALUE[org_body] @ _ORG_WEIGHTS) % 11) % 11
        org_check = np.where(org_check_v == 10, _USCC.index("X"), org_check_v)  # 11 → 0 by the % 11 above
        second = np.where(agr & ~gci & ~li, 3, 1)
        uscc_idx = np.concatenate(
            [
                np.full((n, 1), 9),
                second[:, None],
                _digits(region_int, 6),
                _ORG_USCC_INDEX[org_body],
                org_check[:, None],
            ],
            axis=1,
        )
        uscc_check = (31 - (uscc_idx @ _USCC_WEIGHTS) % 31) % 31
        uscc = _USCC_ARR[np.concatenate([uscc_idx, uscc_check[:, None]], axis=1)]
        uscc = np.ascontiguousarray(uscc).view("<U18").ravel()
        id_number = np.where(org_kind, uscc, rid).tolist()
        id_type = np.where(org_kind, "credit_code", "resident_id")
        kind = np.where(org_kind, "organisation", "individual")

        # --- phones ---------------------------------------------------------------------
        mobile = np.char.add(
            rng.choice(v.mobile_prefixes, size=n),
            np.char.zfill(rng.integers(0, 100_000_000, n).astype("U8"), 8),
        )
        landline = np.char.add(self.st_area[st], rng.integers(2, 9, n).astype("U1"))
        landline = np.char.add(landline, np.char.zfill(rng.integers(0, 10_000_000, n).astype("U7"), 7))
        phone = np.where(org_kind & (rng.random(n) < 0.6), landline, mobile).tolist()

        # --- address --------------------------------------------------------------------
        road = rng.choice(np.array(geo.ROADS), size=n)
        num = rng.integers(1, 400, n).astype("U3")
        village = np.char.add(
            rng.choice(v.surnames[:100], size=n), rng.choice(np.array(VILLAGE_SUFFIXES), size=n)
        )
        flat = _cat(
            road,
            num,
            "号",
            rng.integers(1, 30, n).astype("U2"),
            "号楼",
            rng.integers(1, 5, n).astype("U1"),
            "单元",
            rng.integers(1, 19, n).astype("U2"),
            np.char.zfill(rng.integers(1, 5, n).astype("U2"), 2),
            "室",
        )
        rural_home = _cat(village, "村", rng.integers(1, 300, n).astype("U3"), "号")
        urban_home = self.st_urban[st] | (rng.random(n) < 0.35)
        shop = _cat(road, num, "号")
        plant = _cat(rng.choice(np.array(geo.PARKS), size=n), road, num, "号")
        farm = _cat(village, "村", rng.choice(np.array(["东", "西", "南", "北"]), size=n), "地块")
        detail = np.select([res & urban_home, res, gci, li], [flat, rural_home, shop, plant], farm)
        region_txt = self.st_region[st]
        street = self.st_street[st]
        full = _cat(region_txt, street, detail)

        # --- account --------------------------------------------------------------------
        pay = np.where(
            prepaid,
            "prepaid",
            np.where(
                res,
                _pick(rng, ["counter", "bank_withholding", "agency", "online"], [15, 20, 10, 55], n),
                _pick(rng, ["counter", "bank_withholding", "agency", "online"], [20, 45, 5, 30], n),
            ),
        )
        bank_w = pay == "bank_withholding"
        bank_i = rng.integers(0, len(BANKS), n)
        bank_name = np.where(bank_w, _cat(np.array(BANKS)[bank_i], city, self.st_stem[st], "支行"), "")
        personal_acct = np.char.add(
            np.array(BANK_BIN)[bank_i],
            np.char.zfill(rng.integers(0, 10**13, n, dtype=np.int64).astype("U13"), 13),
        )
        corp_acct = np.char.add(
            "16", np.char.zfill(rng.integers(0, 10**15, n, dtype=np.int64).astype("U15"), 15)
        )
        bank_acct = np.where(bank_w, np.where(org_kind, corp_acct, personal_acct), "").tolist()

        # --- books ----------------------------------------------------------------------
        lv_book = ~hv
        rank_lv = _running_rank(st, lv_book, self.lv_counts)
        rank_hv = _running_rank(st, ~lv_book, self.hv_counts)
        book_no = np.zeros(n, dtype=np.int64)
        book_no[lv_book] = rank_lv // LV_BOOK_SIZE + 1
        book_no[~lv_book] = rank_hv // HV_BOOK_SIZE + 1
        book = _cat(self.st_code[st], np.where(lv_book, "-B", "-H"), np.char.zfill(book_no.astype("U4"), 2))

        # --- contract dates ---------------------------------------------------------------
        signed = opened - rng.integers(1, 15, n)
        term = np.where(hv, 5, 10)
        years_open = (np.datetime64(ctx.today.isoformat(), "D") - opened).astype(np.int64) / 365.25
        k = np.floor(years_open / term).astype(np.int64) + 1
        y = opened.astype("datetime64[Y]").astype(np.int64) + 1970 + k * term
        md = np.char.replace(np.char.add("-", np.char.partition(opened_s, "-")[:, 2]), "-02-29", "-02-28")
        anniversary = np.char.add(y.astype("U4"), md).astype("datetime64[D]")
        expires = np.datetime_as_string(anniversary - 1, unit="D")
        ctype = np.select([res, hv], ["residential", "high_voltage"], "low_voltage")

        # --- meters and transformers ---------------------------------------------------
        kind_m = np.select([~three_phase, hv_ct], ["single_phase", "three_phase_3w"], "three_phase_4w")
        rated = np.select([~three_phase, has_ct], ["5(60)A", "1.5(6)A"], "10(60)A")
        accuracy = np.select([~three_phase, hv_ct, has_ct], ["2.0", "0.2S", "0.5S"], "1.0")
        model = np.select([~three_phase, hv_ct], ["DDZY71-Z", "DSZY331-Z"], "DTZY341-Z")
        maker_i = rng.integers(0, len(METER_MAKERS), n)
        maker = np.array(METER_MAKERS)[maker_i]
        yy = (opened.astype("datetime64[Y]").astype(np.int64) + 1970) % 100

        return self._rows(locals())

    # ------------------------------------------------------------------------------------
    def _rows(self, g: dict) -> list[tuple]:
        L, null, b = self.loader, self.null, self.bases
        n, idx = g["n"], g["idx"]
        local_i = idx - 0  # global index
        ids = {k: v + local_i for k, v in b.ids.items() if not k.startswith("ct")}

        def s(arr) -> list[str]:
            return [str(x) for x in arr.tolist()] if arr.dtype.kind in "iu" else arr.tolist()

        st = g["st"]
        org = self.st_org[st].tolist()
        opened = g["opened_s"].tolist()
        ts = self._ts(g["opened_s"]).tolist()
        ts_meter = self._ts_meter(g["opened_s"]).tolist()
        cust_id = s(ids["customer"])
        addr_id = s(ids["address"])
        acct_id = s(ids["account"])
        point_id = s(ids["point"])
        t0 = time.perf_counter()
        c = self.cipher
        id_number, phone, bank = g["id_number"], g["phone"], g["bank_acct"]
        cust = {
            "id": cust_id,
            "org_id": org,
            "customer_no": [f"31{x:08d}" for x in (b.numbers["customer"] + idx).tolist()],
            "kind": g["kind"].tolist(),
            "name": g["name"].tolist(),
            "id_type": g["id_type"].tolist(),
            "id_number_enc": c.encrypt(id_number),
            "id_number_index": c.blind_index(id_number),
            "id_number_mask": [_mask_id(x) for x in id_number],
            "phone_enc": c.encrypt(phone),
            "phone_index": c.blind_index(phone),
            "phone_mask": [f"{x[:3]}{'*' * (len(x) - 7)}{x[-4:]}" for x in phone],
            "contact_name": g["contact"].tolist(),
            "industry_code": g["industry"].tolist(),
            "status": "active",
            "opened_on": opened,
            "closed_on": null,
            "created_at": ts,
            "updated_at": ts,
        }
        crypto_s = time.perf_counter() - t0
        addr = {
            "id": addr_id,
            "org_id": org,
            "customer_id": cust_id,
            "region": g["region_txt"].tolist(),
            "street": g["street"].tolist(),
            "detail": g["detail"].tolist(),
            "full_text": g["full"].tolist(),
            "postcode": self.st_postcode[st].tolist(),
        }
        acct = {
            "id": acct_id,
            "org_id": org,
            "customer_id": cust_id,
            "account_no": [f"61{x:08d}" for x in (b.numbers["account"] + idx).tolist()],
            "name": cust["name"],
            "payment_method": g["pay"].tolist(),
            "bank_name": g["bank_name"].tolist(),
            "bank_account_enc": c.encrypt(bank),
            "bank_account_mask": [_mask_id(x) if x else "" for x in bank],
            "ebill_email": "",
        }
        demand = np.where(g["basic_mode"] == "demand_contract", g["demand"].astype("U8"), "")
        point = {
            "id": point_id,
            "org_id": org,
            "customer_id": cust_id,
            "account_id": acct_id,
            "address_id": addr_id,
            "point_no": [f"71{x:08d}" for x in (b.numbers["point"] + idx).tolist()],
            "name": cust["name"],
            "usage_category": CATEGORY[g["cat"]].tolist(),
            "voltage_level": g["voltage"].tolist(),
            "tariff_code": g["tariff"].tolist(),
            "reading_book_code": g["book"].tolist(),
            "multiplier": s(g["multiplier"]),
            "position": np.where(g["hv_lv"], "hv_supply_lv_metering", "boundary").tolist(),
            "tou": np.where(g["tou"], "1", "0").tolist(),
            "pf_standard": g["pf"].tolist(),
            "basic_charge_mode": g["basic_mode"].tolist(),
            "contract_capacity_kva": s(g["cap"]),
            "operating_capacity_kva": s(g["cap"]),
            "contract_demand_kw": [x or null for x in demand.tolist()],
            "tier_persons": s(g["persons"]),
            "prepaid": np.where(g["prepaid"], "1", "0").tolist(),
            "role": "main",
            "parent_id": null,
            "status": "active",
            "energised_on": opened,
        }
        contract = {
            "id": s(ids["contract"]),
            "org_id": org,
            "customer_id": cust_id,
            "contract_no": [f"GD{x:010d}" for x in (b.numbers["contract"] + idx).tolist()],
            "contract_type": g["ctype"].tolist(),
            "capacity_kva": point["contract_capacity_kva"],
            "signed_on": np.datetime_as_string(g["signed"], unit="D").tolist(),
            "effective_from": opened,
            "expires_on": [
                null if r else e for r, e in zip(g["res"].tolist(), g["expires"].tolist(), strict=True)
            ],
            "state": "effective",
            "terminated_on": null,
        }
        meter_ids = ids["meter"]
        meter = {
            "id": s(meter_ids),
            "org_id": org,
            "asset_no": [
                f"1370{m:02d}{y:02d}00{i:012d}"
                for m, y, i in zip(g["maker_i"].tolist(), g["yy"].tolist(), meter_ids.tolist(), strict=True)
            ],
            "comm_address": [f"{i:012d}" for i in meter_ids.tolist()],
            "manufacturer": g["maker"].tolist(),
            "model": g["model"].tolist(),
            "kind": g["kind_m"].tolist(),
            "accuracy_class": g["accuracy"].tolist(),
            "rated_current": g["rated"].tolist(),
            "register_digits": "6",
            "register_decimals": "2",
            "tou": point["tou"],
            "state": "installed",
            "metering_point_id": point_id,
            "installed_on": opened,
            "removed_on": null,
        }
        # CT/PT: 3 CTs on a 4-wire low-voltage point, 2 CTs + 2 PTs (V/V) on a 3-wire high-voltage one
        has_ct, hv_ct = g["has_ct"], g["hv_ct"]
        rows_of = np.flatnonzero(has_ct)
        n_ct = np.where(hv_ct, 2, 3)[rows_of]
        n_pt = np.where(hv_ct, 2, 0)[rows_of]
        ct_rows = np.repeat(rows_of, n_ct)
        pt_rows = np.repeat(rows_of, n_pt)
        tr_rows = np.concatenate([ct_rows, pt_rows])
        tr_kind = np.concatenate([np.full(len(ct_rows), "ct"), np.full(len(pt_rows), "pt")])
        pt_primary = np.where(g["voltage"] == "35kV", 35000, 10000)
        tr_primary = np.concatenate([g["ct_primary"][ct_rows], pt_primary[pt_rows]])
        tr_secondary = np.concatenate([np.full(len(ct_rows), "5"), np.full(len(pt_rows), "100")])
        tr_acc = np.concatenate([np.where(hv_ct[ct_rows], "0.2S", "0.5S"), np.full(len(pt_rows), "0.2")])
        order = np.argsort(tr_rows, kind="stable")
        tr_rows, tr_kind, tr_primary, tr_secondary, tr_acc = (
            a[order] for a in (tr_rows, tr_kind, tr_primary, tr_secondary, tr_acc)
        )
        m = len(tr_rows)
        tr_ids = np.arange(b.next_ct, b.next_ct + m, dtype=np.int64)
        b.next_ct += m
        yy = g["yy"][tr_rows]
        tr = {
            "id": s(tr_ids),
            "org_id": [org[i] for i in tr_rows.tolist()],
            "asset_no": [
                f"2370{y:02d}{1 if k == 'ct' else 2}0{i:014d}"
                for y, k, i in zip(yy.tolist(), tr_kind.tolist(), tr_ids.tolist(), strict=True)
            ],
            "kind": tr_kind.tolist(),
            "primary": s(tr_primary),
            "secondary": tr_secondary.tolist(),
            "accuracy_class": tr_acc.tolist(),
            "state": "installed",
            "metering_point_id": [point_id[i] for i in tr_rows.tolist()],
            "installed_on": [opened[i] for i in tr_rows.tolist()],
        }
        tr_ts = [ts_meter[i] for i in tr_rows.tolist()]

        from mmis.assets.models import InstrumentTransformer, Meter
        from mmis.customers.models import Account, Customer, MeteringPoint, ServiceAddress, SupplyContract

        batch = []
        for model, key, values, count, dates in (
            (Customer, "customer", cust, n, ts),
            (ServiceAddress, "address", addr, n, ts),
            (Account, "account", acct, n, ts),
            (MeteringPoint, "point", point, n, ts),
            (SupplyContract, "contract", contract, n, ts),
            (Meter, "meter", meter, n, ts_meter),
            (InstrumentTransformer, "ct", tr, m, tr_ts),
        ):
            if not count:
                continue
            if key == "ct":
                hid = np.arange(b.next_ct_history, b.next_ct_history + m, dtype=np.int64)
                b.next_ct_history += m
            else:
                hid = b.ids[f"h_{key}"] + idx
            batch += L.rows_with_history(model, values, count, history_ids=s(hid), history_dates=dates)
        self.crypto_seconds = getattr(self, "crypto_seconds", 0.0) + crypto_s
        return batch


def _mask_id(v: str) -> str:
    """customers.rules.mask_id_number for values longer than 8 characters (all generated ones)."""
    return f"{v[:4]}{'*' * (len(v) - 8)}{v[-4:]}"


def _cat(*parts) -> np.ndarray:
    out = parts[0]
    for p in parts[1:]:
        out = np.char.add(out, p)
    return out
