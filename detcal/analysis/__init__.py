"""Commissioning analyses of calibrated dark ramps (numbers, tables and figures)."""
