"""The set-based path of a partition: its inputs in ONE query (point file, the readings that open and
close the month, meter digits, bill history), energy and rating in NumPy (one vectorised pass per
tariff group, `mmis.rating.vector`), the audit rules over columns (`rules.audit_columns`), and the
rows formatted straight into COPY text (or parameter tuples on SQLite): no object per bill.

It covers the usual point: billable readings on one meter, one tariff version over the whole month,
no sub-meters, no energising inside the month. Any other point of the partition (set aside, or
prorated, nested, with inputs that need `calc.prepare`'s checks) is flagged `slow` and the caller
calculates it with the per-point path of `calc`, in the same transaction. Both paths give the same
rows (tests compare them bill by bill); the scalar engine stays the reference for both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from django.db import connection, transaction

from mmis.billing import rules
from mmis.billing.calc import (
    TRACE_VERSION,
    Q,
    _is_annual,
    effective_tariff,
    fmt2,
    fmt4,
)
from mmis.billing.inputs import PointReading, TariffVersion
from mmis.common.periods import Period
from mmis.rating.tariff import (
    TOU_PERIODS,
    CapacityBasic,
    DemandActualBasic,
    DemandContractBasic,
    TouEnergy,
)
from mmis.rating.vector import UsageBatch, proration_days_of, rate_batch

NONE = rules.NONE
LOOKBACK_DAYS = 100  # as mmis.readings.queries: the start reading is looked for this far back
BILLABLE = ("valid", "accepted", "estimated")  # MeterReading.BILLABLE
REGS = ("tot", "sharp", "peak", "flat", "valley", "reac")
REG_NAMES = ("total", "sharp", "peak", "flat", "valley", "reactive")
_I64 = np.int64
_SAFE = 2**62


def _e4(col: str) -> str:
    return f"COALESCE(CAST(ROUND({col} * 10000) AS BIGINT), {NONE})"


def _e2(col: str) -> str:
    return f"COALESCE(CAST(ROUND({col} * 100) AS BIGINT), {NONE})"


POINT_COLS = (
    "id",
    "org_id",
    "customer_id",
    "account_id",
    "usage_category",
    "tariff_code",
    "mult",
    "pf_standard",
    "basic_charge_mode",
    "cap",
    "cd",
    "persons",
    "tou",
    "mid",
    "subs",
    "issued",
    "earlier",
    "last_amt",
    "last_en",
    "ly_amt",
    "ytd",
)
READING_COLS = (
    "e_meter",
    "e_est",
    *(f"e_{r}" for r in REGS),
    "e_md",
    "s_meter",
    *(f"s_{r}" for r in REGS),
    "digits",
)


def _hist_cte(points: str) -> str:
    """Per point of `points` (a query of ids): last month's and last year's bill, the tier year's
    energy before the month, whether it had a bill before the month and one issued in it."""
    return f"""hist AS (
  SELECT b.point_id AS pid, {_HIST_COLS}
  FROM billing_bill b WHERE b.point_id IN ({points}) AND {_HIST_WHERE}
  GROUP BY b.point_id)"""


OLDER = """SELECT 1 AS one FROM billing_bill b WHERE b.point_id = {point}
             AND b.period_start < %(hist_from)s AND b.state <> 'returned' LIMIT 1"""


def _history_params(month: Period) -> dict[str, Any]:
    prev, ly = _month_before(month, 1), _month_before(month, 12)
    tier = date(month.start.year, 1, 1)
    return {
        "month_start": month.start,
        "month_end": month.end,
        "prev_start": prev.start,
        "prev_end": prev.end,
        "ly_start": ly.start,
        "ly_end": ly.end,
        "tier_start": tier,
        "hist_from": min(ly.start, tier),
    }


def _sql(*, with_readings: bool) -> str:
    """The partition's inputs, one row per point in id order (named parameters, see `load`)."""
    return _sql_pg(with_readings) if connection.vendor == "postgresql" else _sql_portable(with_readings)


_HIST_COLS = f"""
    MAX(CASE WHEN b.period_start >= %(prev_start)s AND b.period_start < %(prev_end)s
        THEN {_e2("b.amount")} END) AS last_amt,
    MAX(CASE WHEN b.period_start >= %(prev_start)s AND b.period_start < %(prev_end)s
        THEN {_e4("b.energy_kwh")} END) AS last_en,
    MAX(CASE WHEN b.period_start >= %(ly_start)s AND b.period_start < %(ly_end)s
        THEN {_e2("b.amount")} END) AS ly_amt,
    SUM(CASE WHEN b.period_start >= %(tier_start)s AND b.period_start < %(month_start)s
        THEN {_e4("b.energy_kwh")} ELSE 0 END) AS ytd,
    MAX(CASE WHEN b.period_start < %(month_start)s THEN 1 ELSE 0 END) AS earlier,
    MAX(CASE WHEN b.period_start >= %(month_start)s AND b.state IN ('issued', 'settled')
        THEN 1 ELSE 0 END) AS issued"""
_HIST_WHERE = (
    """b.period_start >= %(hist_from)s AND b.period_start < %(month_end)s AND b.state <> 'returned'"""
)
_READING_COLS = ("meter", "est", *REGS, "md", "mult")


def _reading_select(alias: str = "r") -> str:
    regs = ", ".join(f"{_e4(alias + '.' + n)} AS {c}" for c, n in zip(REGS, REG_NAMES, strict=True))
    return (
        f"{alias}.reading_date AS day, COALESCE({alias}.meter_id, 0) AS meter, "
        f"CASE WHEN {alias}.source = 'estimate' THEN 1 ELSE 0 END AS est, {regs}, "
        f"{_e4(alias + '.max_demand')} AS md, {_e4(alias + '.multiplier')} AS mult"
    )


