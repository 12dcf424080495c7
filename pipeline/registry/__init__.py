"""Model versions on top of the MLflow registry (pipeline/tracking/registry.py holds the MLflow calls):

    lineage.py   the tags every version carries: what data, tokenizer, tokens, config and code made it
    gate.py      the promotion rules judged on two sets of metrics, and the table they make
    promote.py   evaluate candidate and champion in one run, judge, move `champion` (or refuse)
    reference.py the drift reference a promotion stores (the champion's losses on validation windows)
    stage.py     the `register` stage: `ownlm run` registers its model and promotes it through the gate;
                 `ownlm register --model CKPT` registers a checkpoint
The `ownlm promote` command is in pipeline/commands/registry_tools.py.
"""
