"""The demo builder: an ordered list of steps, each `step(ctx)`.

Later work adds its own steps (tariff catalog, a year of readings, bills, payments, work orders) by
appending to STEPS (or inserting after a named step with `add_step`); a step reads what earlier
steps left in the context (`ctx.stations`, `ctx.users`, `ctx.data["customers"]` …), writes its rows
(bulk through `mmis.cli.demo.loader.Loader` when there are many) and records what it wrote in
`ctx.report(name)`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection, transaction

from mmis.cli.demo.context import DemoContext
from mmis.cli.demo.orgs import build_orgs
from mmis.cli.demo.step_tariffs import build_tariffs
from mmis.cli.demo.users import build_users


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[DemoContext], None]


def build_customers(ctx: DemoContext) -> None:
    from mmis.cli.demo.loader import Loader

    n = ctx.customers
    if n <= 0:
        return
    # history rows go over a second connection unless we are inside someone's transaction (tests)
    from mmis.assets.models import InstrumentTransformer, Meter
    from mmis.cli.demo.loader import history_model
    from mmis.cli.demo.pg_bulk import bulk_load
    from mmis.customers.models import Account, Customer, MeteringPoint, ServiceAddress, SupplyContract

    bulk_models = [
        Customer,
        ServiceAddress,
        Account,
        MeteringPoint,
        SupplyContract,
        Meter,
        InstrumentTransformer,
    ]
    tables = [m._meta.db_table for m in bulk_models] + [history_model(m)._meta.db_table for m in bulk_models]
    loader = Loader(pipelined=True, parallel=not connection.in_atomic_block)
    with bulk_load(tables, min_rows=50_000, rows=n) as dropped:
        try:
            _load_customers(ctx, loader, n)
        except BaseException:
            loader.rollback_side()
            raise
        if loader.parallel:
            loader.commit_side()
    if dropped is not None:
        ctx.report("customers").table_seconds["(rebuild indexes)"] = dropped.rebuild_seconds
    if loader.parallel:
        loader.fix_sequences(bulk_models + [history_model(m) for m in bulk_models])


def _load_customers(ctx: DemoContext, loader, n: int) -> None:
    from tqdm import tqdm

    from mmis.assets.models import InstrumentTransformer, Meter
    from mmis.cli.demo.customers import CHUNK, Bases, CustomerGenerator
    from mmis.cli.demo.loader import history_model
    from mmis.customers.models import Account, Customer, MeteringPoint, ServiceAddress, SupplyContract
    from mmis.customers.services import reserve_numbers

    report = ctx.report("customers")
    with transaction.atomic():
        if loader.vendor == "postgresql":
            with connection.cursor() as cur:
                cur.execute("SET LOCAL synchronous_commit TO OFF")
        models = {
            "customer": Customer,
            "address": ServiceAddress,
            "account": Account,
            "point": MeteringPoint,
            "contract": SupplyContract,
            "meter": Meter,
        }
        ids = {}
        for key, model in models.items():
            ids[key] = loader.reserve_ids(model, n)
            ids[f"h_{key}"] = loader.reserve_ids(history_model(model), n, "history_id")
        numbers = {name: reserve_numbers(name, n) for name in ("customer", "account", "point", "contract")}
        # at most 4 CT/PT per customer; the sequences are set to what was used at the end
        bases = Bases(
            ids=ids,
            numbers=numbers,
            next_ct=loader.reserve_ids(InstrumentTransformer, 4 * n),
            next_ct_history=loader.reserve_ids(history_model(InstrumentTransformer), 4 * n, "history_id"),
        )
        gen = CustomerGenerator(ctx, loader, bases)
        gen_s = 0.0
        done = False
        try:
            with tqdm(total=n, unit=" customers", disable=not ctx.progress, smoothing=0.1) as bar:
                for chunk_no, i0 in enumerate(range(0, n, CHUNK)):
                    i1 = min(n, i0 + CHUNK)
                    t0 = time.perf_counter()
                    batch = gen.chunk(chunk_no, i0, i1)
                    gen_s += time.perf_counter() - t0
                    loader.submit(batch)
                    bar.update(i1 - i0)
            done = True
        finally:
            loader.finish(raise_errors=done)
        if not loader.parallel:
            all_models = [*models.values(), InstrumentTransformer]
            loader.fix_sequences(all_models + [history_model(m) for m in all_models])
    report.rows.update(loader.rows)
    report.table_seconds.update(loader.seconds)
    report.table_seconds["(generate)"] = gen_s
    report.table_seconds["(encrypt)"] = getattr(gen, "crypto_seconds", 0.0)
    ctx.data["customers"] = {
        "first_id": ids["customer"],
        "count": n,
        "first_point_id": ids["point"],
        "first_account_id": ids["account"],
    }


STEPS: list[Step] = [
    Step("orgs", build_orgs),
    Step("users", build_users),
    Step("tariffs", build_tariffs),  # needs the admin user (actor of the catalog import)
    Step("customers", build_customers),
    Step("readings", lambda c: __import__("mmis.cli.demo.step_readings", fromlist=["x"]).build_readings(c)),
    Step("billing", lambda c: __import__("mmis.cli.demo.step_billing", fromlist=["x"]).build_billing(c)),
    Step("accounts", lambda c: __import__("mmis.cli.demo.step_accounts", fromlist=["x"]).build_accounts(c)),
    Step("workflow", lambda c: __import__("mmis.cli.demo.step_workflow", fromlist=["x"]).build_workflow(c)),
]


def add_step(step: Step, *, after: str | None = None) -> None:
    """Register a later step (at the end, or right after the step named `after`)."""
    if after is None:
        STEPS.append(step)
        return
    names = [s.name for s in STEPS]
    STEPS.insert(names.index(after) + 1, step)


def build(ctx: DemoContext, steps: list[Step] | None = None) -> DemoContext:
    for step in steps if steps is not None else STEPS:
        t0 = time.perf_counter()
        step.run(ctx)
        ctx.report(step.name).seconds += time.perf_counter() - t0
    return ctx


def has_customers() -> bool:
    from mmis.customers.models import Customer

    return Customer.objects.exists()
