"""The shipped twins, a tiny masked-diffusion LLaDA and its autoregressive twin: data, training, evaluation.

Both twins have the same widths, heads, layers, MLP, RoPE base, tokenizer and data; they differ only in the
objective and the attention:

- ``diffusion``: our architecture (:class:`LongLLaDAModelLM`, bidirectional), LLaDA's masked-diffusion loss: per
  sequence t ~ U(eps, 1), each token of the loss region replaced by the mask token with probability t,
  cross-entropy on the masked tokens weighted 1/t, summed and divided by the region's length (the sequence
  length for pretraining rows, as LLaDA pretraining; the response length for SFT rows, as LLaDA SFT), then
  averaged over the batch.
- ``ar``: ``transformers.LlamaForCausalLM`` (causal), next-token cross-entropy over the loss region.

Data, regenerated from the seed, nothing downloaded. Every row of a batch has the same length: the trained
length, or (``--short-batch-share``, 10% of batches) a random shorter one, as LLaDA pretraining keeps 1% of
random-length sequences. Row kinds (``--mix``; default report 0.3, retrieval 0.1, sft 0.6):

- ``report``: the shipped public-domain report's sentences in random order; loss on every token (pretraining);
- ``retrieval``: a haystack of shuffled report sentences with a needle "The {subject} is {keyword}." at a random
  depth (a sentence or word boundary; in 30% of rows a distractor needle about another subject too), then
  ``"\\n\\nQuestion: What is the {subject}?\\nAnswer: {keyword}."`` and EOS; loss on every token;
- ``sft``: the same documents split into a prompt (up to ``Answer:``) and a response (`` {keyword}.`` then EOS up
  to the row's end, as LLaDA SFT pads with EOS; at most ``--sft-response-tokens`` = 32 tokens, the sampler's
  output window); only the response is masked / scored, as in LLaDA SFT, so that the model learns to answer.

AR loss weighting (``--ar-loss-weighting``): ``row`` (default) averages each row's token losses, then the rows,
as the diffusion loss does, so that an SFT row's few answer tokens count as much as a report row; ``token``
averages over all scored tokens of the batch.

Needles come from this module's own generator, never from the evaluation needles of ``lm_eval_tasks/longllada_niah``
(those are only evaluated on, at the end). Subjects: templates ("secret/special/... noun (of the place or
person)") or, for ``--phrase-subject-share`` (0.5) of them, a run of 2-6 report words; keywords
(``--keyword-mix`` 0.3/0.5/0.2): real words (word lists and the report's words), invented words, numbers,
capitalised in ``--capitalize-share`` (0.25) of cases; and, for ``--piece-keyword-share`` (0.4) of keywords, a
random word-start token of the vocabulary followed by 0-2 random continuation tokens. Without those, a token that
never starts a training keyword is never copied: teacher-forced, the twins trained before that option got the first
token of such held-out keywords right 0 times in 80, and that of the others 120 (causal) and 110 (diffusion) of 120. Keywords whose CRC32 is 0 mod 10 are never
trained on: they make the held-out evaluation needles.

The shipped twins' model cards give the command that reproduces them (``benchmarks/train_logs/*_summary.json``
holds their settings).

At the end each twin is reloaded from its saved folder (float32) and evaluated: retrieval accuracy (the keyword
appears in the output) at the trained length minus 32 (prompt + 32 generated tokens = trained length), the
trained length, and 2/4/8 times it, at five depths, on the held-out needles and on the evaluation task's needles;
the diffusion twin through ``model.generate`` (exact LLaDA sampling: 32 tokens, block 32, 32 steps, greedy,
low-confidence remasking), with and without NTK scaling (``{"type": "dynamic"}``); the AR twin greedy, with and
without NTK (base multiplied by the scaling law's factor for the length).

GPU run of the shipped twins (both on one H200, about 6 minutes of training)::

    longllada train-tiny --twin diffusion --steps 10000 --data-workers 4 --eval-prompts 50 &
    longllada train-tiny --twin ar --steps 10000 --data-workers 4 --eval-prompts 50 &
    wait

(``benchmarks/h200x2_session.sh train`` ran it; the other runs' summaries are in
``benchmarks/train_logs/variants/``.)

One file per job (``longllada train-tiny`` is :mod:`longllada.twins.cli`):

- :mod:`~longllada.twins.needles`: word lists and the needle generator;
- :mod:`~longllada.twins.settings`: the run's settings (:class:`TrainSettings`) and their parsers;
- :mod:`~longllada.twins.data`: the tokenizer's text, the training rows and the batch stream;
- :mod:`~longllada.twins.models`: building, saving and reloading a twin;
- :mod:`~longllada.twins.training`: the losses, the answer probe and the training loop;
- :mod:`~longllada.twins.evaluation`: needle retrieval of a saved twin, with and without NTK scaling;
- :mod:`~longllada.twins.model_card`: the twins' README.md;
- :mod:`~longllada.twins.plot`: the loss-curve figure;
- :mod:`~longllada.twins.cli`: the ``train-tiny`` command.
"""
