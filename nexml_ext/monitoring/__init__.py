"""Monitoring of deployed models: windows, checks against thresholds, alerts and their sinks.

Pure domain code (no database, no principal): ``windows`` cuts time into daily, weekly and
monthly windows, ``thresholds`` resolves a monitor's thresholds from the model's compliance
template and the enrolment's overrides, ``checks`` measures one window of recorded decisions
(data drift, prediction drift, performance from outcomes, traffic and latency) and ``alerts``
turns breaches into deduplicated alerts. ``sinks`` delivers alerts (webhook, email, log). The
Workspace (``workspace/monitoring.py``) reads the records, stores the time series and alerts,
and appends the events.
"""
