"""Signals for higher apps (billing, accounts, inspection).

Sent after the transaction commits:
- `reading_validated(sender=MeterReading, point=MeteringPoint id, reading=MeterReading)`: a reading
  became billable (valid, accepted after an exception, or estimated).
- `remote_command_finished(sender=RemoteCommand, command=RemoteCommand)`: a remote command was
  acknowledged, failed or timed out.

Sent inside the transaction (the receiver's work is part of it):
- `site_check_requested(sender=ReadingException, exception=…, actor=User, at=datetime, note=str)`:
  an auditor sent a site check; a receiver (the inspection app) opens the site-check work order
  and returns it (a workflow ProcessInstance). With no receiver answering, the decision is refused.
"""

from django.dispatch import Signal

reading_validated = Signal()
remote_command_finished = Signal()
site_check_requested = Signal()