def _sql_pg(with_readings: bool) -> str:
    """PostgreSQL: every lookup per point is a LATERAL subquery that cannot be flattened (LIMIT or
    aggregate), so each one is an index probe whatever the planner believes of the tables' sizes
    (a month's first run writes into a table its statistics still call empty)."""
    select = [
        "p.id, p.org_id, p.customer_id, p.account_id, p.usage_category, p.tariff_code",
        f"{_e4('p.multiplier')} AS mult, p.pf_standard, p.basic_charge_mode",
        f"{_e2('p.contract_capacity_kva')} AS cap, {_e2('p.contract_demand_kw')} AS cd",
        "p.tier_persons AS persons, p.tou",
        "CASE WHEN p.energised_on > %(month_start)s AND p.energised_on < %(month_end)s"
        " THEN 1 ELSE 0 END AS mid",
        """(SELECT COUNT(*) FROM customers_meteringpoint c WHERE c.parent_id = p.id
             AND c.role = 'sub' AND c.status = 'active') AS subs""",
        "COALESCE(h.issued, 0) AS issued",
        "CASE WHEN h.earlier = 1 OR old.one = 1 THEN 1 ELSE 0 END AS earlier",
        f"COALESCE(h.last_amt, {NONE}) AS last_amt",
        f"COALESCE(h.last_en, {NONE}) AS last_en",
        f"COALESCE(h.ly_amt, {NONE}) AS ly_amt",
        "COALESCE(h.ytd, 0) AS ytd",
    ]
    joins = [
        f"""LEFT JOIN LATERAL (SELECT {_HIST_COLS} FROM billing_bill b
             WHERE b.point_id = p.id AND {_HIST_WHERE}) h ON true""",
        f"LEFT JOIN LATERAL ({OLDER.format(point='p.id')}) old ON true",
    ]
    if with_readings:
        billable = "r.status IN ('valid', 'accepted', 'estimated')"
        joins += [
            f"""LEFT JOIN LATERAL (SELECT {_reading_select()} FROM readings_meterreading r
                 WHERE r.metering_point_id = p.id AND r.reading_date >= %(since)s
                   AND r.reading_date < %(month_end)s AND {billable}
                 ORDER BY r.reading_date DESC LIMIT 1) e ON true""",
            f"""LEFT JOIN LATERAL (SELECT {_reading_select()} FROM readings_meterreading r
                 WHERE r.metering_point_id = p.id AND r.reading_date >= %(since)s
                   AND r.reading_date < e.day AND {billable}
                 ORDER BY r.reading_date DESC LIMIT 1) s ON true""",
            """LEFT JOIN LATERAL (SELECT m.register_digits FROM assets_meter m
                 WHERE m.id = e.meter LIMIT 1) m ON true""",
            """LEFT JOIN LATERAL (SELECT 1 AS one FROM readings_meterchange mc
                 WHERE mc.metering_point_id = p.id AND mc.changed_on >= s.day
                   AND mc.changed_on <= e.day LIMIT 1) chg ON true""",
        ]
        has_end = "e.day >= %(month_start)s"
        select += [
            *(
                f"CASE WHEN {has_end} THEN COALESCE(e.{c}, {NONE}) ELSE {NONE} END AS e_{c}"
                for c in _READING_COLS
            ),
            *(
                f"CASE WHEN {has_end} THEN COALESCE(s.{c}, {NONE}) ELSE {NONE} END AS s_{c}"
                for c in _READING_COLS
            ),
            f"COALESCE(m.register_digits, {NONE}) AS digits",
            "CASE WHEN chg.one = 1 THEN 1 ELSE 0 END AS changes",
        ]
    return (
        f"SELECT {', '.join(select)}\nFROM customers_meteringpoint p {' '.join(joins)}\n"
        "WHERE p.id = ANY(%(ids)s) ORDER BY p.id"
    )


