"""`ownlm monitor`: watch the champion in production (docs/monitoring.md).

    state.py    which watched files earlier cycles have seen (`<root>/monitor/state.json`)
    drift.py    the drift test's two sides as window losses (statistics in evaluation/drift.py)
    cycle.py    one cycle: evaluate, drift, regression, retrain, record, alert
    retrain.py  curate -> tokenize with the champion's tokenizer -> train from its weights -> gate
    history.py  history.png and history.html: every metric over time across versions
    alert.py    the webhook POST
The `ownlm monitor` command (--once, --every, --report) is in pipeline/commands/monitor_tools.py.
"""
