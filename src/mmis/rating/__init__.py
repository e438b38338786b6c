"""Pure rating rules (no Django): rating engine, power factor, late fee, theft, energy."""
