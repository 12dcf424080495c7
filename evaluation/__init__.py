"""Evaluation: lm-eval adapter and bundled tasks, held-out perplexity.

- `evaluation.lm_eval_adapter.OwnLM`: an ownlm model as lm-eval model "ownlm";
- `evaluation.harness.run_lm_eval`: run lm-eval tasks, metrics named `eval/<task>/<metric>`;
- `evaluation.tasks`: tasks written for this project (`ownlm_pyfacts`) with local data;
- `evaluation.perplexity.perplexity`: loss / perplexity on a packed tokens split.

Submodules import their heavy dependencies (torch, lm_eval) themselves; this package does not.
"""
