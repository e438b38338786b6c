"""The demo utility (`python -m mmis demo`): a deterministic province of customers, built by an
ordered list of steps (see `builder.STEPS`)."""

from mmis.cli.demo.builder import STEPS, Step, add_step, build, has_customers
from mmis.cli.demo.context import PASSWORD, DemoContext

__all__ = ["PASSWORD", "STEPS", "DemoContext", "Step", "add_step", "build", "has_customers"]
