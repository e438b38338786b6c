"""Signals for higher apps (billing, accounts): sent after the transaction commits.

- `reading_validated(sender=MeterReading, point=MeteringPoint id, reading=MeterReading)`: a reading
  became billable (valid, accepted after an exception, or estimated).
- `remote_command_finished(sender=RemoteCommand, command=RemoteCommand)`: a remote command was
  acknowledged, failed or timed out.
"""

from django.dispatch import Signal

reading_validated = Signal()
remote_command_finished = Signal()
