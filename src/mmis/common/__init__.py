"""Shared building blocks with no Django: money, periods, errors, calendars."""