def _sql_portable(with_readings: bool) -> str:
    """SQLite (and any database without LATERAL): CTEs and correlated subqueries."""
    ids = "p.id IN (SELECT value FROM json_each(%(ids)s))"
    ctes = [
        f"""pts AS (
  SELECT p.id, p.org_id, p.customer_id, p.account_id, p.usage_category, p.tariff_code,
         {_e4("p.multiplier")} AS mult, p.pf_standard, p.basic_charge_mode,
         {_e2("p.contract_capacity_kva")} AS cap, {_e2("p.contract_demand_kw")} AS cd,
         p.tier_persons AS persons, p.tou,
         CASE WHEN p.energised_on > %(month_start)s AND p.energised_on < %(month_end)s
              THEN 1 ELSE 0 END AS mid
  FROM customers_meteringpoint p WHERE {ids})""",
        _hist_cte("SELECT id FROM pts"),
    ]
    probes = {  # name → a query of at most one row, correlated with the point (and its readings)
        "old": OLDER.format(point="pts.id"),
    }
    select = [
        "pts.*",
        """(SELECT COUNT(*) FROM customers_meteringpoint c WHERE c.parent_id = pts.id
             AND c.role = 'sub' AND c.status = 'active') AS subs""",
        "COALESCE(hist.issued, 0) AS issued",
        "CASE WHEN hist.earlier = 1 OR {old} = 1 THEN 1 ELSE 0 END AS earlier",
        f"COALESCE(hist.last_amt, {NONE}) AS last_amt",
        f"COALESCE(hist.last_en, {NONE}) AS last_en",
        f"COALESCE(hist.ly_amt, {NONE}) AS ly_amt",
        "COALESCE(hist.ytd, 0) AS ytd",
    ]
    joins = ["LEFT JOIN hist ON hist.pid = pts.id"]
    if with_readings:
        cols = _READING_COLS
        pivot = ", ".join(
            f"MAX(CASE WHEN rn = {k} THEN {c} END) AS {side}_{c}"
            for k, side in ((1, "e"), (2, "s"))
            for c in ("day", *cols)
        )
        ctes.append(
            f"""rd AS (
  SELECT r.metering_point_id AS pid, {_reading_select()},
         ROW_NUMBER() OVER (PARTITION BY r.metering_point_id ORDER BY r.reading_date DESC) AS rn
  FROM readings_meterreading r
  WHERE r.metering_point_id IN (SELECT id FROM pts) AND r.reading_date >= %(since)s
    AND r.reading_date < %(month_end)s AND r.status IN ('valid', 'accepted', 'estimated'))"""
        )
        # the two latest billable readings of each point side by side: one row per point, so the
        # join with the points is a hash or merge join whatever the planner guesses of the window
        ctes.append(f"rp AS (SELECT pid, {pivot} FROM rd WHERE rn <= 2 GROUP BY pid)")
        joins.append("LEFT JOIN rp ON rp.pid = pts.id")
        probes["digits"] = (
            "SELECT m.register_digits AS one FROM assets_meter m WHERE m.id = rp.e_meter LIMIT 1"
        )
        probes["chg"] = """SELECT 1 AS one FROM readings_meterchange mc WHERE mc.metering_point_id = pts.id
                 AND mc.changed_on >= rp.s_day AND mc.changed_on <= rp.e_day LIMIT 1"""
        # the closing reading must be inside the month; the opening one is the billable one before
        has_end = "rp.e_day >= %(month_start)s"
        select += [
            *(f"CASE WHEN {has_end} THEN COALESCE(rp.e_{c}, {NONE}) ELSE {NONE} END AS e_{c}" for c in cols),
            *(f"CASE WHEN {has_end} THEN COALESCE(rp.s_{c}, {NONE}) ELSE {NONE} END AS s_{c}" for c in cols),
            f"COALESCE({{digits}}, {NONE}) AS digits",
            "CASE WHEN {chg} = 1 THEN 1 ELSE 0 END AS changes",
        ]
    refs = {name: f"({q})" for name, q in probes.items()}
    select = [x.format(**refs) if "{" in x else x for x in select]
    return f"WITH {', '.join(ctes)}\nSELECT {', '.join(select)}\nFROM pts {' '.join(joins)}\nORDER BY pts.id"


def _month_before(p: Period, months: int) -> Period:
    y, m = p.start.year, p.start.month - months
    while m <= 0:
        y, m = y - 1, m + 12
    return Period.month(y, m)


@dataclass
class Cols:
    """A partition's inputs, one entry per point in id order (NONE where a value is missing)."""

    n: int
    c: dict[str, Any]  # column name → int64 array (numbers) or tuple (text)
    readings_loaded: bool
    reading: dict[str, np.ndarray] = field(default_factory=dict)  # computed energy columns
    start_txt: list[str | None] = field(default_factory=list)
    end_txt: list[str | None] = field(default_factory=list)
    slow: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def ids(self) -> np.ndarray:
        return self.c["id"]


TEXT_COLS = {"usage_category", "tariff_code", "pf_standard", "basic_charge_mode"}


def load(point_ids: list[int], month: Period, *, with_readings: bool) -> Cols:
    """ONE query: the points' file, sub-meter count, issued bill of the month, bill history
    (last month, same month last year, tier-year energy, any earlier bill) and, `with_readings`,
    the billable readings that close and open the month and the end meter's digits."""
    values = {
        **_history_params(month),
        "ids": list(point_ids) if connection.vendor == "postgresql" else json.dumps(list(point_ids)),
        "since": month.start - timedelta(days=LOOKBACK_DAYS),
    }
    with transaction.atomic(), connection.cursor() as cur:
        if connection.vendor == "postgresql":
            # the planner's guess of the joined row count is far too high and would JIT-compile
            # the query (seconds of LLVM for a query that runs in milliseconds)
            cur.execute("SET LOCAL jit = off")
        cur.execute(_sql(with_readings=with_readings), values)
        names_out = [d[0] for d in cur.description]
        rows = cur.fetchall()
    n = len(rows)
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in names_out]
    c: dict[str, Any] = {}
    for name, col in zip(names_out, cols, strict=True):
        if name in TEXT_COLS:
            c[name] = col
        elif name == "tou":
            c[name] = np.fromiter((bool(x) for x in col), bool, n)
        else:
            c[name] = np.fromiter(col, _I64, n)
    return Cols(n=n, c=c, readings_loaded=with_readings)


