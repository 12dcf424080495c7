"""Evaluation: lm-eval adapter, offline benchmarks, perplexity, HumanEval, conversations, arena.

- `evaluation.lm_eval_adapter.OwnLM`: an ownlm model as lm-eval model "ownlm";
- `evaluation.harness.run_lm_eval`: run lm-eval tasks, metrics named `eval/<task>/<metric>`;
- `evaluation.benchmarks`: lm-eval's own MMLU, GPQA, MATH, ARC and HellaSwag tasks on local
  files (the data sets' own layouts, or the Hugging Face caches), never the network;
- `evaluation.tasks`: tasks and sample files written for this project, with local data;
- `evaluation.perplexity.perplexity`: loss, perplexity and bits per byte per source;
- `evaluation.humaneval` + `evaluation.sandbox` + `evaluation.isolation`: HumanEval in a sandbox
  (Linux namespaces), unbiased pass@k;
- `evaluation.conversation` + `evaluation.embeddings` + `evaluation.judge`: conversational
  metrics with offline embeddings, and an LLM judge behind any OpenAI-compatible endpoint;
- `evaluation.arena` + `evaluation.arena_ui`: anonymous side-by-side votes, Bradley-Terry ratings.

docs/evaluation.md defines every figure. Submodules import their heavy dependencies (torch,
lm_eval) themselves; this package does not.
"""
