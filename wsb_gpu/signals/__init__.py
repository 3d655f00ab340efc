"""Text signals beyond the embedding: per-post scorers and the feature families built on them.

* :mod:`~wsb_gpu.signals.vader` and :mod:`~wsb_gpu.signals.words` score a post on its own
  (the ``signals`` stage stores the result per post);
* :mod:`~wsb_gpu.signals.families` names every family of stock-day columns (attention,
  embedding, FinBERT sentiment, VADER, topics, lexicon, TF-IDF) and the feature sets the
  training stage compares;
* :mod:`~wsb_gpu.signals.lexicon`, :mod:`~wsb_gpu.signals.tfidf` and
  :mod:`~wsb_gpu.signals.topics` are the families fitted on data, always inside one
  rolling training window (see docs/signals.md).
"""