# --- energy from registers, vectorised (mmis.rating.energy.billed_energy) ------------------------
def _register_energy(
    s: np.ndarray, e: np.ndarray, digits: np.ndarray, mult: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(kWh in 1/10,000, ok): (end − start) × multiplier, a wrapped register with its digit count.
    Not ok where `billed_energy` refuses the registers or the result has more than 4 decimals (the
    per-point path then says why)."""
    has_d = (digits != NONE) & (digits > 0) & (digits <= 12)
    ok = (s >= 0) & (e >= 0) & (mult > 0) & ((digits == NONE) | has_d)
    lim = np.where(has_d, 10 ** np.where(has_d, digits, 0) * Q, 0)
    ok &= ~has_d | ((s < lim) & (e < lim))
    roll = e < s
    ok &= ~roll | has_d
    delta = np.where(ok, np.where(roll, e + lim - s, e - s), 0)
    m = np.where(ok, mult, 1)
    ok &= delta <= _SAFE // np.maximum(m, 1)
    prod = np.where(ok, delta, 0) * m
    ok &= prod % Q == 0
    return np.where(ok, prod // Q, 0), ok


def compute_readings(cols: Cols) -> None:
    """Energy columns from the loaded registers; `slow` marks the points this path leaves to the
    per-point path (no billable reading pair, meter changed, registers refused, sub-meters, …)."""
    c, n = cols.c, cols.n
    # the multiplier in force at the end reading (recorded on it, else the point's)
    mult = np.where(c["e_mult"] != NONE, c["e_mult"], c["mult"])
    c["mult"] = mult
    digits = c["digits"]
    has_pair = (c["e_tot"] != NONE) & (c["s_tot"] != NONE)
    # one meter over the period and no recorded meter/multiplier change inside it (else readings
    # splits the period: the per-point path takes it)
    kwh, ok = _register_energy(c["s_tot"], c["e_tot"], digits, mult)
    ok &= has_pair & (c["e_meter"] == c["s_meter"]) & (c["changes"] == 0)
    tou_regs = [n_ for n_ in REGS[1:5]]
    has_tou = c["tou"].copy()
    for r in tou_regs:
        has_tou &= (c[f"s_{r}"] != NONE) & (c[f"e_{r}"] != NONE)
    tou = np.zeros((4, n), _I64)
    for k, r in enumerate(tou_regs):
        v, okr = _register_energy(c[f"s_{r}"], c[f"e_{r}"], digits, mult)
        ok &= ~has_tou | okr
        tou[k] = np.where(has_tou, v, 0)
    has_kvarh = (c["s_reac"] != NONE) & (c["e_reac"] != NONE)
    kvarh, okq = _register_energy(c["s_reac"], c["e_reac"], digits, mult)
    ok &= ~has_kvarh | okq
    md_raw = c["e_md"]
    has_md = md_raw != NONE
    ok &= ~has_md | (np.abs(np.where(has_md, md_raw, 0)) <= _SAFE // np.maximum(mult, 1))
    md_prod = np.where(has_md & ok, md_raw, 0) * np.where(ok, mult, 0)
    ok &= ~has_md | (md_prod % Q == 0)
    cols.reading = {
        "kwh": np.where(ok, kwh, 0),
        "tou": tou,
        "has_tou": has_tou,
        "kvarh": np.where(has_kvarh & ok, kvarh, 0),
        "has_kvarh": has_kvarh,
        "md": np.where(has_md & ok, md_prod // Q, 0),
        "has_md": has_md,
        "est": c["e_est"] == 1,
        "mult_changed": (c["s_mult"] != NONE) & (c["s_mult"] != mult),
        "ok": ok,
    }
    cols.start_txt = _regs_json([c[f"s_{r}"] for r in REGS], ok)
    cols.end_txt = _regs_json([c[f"e_{r}"] for r in REGS], ok)


def _regs_json(regs: list[np.ndarray], ok: np.ndarray) -> list[str | None]:
    """The registers of each reading as compact trace JSON (`{"total":"…",…}`, nulls left out)."""
    n = len(ok)
    parts: list[list[str]] = [[] for _ in range(n)]
    for name, col in zip(REG_NAMES, regs, strict=True):
        has = (col != NONE) & ok
        for i, v in zip(np.nonzero(has)[0].tolist(), col[has].tolist(), strict=True):
            parts[i].append(f'"{name}":"{fmt4(v)}"')
    return ["{" + ",".join(p) + "}" if p else None for p in parts]


def readings_from_source(cols: Cols, readings: dict[int, PointReading]) -> None:
    """The energy columns from another input source's `PointReading`s (tests, other adapters)."""
    from mmis.billing.calc import _compact_regs, _regs
    from mmis.rating.vector import to_scaled

    n = cols.n
    kwh, kvarh, md = np.zeros(n, _I64), np.zeros(n, _I64), np.zeros(n, _I64)
    tou = np.zeros((4, n), _I64)
    has_tou, has_kvarh, has_md = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    est, mult_changed, ok = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    start_txt: list[str | None] = [None] * n
    end_txt: list[str | None] = [None] * n
    mult_col = cols.c["mult"].copy()
    for i, pid in enumerate(cols.ids().tolist()):
        r = readings.get(pid)
        if r is None or not r.billable or r.transformer is not None or r.kwh is None:
            continue
        try:
            kwh[i] = to_scaled(r.kwh)
            if r.tou_kwh:
                if set(r.tou_kwh) != set(TOU_PERIODS):
                    continue
                for k, p in enumerate(TOU_PERIODS):
                    tou[k, i] = to_scaled(r.tou_kwh[p])
                has_tou[i] = True
            if r.kvarh is not None:
                kvarh[i], has_kvarh[i] = to_scaled(r.kvarh), True
            if r.max_demand_kw is not None:
                md[i], has_md[i] = to_scaled(r.max_demand_kw), True
            if r.multiplier is not None:
                mult_col[i] = to_scaled(r.multiplier)
        except (ValueError, ArithmeticError):
            continue
        if kwh[i] < 0 or (has_tou[i] and (tou[:, i] < 0).any()) or mult_col[i] <= 0:
            continue
        est[i], mult_changed[i], ok[i] = r.estimated, r.multiplier_changed, True
        s, e = _compact_regs(_regs(r.start)), _compact_regs(_regs(r.end))
        start_txt[i] = None if s is None else json.dumps(s, ensure_ascii=False, separators=(",", ":"))
        end_txt[i] = None if e is None else json.dumps(e, ensure_ascii=False, separators=(",", ":"))
    cols.c["mult"] = mult_col
    cols.reading = {
        "kwh": kwh,
        "tou": tou,
        "has_tou": has_tou,
        "kvarh": kvarh,
        "has_kvarh": has_kvarh,
        "md": md,
        "has_md": has_md,
        "est": est,
        "mult_changed": mult_changed,
        "ok": ok,
    }
    cols.start_txt, cols.end_txt = start_txt, end_txt


# --- rating, audit and rows -------------------------------------------------------------------------
@dataclass
class Block:
    """The fast path's bills of a partition as columns, and their lines and flags as rows."""

    idx: np.ndarray  # positions in Cols of the billed points
    version_id: np.ndarray
    energy: np.ndarray  # e4
    total: np.ndarray  # fen
    risk: np.ndarray
    flags_json: list[str]
    trace_json: list[str]
    # lines: bill position in the block, seq, code, quantity e4, price text, amount fen
    line_bill: list[np.ndarray] = field(default_factory=list)
    line_seq: list[np.ndarray] = field(default_factory=list)
    line_code: list[str] = field(default_factory=list)
    line_q: list[np.ndarray] = field(default_factory=list)
    line_price: list[Any] = field(default_factory=list)  # a text, or a list of texts (pf rates)
    line_a: list[np.ndarray] = field(default_factory=list)
    flag_rows: list[tuple[int, str, str, int]] = field(default_factory=list)  # block pos, code, msg, w
    flagged: int = 0

    def __len__(self) -> int:
        return len(self.idx)


def _basic_q(tariff: Any, cap_e2: np.ndarray, cd_e2: np.ndarray) -> np.ndarray:
    """`calc.basic_quantity_e4` over columns (capacity and contract demand in 1/100)."""
    b = tariff.basic
    if isinstance(b, DemandContractBasic):
        return np.where(cd_e2 == NONE, 0, cd_e2) * 100
    if isinstance(b, CapacityBasic | DemandActualBasic):
        return cap_e2 * 100
    return np.zeros(len(cap_e2), _I64)


def plan(cols: Cols, month: Period, versions_at) -> tuple[np.ndarray, dict[int, TariffVersion]]:
    """Mark `cols.slow` and return the tariff version id of each fast point (0 for the others)."""
    c, rd = cols.c, cols.reading
    n = cols.n
    issued = c["issued"].astype(bool)
    eligible = rd["ok"] & (c["subs"] == 0) & (c["mid"] == 0) & (c["mult"] > 0)
    slow = ~issued & ~eligible
    rd["raw_kwh"] = rd["kwh"].copy()
    rd["seg_tou"] = np.zeros(n, bool)
    codes = c["tariff_code"]
    vid = np.zeros(n, _I64)
    used: dict[int, TariffVersion] = {}
    groups: dict[tuple[int, str], list[int]] = {}
    for i in np.nonzero(~slow & ~issued)[0].tolist():
        if not codes[i]:
            slow[i] = True
            continue
        groups.setdefault((int(c["org_id"][i]), codes[i]), []).append(i)
    bm, mult = c["basic_charge_mode"], c["mult"]
    for (org_id, code), members in groups.items():
        spans = versions_at(org_id, code, month)
        idx = np.array(members, _I64)
        if not spans or len(spans) != 1 or spans[0][0] != month:
            slow[idx] = True
            continue
        v = spans[0][1]
        t = v.tariff
        uses_tou = isinstance(t.energy, TouEnergy) or any(x.floats_with_tou for x in t.components)
        has_tou = rd["has_tou"][idx] & uses_tou
        kwh = rd["kwh"][idx]
        sum_tou = rd["tou"][:, idx].sum(axis=0)
        tol = 4 * mult[idx] // 100 + 1  # calc.prepare: len(tou) × multiplier // 100 + 1
        bad = has_tou & (sum_tou != kwh) & (np.abs(sum_tou - kwh) > tol)
        if isinstance(t.energy, TouEnergy):
            bad |= ~has_tou
        modes = [bm[i] for i in members]
        need_md = np.fromiter((m in ("demand_contract", "demand_actual") for m in modes), bool, len(members))
        bad |= need_md & ~rd["has_md"][idx]
        contract = np.fromiter((m == "demand_contract" for m in modes), bool, len(members))
        cd = c["cd"][idx]
        bad |= contract & ((cd == NONE) | (cd == 0))
        slow[idx[bad]] = True
        good = idx[~bad]
        rd["kwh"][good] = np.where(has_tou[~bad], sum_tou[~bad], kwh[~bad])
        rd["seg_tou"][good] = has_tou[~bad]
        vid[good] = v.version_id
        used[v.version_id] = v
    cols.slow = slow
    return vid, used


def rate_and_audit(
    cols: Cols,
    month: Period,
    vid: np.ndarray,
    versions: dict[int, TariffVersion],
    rule_sets: dict[int, dict],
) -> Block:
    """Rate the fast points (one `rate_batch` per version, basic mode and PF standard), audit them
    with their org's rules and build their flags and traces."""
    c, rd = cols.c, cols.reading
    sel = np.nonzero(vid != 0)[0]
    m = len(sel)
    pos = np.full(cols.n, -1, _I64)
    pos[sel] = np.arange(m)
    block = Block(
        idx=sel,
        version_id=vid[sel],
        energy=rd["kwh"][sel],
        total=np.zeros(m, _I64),
        risk=np.zeros(m, _I64),
        flags_json=[],
        trace_json=[],
    )
    pf_h = np.full(m, NONE, _I64)
    basic = np.zeros(m, _I64)
    negative = np.zeros(m, bool)
    ytd_used = np.zeros(m, _I64)
    bq_trace = np.zeros(m, _I64)
    days = proration_days_of(month)
    bm, pf = c["basic_charge_mode"], c["pf_standard"]
    groups: dict[tuple[int, str, str], list[int]] = {}
    for i in sel.tolist():
        groups.setdefault((int(vid[i]), bm[i], pf[i]), []).append(i)
    for (version_id, mode, standard), members in groups.items():
        v = versions[version_id]
        idx = np.array(members, _I64)
        p = pos[idx]
        tariff = effective_tariff(v, basic_mode=mode, pf_standard=standard, chained=False)
        k = len(members)
        tou = None
        if isinstance(tariff.energy, TouEnergy) or any(
            x.floats_with_tou and x.tou_ratios for x in tariff.components
        ):
            tou = {per: rd["tou"][j][idx] * rd["seg_tou"][idx] for j, per in enumerate(TOU_PERIODS)}
        ytd = c["ytd"][idx] if _is_annual(v.tariff) else np.zeros(k, _I64)
        ytd_used[p] = ytd
        bq_trace[p] = _basic_q(v.tariff, c["cap"][idx], c["cd"][idx])
        batch = UsageBatch(
            kwh=rd["kwh"][idx],
            ytd_kwh=ytd,
            persons=c["persons"][idx],
            tou_kwh=tou,
            kvarh=rd["kvarh"][idx],
            max_demand_kw=rd["md"][idx],
            proration_days=days,
            basic_quantity=_basic_q(tariff, c["cap"][idx], c["cd"][idx])
            if tariff.basic is not None
            else None,
        )
        res = rate_batch(tariff, batch)
        block.total[p] = res.total
        if res.power_factor is not None:
            pf_h[p] = res.power_factor
        q, a = res.quantities, res.amounts
        nz = q != 0
        seq = np.cumsum(nz, axis=0) - 1
        for r, code in enumerate(res.codes):
            hit = nz[r]
            if not hit.any():
                continue
            if code.startswith("basic."):
                basic[p] += np.where(hit, a[r], 0)
            if code != "pf_adjustment":
                negative[p] |= hit & (a[r] < 0)
            block.line_bill.append(p[hit])
            block.line_seq.append(seq[r][hit])
            block.line_code.append(code)
            block.line_q.append(q[r][hit])
            block.line_a.append(a[r][hit])
            price = res.prices[r]
            if price is None:  # the power-factor rate, per bill
                assert res.pf_rate_e4 is not None
                block.line_price.append([str(Decimal(x).scaleb(-4)) for x in res.pf_rate_e4[hit].tolist()])
            else:
                block.line_price.append(str(price))
    _audit(block, cols, rule_sets, pf_h, basic, negative)
    block.trace_json = _traces(block, cols, versions, ytd_used, bq_trace, pf_h)
    return block


def _audit(block: Block, cols: Cols, rule_sets: dict[int, dict], pf_h, basic, negative) -> None:
    c, rd = cols.c, cols.reading
    idx = block.idx
    m = len(idx)
    cats = c["usage_category"]
    orgs = c["org_id"][idx]
    flags_mask = np.zeros(m, _I64)
    block.risk = np.zeros(m, _I64)
    by_org: dict[int, np.ndarray] = {}
    for o in np.unique(orgs).tolist():
        by_org[o] = np.nonzero(orgs == o)[0]
    bit = {code: 1 << k for k, code in enumerate(rules.RULE_ORDER)}
    for org_id, sub in by_org.items():
        gi = idx[sub]
        cd = c["cd"][gi]
        facts = rules.FactColumns(
            usage_category=[cats[i] for i in gi.tolist()],
            amount_fen=block.total[sub],
            energy_e4=block.energy[sub],
            last_amount_fen=c["last_amt"][gi],
            last_year_amount_fen=c["ly_amt"][gi],
            last_energy_e4=c["last_en"][gi],
            estimated=rd["est"][gi],
            changed_in_period=rd["mult_changed"][gi],
            first_bill=c["earlier"][gi] == 0,
            negative_line=negative[sub],
            pf_hundredths=pf_h[sub],
            max_demand_e4=np.where(rd["has_md"][gi], rd["md"][gi], NONE),
            contract_demand_e4=np.where(cd == NONE, NONE, cd * 100),
            basic_fen=basic[sub],
        )
        hits = rules.audit_columns(facts, rule_sets[org_id])
        block.risk[sub] = rules.risk_scores(hits, facts.amount_fen)
        for h in hits:
            flags_mask[sub[h.mask]] |= bit[h.code]
            for j in np.nonzero(h.mask)[0].tolist():
                block.flag_rows.append((int(sub[j]), h.code, h.message(j)[:200], h.weight))
    cache: dict[int, str] = {}

    def flags_text(mask: int) -> str:
        if mask not in cache:
            cache[mask] = json.dumps([code for code in rules.RULE_ORDER if mask & bit[code]])
        return cache[mask]

    block.flags_json = [flags_text(x) for x in flags_mask.tolist()]
    block.flagged = int((flags_mask != 0).sum())


def _traces(block: Block, cols: Cols, versions, ytd_used, bq_trace, pf_h) -> list[str]:
    """The compact trace (`calc.compact_trace`) of each bill, as JSON text."""
    c, rd = cols.c, cols.reading
    idx = block.idx
    labels = {vid: json.dumps(v.label, ensure_ascii=False) for vid, v in versions.items()}
    start_txt, end_txt = cols.start_txt, cols.end_txt
    bm, pf = c["basic_charge_mode"], c["pf_standard"]
    tou = rd["tou"][:, idx].T.tolist()
    out = []
    for j, (
        i,
        mult,
        raw,
        has_tou,
        has_q,
        kvarh,
        has_md,
        md,
        est,
        mchg,
        cd,
        cap,
        persons,
        vid,
        st,
        ytd,
        bq,
        pfh,
    ) in enumerate(
        zip(
            idx.tolist(),
            c["mult"][idx].tolist(),
            rd["raw_kwh"][idx].tolist(),
            rd["has_tou"][idx].tolist(),
            rd["has_kvarh"][idx].tolist(),
            rd["kvarh"][idx].tolist(),
            rd["has_md"][idx].tolist(),
            rd["md"][idx].tolist(),
            rd["est"][idx].tolist(),
            rd["mult_changed"][idx].tolist(),
            c["cd"][idx].tolist(),
            c["cap"][idx].tolist(),
            c["persons"][idx].tolist(),
            block.version_id.tolist(),
            rd["seg_tou"][idx].tolist(),
            ytd_used.tolist(),
            bq_trace.tolist(),
            pf_h.tolist(),
            strict=True,
        )
    ):
        parts = []
        if start_txt[i]:
            parts.append(f'"start":{start_txt[i]}')
        if end_txt[i]:
            parts.append(f'"end":{end_txt[i]}')
        parts.append(f'"mult":"{fmt4(mult)}","kwh":"{fmt4(raw)}"')
        if has_tou:
            parts.append(
                '"tou":{'
                + ",".join(f'"{p}":"{fmt4(x)}"' for p, x in zip(TOU_PERIODS, tou[j], strict=True))
                + "}"
            )
        if has_q:
            parts.append(f'"kvarh":"{fmt4(kvarh)}"')
        if has_md:
            parts.append(f'"md":"{fmt4(md)}"')
        if est:
            parts.append('"est":true')
        if mchg:
            parts.append('"mchg":true')
        r = ",".join(parts)
        cd_txt = "" if cd == NONE else f'"cd":"{fmt2(cd)}",'
        tail = f',"vl":{labels[vid]}'
        if st:
            tail += ',"st":1'
        if ytd:
            tail += f',"ytd":"{fmt4(ytd)}"'
        if pfh != NONE:
            tail += f',"pfv":"{pfh / 100:.2f}"'
        out.append(
            f'{{"v":{TRACE_VERSION},"r":{{{r}}},"p":{{"bm":"{bm[i]}","pf":"{pf[i]}","bq":"{fmt4(bq)}",'
            f'"cap":"{fmt2(cap)}",{cd_txt}"persons":{persons}}}{tail}}}'
        )
    return out


def block_rows(
    block: Block,
    cols: Cols,
    ids: list[int],
    *,
    run_id: int,
    partition_id: int,
    month: Period,
    audited: bool,
    text: bool,
) -> tuple[list, list, list]:
    """The block's bills, lines and flags: COPY text lines (`text`) or parameter tuples, in the
    column orders of `writer` (BILL_COLUMNS, LINE_COLUMNS, FLAG_COLUMNS); `ids` are the bills' ids.
    `audited`: the audit stage ran with the calculation (flagged or passed bills with their flags);
    else drafts, without flags."""
    from mmis.billing.writer import _esc

    c, rd = cols.c, cols.reading
    idx = block.idx
    m = len(idx)
    if audited:
        states = ["passed" if f == "[]" else "flagged" for f in block.flags_json]
        risks, flags_json = block.risk.tolist(), block.flags_json
    else:
        states, risks, flags_json = ["draft"] * m, [0] * m, ["[]"] * m
    prefix = f"B{month.start:%Y%m}"
    ps, pe = month.start.isoformat(), month.end.isoformat()
    codes = c["tariff_code"]
    cols_zip = zip(
        ids,
        c["id"][idx].tolist(),
        c["org_id"][idx].tolist(),
        c["customer_id"][idx].tolist(),
        c["account_id"][idx].tolist(),
        [codes[i] for i in idx.tolist()],
        block.version_id.tolist(),
        block.energy.tolist(),
        block.total.tolist(),
        rd["est"][idx].tolist(),
        states,
        risks,
        flags_json,
        block.trace_json,
        strict=True,
    )
    if text:
        bills = [
            f"{bid}\t{prefix}{pid:010d}\t{run_id}\t{partition_id}\t{org}\t{cust}\t{acc}\t{pid}\t{ps}\t{pe}\t"
            f"{_esc(code)}\t{vid}\t{state}\t{energy}e-4\t{total}e-2\t{'t' if est else 'f'}\tf\t{risk}\t"
            f"{flags}\t{_esc(trace)}\t\n"
            for bid, pid, org, cust, acc, code, vid, energy, total, est, state, risk, flags, trace in cols_zip
        ]
    else:
        bills = [
            (
                *(bid, f"{prefix}{pid:010d}", run_id, partition_id, org, cust, acc, pid, ps, pe, code, vid),
                *(state, fmt4(energy), fmt2(total), est, False, risk, flags, trace, ""),
            )
            for bid, pid, org, cust, acc, code, vid, energy, total, est, state, risk, flags, trace in cols_zip
        ]
    lines: list = []
    if block.line_bill:
        lb = np.concatenate(block.line_bill)
        ls = np.concatenate(block.line_seq)
        lq = np.concatenate(block.line_q)
        la = np.concatenate(block.line_a)
        lk = np.concatenate([np.full(len(x), k, _I64) for k, x in enumerate(block.line_bill)])
        prices: list[str] = []
        for pr, x in zip(block.line_price, block.line_bill, strict=True):
            prices.extend(pr if isinstance(pr, list) else [pr] * len(x))
        order = np.lexsort((ls, lb))
        id_arr = np.asarray(ids, _I64)
        names = [_esc(code) for code in block.line_code] if text else block.line_code
        rows = zip(
            id_arr[lb[order]].tolist(),
            ls[order].tolist(),
            lk[order].tolist(),
            lq[order].tolist(),
            [prices[k] for k in order.tolist()],
            la[order].tolist(),
            strict=True,
        )
        if text:
            lines = [f"{b}\t{s}\t0\t{names[k]}\t{q}e-4\t{p}\t{a}e-2\n" for b, s, k, q, p, a in rows]
        else:
            lines = [(b, s, 0, names[k], fmt4(q), p, fmt2(a)) for b, s, k, q, p, a in rows]
    flags = (
        [(ids[j], code, message, weight) for j, code, message, weight in block.flag_rows] if audited else []
    )
    if text:
        flags = [f"{b}\t{_esc(code)}\t{_esc(m)}\t{w}\n" for b, code, m, w in flags]
    return bills, lines, flags


# --- the audit stage over stored bills (drafts, or bills to audit again) -------------------------
@dataclass
class AuditInputs:
    """The bills of a partition the audit stage looks at, as `rules.FactColumns` per org."""

    ids: list[int]
    org_ids: np.ndarray
    state: list[str]
    flags: list[list[str]]
    risk: np.ndarray
    facts: rules.FactColumns


def _e4_text(v: Any) -> int:
    if v in (None, ""):
        return NONE
    return int(Decimal(str(v)) * Q)


def audit_inputs(partition_id: int, month: Period, states: list[str]) -> AuditInputs:
    """ONE query: the partition's bills in `states` with what the audit rules look at (amount,
    energy, estimated, prorated, negative and basic-charge lines, the history of the point, the
    trace's power factor, demand and multiplier change)."""
    pg = connection.vendor == "postgresql"
    older = OLDER.format(point="bl.point_id")
    in_states = ", ".join(f"'{x}'" for x in states)
    bl = f"""SELECT b.id, b.point_id, b.org_id, b.state, b.flags, b.risk, b.trace, b.estimated, b.prorated,
         {_e2("b.amount")} AS amt, {_e4("b.energy_kwh")} AS en, p.usage_category
  FROM billing_bill b JOIN customers_meteringpoint p ON p.id = b.point_id
  WHERE b.partition_id = %(partition)s AND b.state IN ({in_states})"""
    lines = f"""MAX(CASE WHEN l.amount < 0 AND l.code <> 'pf_adjustment' THEN 1 ELSE 0 END) AS neg,
    SUM(CASE WHEN l.code LIKE 'basic.%%' THEN {_e2("l.amount")} ELSE 0 END) AS basic"""
    out = f"""bl.id, bl.org_id, bl.state, bl.flags, bl.risk, bl.trace, bl.estimated, bl.prorated, bl.amt,
       bl.en, bl.usage_category, COALESCE(ln.neg, 0), COALESCE(ln.basic, 0),
       COALESCE(hist.last_amt, {NONE}), COALESCE(hist.last_en, {NONE}), COALESCE(hist.ly_amt, {NONE})"""
    if pg:  # per bill and per point, index probes (see _sql_pg)
        sql = f"""SELECT {out}, CASE WHEN hist.earlier = 1 OR old.one = 1 THEN 1 ELSE 0 END
FROM ({bl}) bl
LEFT JOIN LATERAL (SELECT {lines} FROM billing_billline l WHERE l.bill_id = bl.id) ln ON true
LEFT JOIN LATERAL (SELECT {_HIST_COLS} FROM billing_bill b
                   WHERE b.point_id = bl.point_id AND {_HIST_WHERE}) hist ON true
LEFT JOIN LATERAL ({older}) old ON true
ORDER BY bl.id"""
    else:
        sql = f"""WITH bl AS ({bl}),
ln AS (SELECT l.bill_id, {lines} FROM billing_billline l
       WHERE l.bill_id IN (SELECT id FROM bl) GROUP BY l.bill_id),
{_hist_cte("SELECT point_id FROM bl")}
SELECT {out}, CASE WHEN hist.earlier = 1 OR ({older}) = 1 THEN 1 ELSE 0 END
FROM bl LEFT JOIN ln ON ln.bill_id = bl.id LEFT JOIN hist ON hist.pid = bl.point_id
ORDER BY bl.id"""
    with transaction.atomic(), connection.cursor() as cur:
        if pg:
            cur.execute("SET LOCAL jit = off")
        cur.execute(sql, {**_history_params(month), "partition": partition_id})
        rows = cur.fetchall()
    n = len(rows)
    cols = list(zip(*rows, strict=True)) if rows else [()] * 17
    traces = [t if isinstance(t, dict) else json.loads(t or "{}") for t in cols[5]]
    flags = [f if isinstance(f, list) else json.loads(f or "[]") for f in cols[3]]
    pfs, mds, cds, mchg = [], [], [], []
    for t in traces:
        pfv = t.get("pfv")
        pfs.append(NONE if pfv in (None, "") else int(Decimal(str(pfv)) * 100))
        r, p = t.get("r", {}), t.get("p", {})
        mds.append(_e4_text(r.get("md")))
        cd = _e4_text(p.get("cd"))
        cds.append(cd)
        mchg.append(bool(r.get("mchg")))

    def ints(k: int) -> np.ndarray:
        return np.fromiter((int(x) for x in cols[k]), _I64, n)

    def bools(k: int) -> np.ndarray:
        return np.fromiter((bool(x) for x in cols[k]), bool, n)

    facts = rules.FactColumns(
        usage_category=list(cols[10]),
        amount_fen=ints(8),
        energy_e4=ints(9),
        last_amount_fen=ints(13),
        last_year_amount_fen=ints(15),
        last_energy_e4=ints(14),
        estimated=bools(6),
        changed_in_period=bools(7) | np.array(mchg, bool).reshape(n),
        first_bill=ints(16) == 0,
        negative_line=ints(11) != 0,
        pf_hundredths=np.array(pfs, _I64).reshape(n),
        max_demand_e4=np.array(mds, _I64).reshape(n),
        contract_demand_e4=np.array(cds, _I64).reshape(n),
        basic_fen=ints(12),
    )
    return AuditInputs(list(cols[0]), ints(1), list(cols[2]), flags, ints(4), facts)
